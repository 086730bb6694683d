//! `kedge run` against an API server that freezes: a [`FreezableProxy`]
//! between kedge and the test control plane stops moving bytes, which is
//! what a SIGSTOPped API server looks like from kedge (the kernel still
//! accepts and buffers; nothing answers). The shared control plane itself
//! is never stopped, so other tests keep running.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kedge::state::{KustomizationStatus, Store};
use kube::Api;

use crate::daemon_common::{stdout, Setup};
use crate::support::proxy::FreezableProxy;
use crate::support::{cluster, TestNamespace};

/// How long the API server stays frozen: three kustomization timeouts.
const FREEZE: Duration = Duration::from_secs(30);
/// The kustomizations' timeout.
const TIMEOUT: &str = "8s";

// Kustomization names are unique to this file: a daemon started on an
// empty database adopts labelled objects of the same name anywhere in the
// shared cluster.

/// A proxy to the shared control plane and a kubeconfig that goes through it.
fn proxied_kubeconfig(dir: &Path) -> (FreezableProxy, String) {
    let server = &cluster().server;
    let target: SocketAddr = server
        .trim_start_matches("https://")
        .parse()
        .unwrap_or_else(|err| panic!("control plane address {server}: {err}"));
    let proxy = FreezableProxy::start(target);
    let text = std::fs::read_to_string(&cluster().kubeconfig).expect("read kubeconfig");
    let proxied = text.replace(
        server.as_str(),
        &format!("https://127.0.0.1:{}", proxy.port),
    );
    assert_ne!(text, proxied, "the kubeconfig names {server}");
    let path = dir.join("kubeconfig-proxied");
    std::fs::write(&path, proxied).expect("write kubeconfig");
    (proxy, path.display().to_string())
}

fn config(setup: &Setup, kubeconfig: &str, namespace: &str, names: &[&str]) -> String {
    let kustomizations: String = names
        .iter()
        .map(|name| {
            format!(
                "[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"./{name}\"\ninterval = \"1m\"\n\
                 timeout = \"{TIMEOUT}\"\nprune = true\ntarget_namespace = \"{namespace}\"\n\n"
            )
        })
        .collect();
    format!(
        "[agent]\nstate_dir = {:?}\nsocket = {:?}\nkubeconfig = {kubeconfig:?}\n\n\
         [git.fleet]\nurl = \"file://{}\"\ninterval = \"1s\"\n\n{kustomizations}",
        setup.state_dir.display().to_string(),
        setup.socket.display().to_string(),
        setup.repo.bare.display(),
    )
}

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

fn status(setup: &Setup, name: &str) -> Option<KustomizationStatus> {
    Store::open_read_only(&setup.state_dir.join("kedge.db"))
        .ok()?
        .kustomization_status(name)
        .ok()?
}

/// Waits up to `bound` for `accept` on kustomization `name`; returns its
/// status and how long that took.
fn wait_for(
    setup: &Setup,
    name: &str,
    what: &str,
    bound: Duration,
    accept: impl Fn(&KustomizationStatus) -> bool,
) -> (KustomizationStatus, Duration) {
    let start = Instant::now();
    let mut found = None;
    setup.wait_until(what, bound, || {
        found = status(setup, name).filter(|s| accept(s));
        found.is_some()
    });
    (found.expect("accepted status"), start.elapsed())
}

fn applied_at(commit: &str) -> impl Fn(&KustomizationStatus) -> bool + '_ {
    move |s| s.ready && s.last_applied_revision.as_deref() == Some(&format!("main@sha1:{commit}"))
}

/// `kedge status` answers, and how long it took.
fn status_answers(setup: &Setup) -> (String, Duration) {
    let start = Instant::now();
    let out = setup.cli(&["status"]);
    (stdout(&out), start.elapsed())
}

async fn value_of(namespace: &str, name: &str) -> Option<String> {
    let client = cluster().client().await;
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cm = api.get_opt(name).await.expect("get configmap")?;
    cm.data.unwrap_or_default().get("key").cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_api_server_times_out_in_time_says_so_and_the_commit_lands_soon_after_the_thaw() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "freeze").await;
    let setup = Setup::new("", "");
    let (proxy, kubeconfig) = proxied_kubeconfig(setup.root.path());
    setup.write_config(&config(
        &setup,
        &kubeconfig,
        &ns.name,
        &["frz-apps", "frz-other"],
    ));
    let first = setup.repo.commit(
        &[
            ("frz-apps/a.yaml", &configmap("a", "one")),
            ("frz-other/b.yaml", &configmap("b", "one")),
        ],
        "one",
    );
    let _daemon = setup.start(&[]);
    for name in ["frz-apps", "frz-other"] {
        wait_for(
            &setup,
            name,
            "applied before the freeze",
            Duration::from_secs(60),
            applied_at(&first),
        );
    }

    proxy.freeze();
    let frozen_at = Instant::now();
    let second = setup.repo.commit(
        &[
            ("frz-apps/a.yaml", &configmap("a", "two")),
            ("frz-other/b.yaml", &configmap("b", "two")),
        ],
        "two",
    );
    let timeout = humantime::parse_duration(TIMEOUT).expect("timeout");
    // Both runs of the new commit say what is wrong within their timeout
    // (plus the source's 1s interval and a generous margin for a loaded machine).
    for name in ["frz-apps", "frz-other"] {
        let (failed, _) = wait_for(
            &setup,
            name,
            "a timed-out run recorded during the freeze",
            timeout + Duration::from_secs(10),
            |s| {
                !s.ready
                    && s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{second}"))
            },
        );
        assert_eq!(failed.reason, "TimedOut", "{failed:?}");
        assert!(failed.message.contains("timed out after 8s"), "{failed:?}");
    }
    let reported_after = frozen_at.elapsed();
    let (shown, took) = status_answers(&setup);
    assert!(
        took < Duration::from_secs(5),
        "kedge status took {took:?} during the freeze"
    );
    assert!(
        shown.contains("timed out after 8s"),
        "kedge status shows the timeout:\n{shown}"
    );
    let log = setup.log_text();
    assert!(
        log.lines()
            .any(|l| l.contains("kustomization=frz-apps") && l.contains("TimedOut")),
        "kedge logs the timeout with the kustomization field:\n{log}"
    );
    assert!(
        frozen_at.elapsed() < FREEZE,
        "the freeze outlasts the first report ({reported_after:?})"
    );
    tokio::time::sleep(FREEZE.saturating_sub(frozen_at.elapsed())).await;
    let (_, took) = status_answers(&setup);
    assert!(
        took < Duration::from_secs(5),
        "kedge status took {took:?} late in the freeze"
    );

    proxy.thaw();
    let thawed_at = Instant::now();
    for name in ["frz-apps", "frz-other"] {
        wait_for(
            &setup,
            name,
            "the new commit applied after the thaw",
            Duration::from_secs(60),
            applied_at(&second),
        );
    }
    let after_thaw = thawed_at.elapsed();
    eprintln!("freeze {FREEZE:?}: timeout reported after {reported_after:?}; both applied {after_thaw:?} after the thaw");
    assert!(
        after_thaw < Duration::from_secs(10),
        "applied {after_thaw:?} after the thaw; log:\n{}",
        setup.log_text()
    );
    assert_eq!(value_of(&ns.name, "a").await.as_deref(), Some("two"));
    assert_eq!(value_of(&ns.name, "b").await.as_deref(), Some("two"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_kustomization_does_not_hold_up_a_start_while_the_api_server_is_frozen() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "freeze-start").await;
    let setup = Setup::new("", "");
    let (proxy, kubeconfig) = proxied_kubeconfig(setup.root.path());
    setup.write_config(&config(
        &setup,
        &kubeconfig,
        &ns.name,
        &["frz-apps", "frz-other"],
    ));
    let first = setup.repo.commit(
        &[
            ("frz-apps/a.yaml", &configmap("a", "one")),
            ("frz-other/b.yaml", &configmap("b", "one")),
        ],
        "one",
    );
    let mut daemon = setup.start(&[]);
    for name in ["frz-apps", "frz-other"] {
        wait_for(
            &setup,
            name,
            "applied",
            Duration::from_secs(60),
            applied_at(&first),
        );
    }
    assert!(daemon.stop().success());

    setup.write_config(&config(&setup, &kubeconfig, &ns.name, &["frz-apps"]));
    proxy.freeze();
    let started = Instant::now();
    let _daemon = setup.start(&[]);
    setup.wait_until(
        "the control socket during the freeze",
        Duration::from_secs(10),
        || setup.socket.exists() && status_answers(&setup).1 < Duration::from_secs(5),
    );
    eprintln!(
        "control socket answered {:?} after a start during the freeze",
        started.elapsed()
    );

    proxy.thaw();
    let mut gone = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !gone && Instant::now() < deadline {
        gone = value_of(&ns.name, "b").await.is_none();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        gone,
        "the removed kustomization's object is deleted after the thaw; log:\n{}",
        setup.log_text()
    );
    assert_eq!(value_of(&ns.name, "a").await.as_deref(), Some("one"));
}
