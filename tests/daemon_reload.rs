//! Config reload of a running `kedge run`: a valid change is applied, an
//! invalid one is refused with its position while the last good config
//! keeps running, and a file renamed over the config is picked up.

use std::time::Duration;

use kedge::protocol::StatusReport;

use crate::daemon_common::{stdout, Setup};
use crate::support::git::FixtureRepo;

fn report(setup: &Setup) -> StatusReport {
    let out = setup.cli(&["status", "-o", "json"]);
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|err| {
        panic!(
            "status -o json: {err}: {}{}",
            stdout(&out),
            crate::daemon_common::stderr(&out)
        )
    })
}

fn source_revision(report: &StatusReport, name: &str) -> Option<String> {
    report
        .sources
        .iter()
        .find(|row| row.name == name)
        .and_then(|row| row.revision.clone())
}

#[test]
fn a_valid_change_is_applied_an_invalid_one_refused_with_its_position_and_a_rename_picked_up() {
    let setup = Setup::new("", "");
    let first = setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let second_repo = FixtureRepo::new(setup.root.path(), "second");
    let second = second_repo.commit(&[("b.yaml", "b: 1\n")], "two");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let bound = Duration::from_secs(30);
    setup.wait_until("git/fleet fetched", bound, || {
        source_revision(&report(&setup), "fleet") == Some(format!("main@sha1:{first}"))
    });

    // A valid change, written in place: the new source is fetched.
    let with_second = format!(
        "{}[git.second]\nurl = \"file://{}\"\ninterval = \"1h\"\n",
        setup.config_text("", ""),
        second_repo.bare.display()
    );
    setup.write_config(&with_second);
    setup.wait_until("git/second fetched after the reload", bound, || {
        source_revision(&report(&setup), "second") == Some(format!("main@sha1:{second}"))
    });
    assert!(
        setup
            .log_text()
            .contains("config reloaded (sources: +git/second)"),
        "{}",
        setup.log_text()
    );

    // An invalid change: refused with file:line:col, the old config runs on.
    let invalid = format!(
        "{}[git.second]\nurl = \"file://{}\"\ninterval = \"soon\"\n",
        setup.config_text("", ""),
        second_repo.bare.display()
    );
    let line = invalid
        .lines()
        .position(|l| l == "interval = \"soon\"")
        .expect("the bad line")
        + 1;
    setup.write_config(&invalid);
    setup.wait_until("the refusal in kedge status", bound, || {
        !report(&setup).problems.is_empty()
    });
    let out = setup.cli(&["status"]);
    let table = stdout(&out);
    assert!(
        !out.status.success(),
        "status exits 1 while the config is refused"
    );
    assert!(table.contains("config refused"), "{table}");
    assert!(
        table.contains(&format!("kedge.toml:{line}:12: git.second.interval")),
        "the position of the bad value (line {line}): {table}"
    );
    assert!(
        setup.log_text().contains(&format!("kedge.toml:{line}:12")),
        "the position is in the log too"
    );
    let events = stdout(&setup.cli(&["events", "agent/config"]));
    assert!(
        events.contains("ConfigRefused") && events.contains("ConfigReloaded"),
        "{events}"
    );
    let newer = setup.repo.commit(&[("a.yaml", "a: 2\n")], "newer");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(
        out.status.success() && stdout(&out).contains(&newer),
        "the last good config keeps running: {}{}",
        stdout(&out),
        crate::daemon_common::stderr(&out)
    );

    // A valid file renamed over the config (as editors save): picked up,
    // the refusal forgotten, the removed source gone.
    setup.replace_config(&setup.config_text("", ""));
    setup.wait_until("the renamed config applied", bound, || {
        let report = report(&setup);
        report.problems.is_empty() && source_revision(&report, "second").is_none()
    });
    let out = setup.cli(&["status"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(!stdout(&out).contains("git/second"), "{}", stdout(&out));
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: v\n")
}

#[tokio::test]
async fn kustomizations_removed_by_a_reload_are_pruned_per_deletion_policy_and_others_run_on() {
    use crate::support::{cluster, TestNamespace};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::Api;

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "reload-rm").await;
    let table = |name: &str, policy: &str| {
        format!(
            "[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"./{name}\"\ninterval = \"1h\"\nretry_interval = \"1s\"\nprune = true\ntarget_namespace = \"{}\"\ndeletion_policy = \"{policy}\"\n\n",
            ns.name
        )
    };
    let agent = format!(
        "kubeconfig = {:?}\nremoval_grace_period = \"1s\"\n",
        cluster().kubeconfig.display().to_string()
    );
    let all = format!(
        "{}{}{}",
        table("gone", "delete"),
        table("kept", "orphan"),
        table("stays", "delete")
    );
    let setup = Setup::new(&agent, &all);
    setup.repo.commit(
        &[
            ("gone/a.yaml", &configmap("gone-a")),
            ("kept/a.yaml", &configmap("kept-a")),
            ("stays/a.yaml", &configmap("stays-a")),
        ],
        "three kustomizations",
    );
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let all_ready = |report: &StatusReport| {
        report.kustomizations.len() == 3 && report.kustomizations.iter().all(|k| k.ready)
    };
    setup.wait_until(
        "three kustomizations applied",
        Duration::from_secs(60),
        || all_ready(&report(&setup)),
    );

    // A source change restarts the scheduler only: the same revision is
    // fetched again, and no kustomization runs again (their interval is 1h).
    let db = setup.state_dir.join("kedge.db");
    let attempts = || {
        kedge::state::Store::open_read_only(&db)
            .and_then(|store| store.kustomization_statuses())
            .map(|rows| rows.iter().map(|r| r.last_attempt_at).collect::<Vec<_>>())
            .expect("kustomization statuses")
    };
    // Start-up may reconcile twice (the first run, then the wake of the
    // source's first artifact): the baseline is taken once that has settled.
    let mut before = attempts();
    setup.wait_until(
        "the start-up reconciles settled",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(500));
            let now = attempts();
            std::mem::replace(&mut before, now.clone()) == now
        },
    );
    let fetched_at = || {
        kedge::state::Store::open_read_only(&db)
            .and_then(|store| store.source_status("git", "fleet"))
            .ok()
            .flatten()
            .and_then(|status| status.last_attempt_at)
    };
    let fetched_before = fetched_at();
    setup.replace_config(&setup.config_text(&agent, &all).replace(
        "interval = \"1h\"\n\n[kustomization.gone]",
        "interval = \"2h\"\n\n[kustomization.gone]",
    ));
    setup.wait_until("the source change applied", Duration::from_secs(30), || {
        setup
            .log_text()
            .contains("config reloaded (sources: ~git/fleet)")
    });
    // The witness: the restarted scheduler has fetched again. A reconcile
    // it caused would follow within moments; none may come.
    setup.wait_until("the source fetched again", Duration::from_secs(30), || {
        fetched_at() > fetched_before
    });
    setup.stays_for(
        Duration::from_secs(2),
        "no kustomization reconciled again",
        || attempts() == before,
    );

    setup.replace_config(&setup.config_text(&agent, &table("stays", "delete")));
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while configmaps.get_opt("gone-a").await.expect("get").is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "gone-a not deleted after the reload; log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        configmaps.get_opt("kept-a").await.expect("get").is_some(),
        "orphaned"
    );
    assert!(configmaps.get_opt("stays-a").await.expect("get").is_some());
    setup.wait_until("only stays recorded", Duration::from_secs(30), || {
        kedge::state::Store::open_read_only(&db)
            .and_then(|store| store.kustomization_statuses())
            .is_ok_and(|rows| rows.len() == 1 && rows[0].name == "stays")
    });
    let out = setup.cli(&["reconcile", "kustomization", "stays"]);
    assert!(
        out.status.success(),
        "{}",
        crate::daemon_common::stderr(&out)
    );
}

#[tokio::test]
async fn a_kubeconfig_rewritten_on_disk_is_picked_up_and_an_unreachable_server_is_logged_with_url_and_cause(
) {
    use crate::support::{cluster, git::free_port, TestNamespace};

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "reload-kubeconfig").await;
    let good = std::fs::read_to_string(&cluster().kubeconfig).expect("read kubeconfig");
    let server = good
        .lines()
        .find_map(|line| line.trim().strip_prefix("server:"))
        .map(str::trim)
        .expect("a server in the kubeconfig")
        .to_string();
    let dead = format!("https://127.0.0.1:{}", free_port());
    let setup = Setup::new("", "");
    let kubeconfig = setup.root.path().join("k3s.yaml");
    std::fs::write(&kubeconfig, good.replace(&server, &dead)).expect("write kubeconfig");
    setup.write_config(&setup.config_text(
        &format!("kubeconfig = {:?}\n", kubeconfig.display().to_string()),
        &format!(
            "[kustomization.reload-apps-1]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\nretry_interval = \"1s\"\nprune = true\ntarget_namespace = \"{}\"\n",
            ns.name
        ),
    ));
    setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a"))], "one");
    let _daemon = setup.start(&[]);
    setup.wait_ready();

    let bound = Duration::from_secs(30);
    setup.wait_until("the failure logged with the server's URL", bound, || {
        setup
            .log_text()
            .lines()
            .any(|line| line.contains("kustomization=reload-apps-1") && line.contains(&dead))
    });
    let text = setup.log_text();
    let failure = text
        .lines()
        .find(|line| line.contains("kustomization=reload-apps-1") && line.contains(&dead))
        .unwrap_or_default();
    assert!(
        failure.contains("Connection refused"),
        "the underlying cause is logged: {failure}"
    );
    assert!(
        !text.contains("failed with error"),
        "no context-free error lines: {text}"
    );

    // The file is fixed in place, as a certificate rotation rewrites it: no SIGHUP.
    std::fs::write(&kubeconfig, &good).expect("rewrite kubeconfig");
    setup.wait_until("apps applied with the new kubeconfig", bound, || {
        report(&setup)
            .kustomizations
            .iter()
            .any(|k| k.name == "reload-apps-1" && k.ready)
    });
}
