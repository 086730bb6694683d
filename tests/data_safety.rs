//! Data safety under faults (issue 10): `kedge run` on the test control
//! plane is killed, reloaded and given damaged state, and must neither
//! orphan an object nor delete one its source still declares.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use kube::{Api, Client};

use crate::daemon_common::Setup;
use crate::support::{cluster, TestNamespace};

/// A setup whose `[kustomization.NAME]` applies `./cms` of `git/fleet`.
fn setup(name: &str, agent_extra: &str) -> Setup {
    let agent = format!(
        "kubeconfig = {:?}\n{agent_extra}",
        cluster().kubeconfig.display().to_string()
    );
    Setup::new(&agent, &kustomization(name))
}

fn kustomization(name: &str) -> String {
    format!(
        "[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"./cms\"\ninterval = \"1h\"\nprune = true\n"
    )
}

/// `count` ConfigMaps `cm-<i>` in `namespace`, as one file.
fn configmaps(namespace: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\n  namespace: {namespace}\ndata:\n  index: \"{i}\"\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Commits `count` ConfigMaps as the whole of `./cms`; returns the commit.
fn commit_configmaps(setup: &Setup, namespace: &str, count: usize) -> String {
    setup.repo.commit(
        &[("cms/all.yaml", &configmaps(namespace, count))],
        &format!("{count} configmaps"),
    )
}

/// Names of the ConfigMaps in `namespace` that carry kustomization `owner`'s label.
async fn labelled(client: &Client, namespace: &str, owner: &str) -> BTreeSet<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let selector = format!("kedge.dev/name={owner},kedge.dev/kind=Kustomization");
    api.list_metadata(&ListParams::default().labels(&selector))
        .await
        .expect("list labelled configmaps")
        .items
        .into_iter()
        .filter(|cm| cm.metadata.deletion_timestamp.is_none())
        .filter_map(|cm| cm.metadata.name)
        .collect()
}

fn expected(count: usize) -> BTreeSet<String> {
    (0..count).map(|i| format!("cm-{i}")).collect()
}

/// The inventory kedge recorded for `name`: ConfigMap names.
fn inventory(setup: &Setup, name: &str) -> BTreeSet<String> {
    let store = kedge::state::Store::open_read_only(&setup.state_dir.join("kedge.db"))
        .expect("open state read-only");
    store
        .inventory(name)
        .expect("read inventory")
        .iter()
        .map(|id| {
            kedge::apply::ObjRef::from_id(id)
                .expect("stored id parses")
                .name
        })
        .collect()
}

/// `kedge reconcile kustomization NAME --with-source`, not waited for.
fn request_reconcile(setup: &Setup, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args([
            "reconcile",
            "kustomization",
            name,
            "--with-source",
            "--config",
        ])
        .arg(&setup.config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kedge reconcile")
}

/// Runs `kedge reconcile kustomization NAME --with-source` and asserts it succeeded.
fn reconcile(setup: &Setup, name: &str) {
    let out = setup.cli(&["reconcile", "kustomization", name, "--with-source"]);
    assert!(
        out.status.success(),
        "reconcile {name}: {}{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        setup.log_text()
    );
}

/// Polls until the labelled ConfigMaps and the recorded inventory are
/// both exactly the first `count` (the inventory is narrowed just after
/// the prune's deletes).
async fn converged(client: &Client, setup: &Setup, namespace: &str, owner: &str, count: usize) {
    let want = expected(count);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = labelled(client, namespace, owner).await;
        let recorded = inventory(setup, owner);
        if have == want && recorded == want {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "labelled ConfigMaps: {}, inventory: {} (want {count}); log:\n{}",
                have.len(),
                recorded.len(),
                setup.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 10, case 1: an apply killed half-way, then a commit that removes
/// what it was applying: after a restart, nothing labelled by the
/// kustomization is left outside what Git declares.
#[tokio::test]
async fn an_apply_killed_half_way_leaves_no_stray_after_restart() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-kill").await;
    let name = "safety-kill";
    let setup = setup(name, "");
    commit_configmaps(&setup, &ns.name, 1);
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    commit_configmaps(&setup, &ns.name, 800);
    let mut request = request_reconcile(&setup, name);
    // Kill once the apply has created some of the 800, not all.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let have = labelled(&client, &ns.name, name).await.len();
        if have > 20 && have < 800 {
            break;
        }
        assert!(
            have < 800,
            "the whole apply finished before it could be interrupted"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the apply never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.signal("KILL");
    let _ = daemon.0.wait();
    let _ = request.wait();
    commit_configmaps(&setup, &ns.name, 2);
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    converged(&client, &setup, &ns.name, name, 2).await;
}

/// `count` kill -9s at random points of applies and prunes (the set
/// alternates between 200 ConfigMaps and 5), each followed by a restart:
/// every time, the inventory, the labelled objects and Git agree.
#[tokio::test]
async fn kill_9_at_random_points_of_apply_and_prune_always_converges() {
    const ITERATIONS: usize = 20;
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-loop").await;
    let name = "safety-loop";
    let setup = setup(name, "");
    let mut count = 5;
    commit_configmaps(&setup, &ns.name, count);
    for _ in 0..ITERATIONS {
        let mut daemon = setup.start(&[]);
        setup.wait_ready();
        reconcile(&setup, name);
        converged(&client, &setup, &ns.name, name, count).await;
        count = if count == 5 { 200 } else { 5 };
        commit_configmaps(&setup, &ns.name, count);
        let mut request = request_reconcile(&setup, name);
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..1500))).await;
        daemon.signal("KILL");
        let _ = daemon.0.wait();
        let _ = request.wait();
    }
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    converged(&client, &setup, &ns.name, name, count).await;
}

/// Issue 10, case 7: after a kill -9, a restart applies the newest
/// revision its source has, not first the older one it had stored.
#[tokio::test]
async fn a_restart_resumes_at_the_newest_revision() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-resume").await;
    let name = "safety-resume";
    let setup = setup(name, "");
    let old = commit_configmaps(&setup, &ns.name, 5);
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    daemon.signal("KILL");
    let _ = daemon.0.wait();
    let new = commit_configmaps(&setup, &ns.name, 2);
    let restart_at = setup.log_text().len();
    let _daemon = setup.start(&[]);
    setup.wait_until("the new revision applied", Duration::from_secs(60), || {
        setup.log_text()[restart_at..].contains(&format!("Applied revision: main@sha1:{new}"))
    });
    let after_restart = setup.log_text()[restart_at..].to_string();
    assert!(
        !after_restart.contains(&format!("Applied revision: main@sha1:{old}")),
        "the older revision was applied again after the restart:\n{after_restart}"
    );
    converged(&client, &setup, &ns.name, name, 2).await;
}

fn configmap_in(namespace: &str, name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  a: b\n")
}

async fn exists(client: &Client, namespace: &str, name: &str) -> bool {
    Api::<ConfigMap>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .expect("get configmap")
        .is_some_and(|cm| cm.metadata.deletion_timestamp.is_none())
}

/// Issue 10, case 2: a config file caught half-written (a kustomization
/// missing for a second) deletes nothing; a removal that stays is carried
/// out after the grace period, or at once on SIGHUP, and a reconcile
/// request for it confirms it too.
#[tokio::test]
async fn a_half_written_config_deletes_nothing_and_removals_wait_for_the_grace_period() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-grace").await;
    let (a, b) = ("grace-a".to_string(), "grace-b".to_string());
    let table = |name: &str| {
        format!(
            "[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"./{name}\"\ninterval = \"1h\"\nprune = true\n\n"
        )
    };
    let agent = format!(
        "kubeconfig = {:?}\nremoval_grace_period = \"3s\"\n",
        cluster().kubeconfig.display().to_string()
    );
    let both = format!("{}{}", table(&a), table(&b));
    let setup = Setup::new(&agent, &both);
    setup.repo.commit(
        &[
            (&format!("{a}/cm.yaml"), &configmap_in(&ns.name, &a)),
            (&format!("{b}/cm.yaml"), &configmap_in(&ns.name, &b)),
        ],
        "two kustomizations",
    );
    let daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, &a);
    reconcile(&setup, &b);
    assert!(exists(&client, &ns.name, &b).await);

    // Half a file for a second, then the whole file again.
    let full = setup.config_text(&agent, &both);
    let cut = full
        .find(&format!("[kustomization.{b}]"))
        .expect("b's table");
    std::fs::write(&setup.config, &full[..cut]).expect("write half the config");
    setup.wait_until("the half config loaded", Duration::from_secs(10), || {
        setup.log_text().contains("RemovalPending")
    });
    let status = setup.cli(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("removed from the config"),
        "kedge status shows the pending removal: {}",
        String::from_utf8_lossy(&status.stdout)
    );
    let added = |count: usize| {
        setup.wait_until("b back in the config", Duration::from_secs(10), || {
            setup.log_text().matches("+grace-b").count() > count
        })
    };
    let readded = setup.log_text().matches("+grace-b").count();
    std::fs::write(&setup.config, &full).expect("write the whole config");
    added(readded);
    let watch_until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < watch_until {
        assert!(
            exists(&client, &ns.name, &b).await,
            "a half-written config deleted {b}; log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reconcile(&setup, &b);

    // A real removal: carried out once the file stayed unchanged 3 s.
    let removed_at = std::time::Instant::now();
    setup.replace_config(&setup.config_text(&agent, &table(&a)));
    while exists(&client, &ns.name, &b).await {
        assert!(
            removed_at.elapsed() < Duration::from_secs(30),
            "{b} never deleted after its removal; log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        removed_at.elapsed() >= Duration::from_secs(3),
        "deleted before the grace period ended"
    );
    assert!(exists(&client, &ns.name, &a).await);

    // A reconcile request for it confirms a removal at once; so does SIGHUP.
    let remove_b_and_confirm = |confirm: &dyn Fn()| {
        let readded = setup.log_text().matches("+grace-b").count();
        setup.replace_config(&setup.config_text(&agent, &both));
        added(readded);
        reconcile(&setup, &b);
        let pending = setup.log_text().matches("RemovalPending").count();
        setup.replace_config(&setup.config_text(&agent, &table(&a)));
        setup.wait_until("b pending removal", Duration::from_secs(10), || {
            setup.log_text().matches("RemovalPending").count() > pending
        });
        let confirmed_at = std::time::Instant::now();
        confirm();
        confirmed_at
    };
    let confirmed_at = remove_b_and_confirm(&|| {
        let out = setup.cli(&["reconcile", "kustomization", &b]);
        assert!(
            out.status.success(),
            "reconcile confirms the removal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    assert!(!exists(&client, &ns.name, &b).await);
    assert!(confirmed_at.elapsed() < Duration::from_secs(3));
    let confirmed_at = remove_b_and_confirm(&|| daemon.signal("HUP"));
    while exists(&client, &ns.name, &b).await {
        assert!(
            confirmed_at.elapsed() < Duration::from_secs(3),
            "SIGHUP did not confirm the removal; log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn remove_database(setup: &Setup) {
    for file in ["kedge.db", "kedge.db-wal", "kedge.db-shm"] {
        let _ = std::fs::remove_file(setup.state_dir.join(file));
    }
}

/// Issue 10, case 5: a state database deleted while kedge runs stops the
/// daemon (no writes into a deleted file); the restart, and a start on an
/// empty database, adopt the labelled objects, so that what Git removed
/// meanwhile is still pruned.
#[tokio::test]
async fn a_lost_database_is_noticed_and_inventories_are_rebuilt_from_labels() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-db").await;
    let name = "safety-db";
    let setup = setup(name, "");
    commit_configmaps(&setup, &ns.name, 4);
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);

    remove_database(&setup);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = daemon.0.try_wait().expect("wait kedge") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "kedge kept running on a deleted database; log:\n{}",
            setup.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success(), "a lost database is a failure exit");
    assert!(setup
        .log_text()
        .contains("was deleted while kedge had it open"));

    commit_configmaps(&setup, &ns.name, 3);
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    converged(&client, &setup, &ns.name, name, 3).await;

    // An empty (0-byte) database at start.
    daemon.stop();
    remove_database(&setup);
    std::fs::write(setup.state_dir.join("kedge.db"), b"").expect("empty database");
    commit_configmaps(&setup, &ns.name, 1);
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    reconcile(&setup, name);
    converged(&client, &setup, &ns.name, name, 1).await;
    assert!(setup.log_text().contains("adopted the"));
}

/// Issue 10, case 3: a config past the documented bounds is refused with a
/// clear error, by check-config and on reload, and the daemon keeps
/// running its last good config.
#[tokio::test]
async fn a_config_past_the_bounds_is_refused() {
    let setup = Setup::new("", "");
    let many: String = (0..=kedge::config::MAX_KUSTOMIZATIONS)
        .map(|i| {
            format!(
                "[kustomization.k{i}]\nsource = \"git/fleet\"\ninterval = \"1h\"\nprune = true\n"
            )
        })
        .collect();
    let too_many = setup.config_text("", &many);
    let huge = format!(
        "{}\n# {}\n",
        setup.config_text("", ""),
        "x".repeat(kedge::config::MAX_CONFIG_BYTES as usize)
    );
    for (text, says) in [
        (&too_many, "kedge accepts at most 5000"),
        (&huge, "larger than 4194304 bytes"),
    ] {
        let file = setup.root.path().join("candidate.toml");
        std::fs::write(&file, text).expect("write candidate");
        let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .arg("check-config")
            .arg(&file)
            .output()
            .expect("run check-config");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{stderr}");
    }
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    for text in [&too_many, &huge] {
        let refusals = setup.log_text().matches("ConfigRefused").count();
        setup.replace_config(text);
        setup.wait_until("the refusal", Duration::from_secs(20), || {
            setup.log_text().matches("ConfigRefused").count() > refusals
        });
        let status = setup.cli(&["status"]);
        assert!(
            String::from_utf8_lossy(&status.stdout).contains("config refused"),
            "{}",
            String::from_utf8_lossy(&status.stdout)
        );
    }
}

/// Issue 10, case 6: with the state directory full, outcomes that cannot
/// be written are held in memory and shown (`kedge status` names the
/// problem, the failed fetch is not shown Ready), and written once there
/// is room again.
#[tokio::test]
async fn a_full_state_directory_shows_the_failure_and_writes_it_later() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "safety-full").await;
    let name = "safety-full";
    let setup = setup(name, "");
    commit_configmaps(&setup, &ns.name, 1);
    std::fs::create_dir_all(&setup.state_dir).expect("state dir");
    // The state directory is a 16 MiB tmpfs of the daemon's own mount namespace.
    let log = std::fs::File::create(&setup.log).expect("log");
    let _daemon = crate::daemon_common::Daemon(
        Command::new("unshare")
            .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o size=16m kedge-state "$0" && exec "$@""#)
            .arg(&setup.state_dir)
            .arg(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config"])
            .arg(&setup.config)
            .env("KEDGE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge run in a mount namespace"),
    );
    setup.wait_ready();
    reconcile(&setup, name);
    let pid = _daemon.0.id();
    let state = std::path::PathBuf::from(format!("/proc/{pid}/root")).join(
        setup
            .state_dir
            .strip_prefix("/")
            .expect("absolute state dir"),
    );
    fill(&state.join("filler"));
    let filled_at = kedge::state::now_millis();

    commit_configmaps(&setup, &ns.name, 2);
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    let replied = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success(),
        "the fetch fails on a full disk: {replied}"
    );
    assert!(!replied.contains("no outcome within"), "{replied}");
    let status = setup.cli(&["status"]);
    let shown = String::from_utf8_lossy(&status.stdout);
    assert!(shown.contains("not saved"), "{shown}");
    // SQLite resolves /proc/PID/root to the host's root: read a copy.
    let copy = setup.root.path().join("copy");
    let on_disk = || {
        std::fs::create_dir_all(&copy).expect("copy dir");
        for file in ["kedge.db", "kedge.db-wal"] {
            let _ = std::fs::copy(state.join(file), copy.join(file));
        }
        let db = copy.join("kedge.db");
        kedge::state::Store::open_read_only(&db)
            .and_then(|store| store.source_status("git", "fleet"))
            .unwrap_or_else(|err| panic!("reading {}: {err}", db.display()))
    };
    let before = on_disk().expect("the source's row");
    assert!(before.ready, "the failure could not be written yet");
    assert!(before.last_attempt_at.is_some_and(|at| at < filled_at));

    std::fs::remove_file(state.join("filler")).expect("free the state directory");
    setup.wait_until("the held outcome written", Duration::from_secs(30), || {
        on_disk().is_some_and(|s| s.last_attempt_at.is_some_and(|at| at > filled_at))
    });
    reconcile(&setup, name);
    // The inventory is inside the daemon's mount namespace: objects only.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while labelled(&client, &ns.name, name).await != expected(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes zeros to `path` until the file system is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).expect("create filler");
    for size in [1 << 20, 4 << 10, 1] {
        let block = vec![0u8; size];
        while file.write_all(&block).is_ok() {}
    }
    let _ = file.sync_all();
}
