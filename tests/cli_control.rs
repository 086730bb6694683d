//! The CLI against a running daemon (through its control socket) and a
//! stopped one: reconcile, suspend/resume across a restart, events, status,
//! and with a cluster: reconcile latency, diff and build of a kustomization.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kedge::protocol::StatusReport;
use kedge::state::Store;
use kube::Api;

use crate::daemon_common::{stderr, stdout, Setup};
use crate::support::{cluster, TestNamespace};

fn report(setup: &Setup) -> StatusReport {
    let out = setup.cli(&["status", "-o", "json"]);
    serde_json::from_str(&stdout(&out))
        .unwrap_or_else(|err| panic!("status -o json: {err}: {}{}", stdout(&out), stderr(&out)))
}

fn suspended(report: &StatusReport, kind: &str, name: &str) -> bool {
    report
        .sources
        .iter()
        .chain(&report.kustomizations)
        .any(|row| row.kind == kind && row.name == name && row.suspended)
}

#[test]
fn cli_against_a_stopped_daemon_says_so_and_status_reads_the_database() {
    let setup = Setup::new("", "");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("kedge is not running (nothing listens on")
            && stderr(&out).contains("kedge.sock"),
        "{}",
        stderr(&out)
    );
    let out = setup.cli(&["status"]);
    assert!(!out.status.success(), "git/fleet never fetched: not ready");
    assert!(
        stderr(&out).contains("kedge is not running"),
        "{}",
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("git/fleet") && stdout(&out).contains("not fetched yet"),
        "{}",
        stdout(&out)
    );
    let out = setup.cli(&["suspend", "apps"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("kedge is not running"),
        "{}",
        stderr(&out)
    );
}

/// Runs the CLI as a user who may read nothing of `setup` (its temporary
/// directory is private to its owner): as `nobody` when the tests run as
/// root, else with that directory closed to everyone for the call.
fn cli_as_an_outsider(setup: &Setup, args: &[&str]) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let root = setup.root.path();
    let as_root = crate::support::running_as_root();
    let mut command = if as_root {
        let mut setpriv = std::process::Command::new("setpriv");
        setpriv.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        setpriv.arg(env!("CARGO_BIN_EXE_kedge"));
        setpriv
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_kedge"))
    };
    command.args(args).arg("--config").arg(&setup.config);
    let mode = std::fs::metadata(root).expect("stat root").permissions();
    std::fs::set_permissions(
        root,
        std::fs::Permissions::from_mode(if as_root { 0o700 } else { 0o000 }),
    )
    .expect("close the root");
    let out = command.output().expect("run kedge");
    std::fs::set_permissions(root, mode).expect("reopen the root");
    out
}

#[test]
fn status_as_a_user_who_may_read_nothing_fails_and_says_why() {
    let setup = Setup::new("", "");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let out = cli_as_an_outsider(&setup, &["status"]);
    assert!(
        !out.status.success(),
        "exit 0 for a user who may read nothing: {}{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        !stdout(&out).contains("nothing recorded"),
        "{}",
        stdout(&out)
    );
    assert!(
        stderr(&out).contains("permission denied") && stderr(&out).contains("group kedge"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reconcile_suspend_and_resume_a_source_through_the_socket_and_across_a_restart() {
    let setup = Setup::new("", "");
    let first = setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    let bound = Duration::from_secs(30);
    setup.wait_until("the first fetch", bound, || {
        setup.cli(&["status"]).status.success()
    });
    assert!(report(&setup).daemon_running);

    // The interval is 1h: only the request explains the new revision.
    let second = setup.repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let started = Instant::now();
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!(
            "git/fleet: stored artifact for revision main@sha1:{second}"
        )),
        "{}",
        stdout(&out)
    );
    eprintln!(
        "kedge reconcile source (fetch of a file:// repository included): {:.0} ms",
        took.as_secs_f64() * 1000.0
    );
    assert_ne!(first, second);

    let out = setup.cli(&["suspend", "git/fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "git/fleet suspended");
    assert!(suspended(&report(&setup), "git", "fleet"));
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("git/fleet is suspended"),
        "{}",
        stderr(&out)
    );
    let table = stdout(&setup.cli(&["status"]));
    assert!(table.contains("SUSPENDED"), "{table}");

    // The suspension outlives the daemon.
    assert!(daemon.stop().success());
    let offline = report(&setup);
    assert!(!offline.daemon_running);
    assert!(suspended(&offline, "git", "fleet"), "{offline:?}");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    assert!(suspended(&report(&setup), "git", "fleet"));
    let out = setup.cli(&["resume", "git/fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!suspended(&report(&setup), "git", "fleet"));
    let out = setup.cli(&["reconcile", "source", "fleet"]);
    assert!(out.status.success(), "{}", stderr(&out));

    let out = setup.cli(&["events", "git/fleet"]);
    let events = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        events.contains("Suspended")
            && events.contains("Resumed")
            && events.contains("NewArtifact"),
        "{events}"
    );
    let store = Store::open_read_only(&setup.state_dir.join("kedge.db")).expect("state");
    assert!(!store.is_suspended("git", "fleet").expect("suspensions"));
}

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

async fn value_of(client: &kube::Client, namespace: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(name).await.expect("get configmap")?;
    cm.data.unwrap_or_default().get("key").cloned()
}

#[tokio::test]
async fn a_kustomization_is_reconciled_on_request_and_diffed_and_built_by_name_while_suspended() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "cli-ks").await;
    let kustomization = format!(
        "[kustomization.cli-apps-1]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\nretry_interval = \"1h\"\nprune = true\ntarget_namespace = \"{}\"\n",
        ns.name
    );
    let agent = format!(
        "kubeconfig = {:?}\n",
        cluster().kubeconfig.display().to_string()
    );
    let setup = Setup::new(&agent, &kustomization);
    let first = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "one"))], "one");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let db = setup.state_dir.join("kedge.db");
    let applied = |revision: &str| {
        Store::open_read_only(&db)
            .ok()
            .and_then(|s| s.kustomization_status("cli-apps-1").ok().flatten())
            .is_some_and(|s| {
                s.ready
                    && s.last_applied_revision.as_deref() == Some(&format!("main@sha1:{revision}"))
            })
    };
    setup.wait_until("the first apply", Duration::from_secs(60), || {
        applied(&first)
    });

    // Latency: from the request to the start of the reconcile it caused
    // (the interval is 1h, so nothing else starts one).
    let mut latencies = Vec::new();
    for _ in 0..5 {
        let requested = kedge::state::now_millis();
        let out = setup.cli(&["reconcile", "kustomization", "cli-apps-1"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).contains("kustomization/cli-apps-1: Applied revision"),
            "{}",
            stdout(&out)
        );
        let status = Store::open_read_only(&db)
            .expect("state")
            .kustomization_status("cli-apps-1")
            .expect("status")
            .expect("recorded");
        let started = status.last_attempt_at.unwrap_or(0) - status.last_duration_ms.unwrap_or(0);
        latencies.push(started - requested);
    }
    latencies.sort();
    eprintln!(
        "reconcile request → reconcile start (kedge CLI process start included), 5 runs: {latencies:?} ms, median {} ms",
        latencies[2]
    );
    // A functional bound (the interval is 1h); the figure itself is printed
    // above and recorded in docs/BENCHMARKS.md.
    assert!(
        latencies[2] < 1000,
        "a requested reconcile starts at once: {latencies:?} ms"
    );

    // Suspended: a new revision is fetched but not applied; diff and build show it.
    let out = setup.cli(&["suspend", "cli-apps-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let second = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "two"))], "two");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(
        stdout(&out).contains(&second),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let out = setup.cli(&["reconcile", "kustomization", "cli-apps-1"]);
    assert!(
        !out.status.success() && stderr(&out).contains("suspended"),
        "{}",
        stderr(&out)
    );
    let out = setup.cli(&["diff", "cli-apps-1"]);
    let diff = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "changes found: {diff}{}",
        stderr(&out)
    );
    assert!(
        diff.contains(&format!("~ ConfigMap/{}/a would change", ns.name))
            && diff.contains("~ data.key: \"one\" -> \"two\""),
        "{diff}"
    );
    let out = setup.cli(&["build", "cli-apps-1"]);
    let yaml = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        yaml.contains("key: two") && yaml.contains(&format!("namespace: {}", ns.name)),
        "{yaml}"
    );
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("one")
    );

    // Resumed: the runner restarts and applies the new revision.
    let out = setup.cli(&["resume", "cli-apps-1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    setup.wait_until(
        "the second apply after resume",
        Duration::from_secs(60),
        || applied(&second),
    );
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("two")
    );
    let out = setup.cli(&["diff", "cli-apps-1"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("no changes"), "{}", stdout(&out));

    // --with-source: the new commit is fetched, then applied, in one request.
    let third = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "three"))], "three");
    let out = setup.cli(&["reconcile", "kustomization", "cli-apps-1", "--with-source"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains(&format!("Applied revision: main@sha1:{third}")),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("three")
    );
    // The new artifact wakes the kustomization: the request adds no second run.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let runs = setup
        .log_text()
        .matches(&format!("Applied revision: main@sha1:{third}"))
        .count();
    assert_eq!(
        runs,
        1,
        "runs at the new revision; log:\n{}",
        setup.log_text()
    );
}
