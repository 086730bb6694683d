//! `[agent] config_from` under `kedge run`: the node's kustomizations are
//! declared in its fleet repository; a commit adds one without touching
//! the local file, a bad commit is refused while the last good config
//! keeps running, a commit may not redefine the fleet source, and after a
//! restart with the repository unreachable the last good config is used.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::DeleteParams;
use kube::Api;

use crate::kustomization_run::{configmap, kustomization, value_of, Setup};
use crate::support::{cluster, eventually, TestNamespace};

const CONFIG_FROM: &str = "config_from = { source = \"git/fleet\", path = \"clusters/edge-1\" }\n";

fn status(setup: &Setup) -> String {
    let out = setup.cli(&["status"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until `kedge status` says `text`.
fn wait_status(setup: &Setup, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let said = status(setup);
        if said.contains(text) {
            return said;
        }
        assert!(
            Instant::now() < deadline,
            "kedge status never said {text:?}; it says:\n{said}\nlog:\n{}",
            setup.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn kustomizations_declared_in_git_are_applied_and_bad_commits_refused() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "cfg-git").await;
    let setup = Setup::new("");
    setup.write_config_with_agent(CONFIG_FROM, "");
    let local = std::fs::read(&setup.config).expect("read the local config");

    let apps = kustomization("cfg-apps", "./apps", &ns.name, "");
    let first = setup.repo.commit(
        &[
            ("clusters/edge-1/apps.toml", &apps),
            ("clusters/edge-1/README.md", "not a fragment\n"),
            ("apps/a.yaml", &configmap("a", "one")),
        ],
        "declare the apps kustomization",
    );
    let mut daemon = setup.start();
    setup.wait_applied("cfg-apps", &first);
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("one")
    );
    let said = status(&setup);
    assert!(
        said.contains("DECLARED IN")
            && said.contains(&format!(
                "git/fleet@main@sha1:{first}:clusters/edge-1/apps.toml"
            )),
        "{said}"
    );

    // A bad fragment: refused, located in the repository; the last good
    // config keeps running (and follows the source's new revision).
    let broken = apps.replace("interval = \"1m\"", "interval = \"soon\"");
    let second = setup.repo.commit(
        &[
            ("clusters/edge-1/apps.toml", &broken),
            ("apps/a.yaml", &configmap("a", "two")),
        ],
        "a bad interval",
    );
    let said = wait_status(
        &setup,
        &format!("git/fleet@main@sha1:{second}:clusters/edge-1/apps.toml:4:12: kustomization.cfg-apps.interval"),
    );
    assert!(
        said.contains("refused, still running the last good one"),
        "{said}"
    );
    setup.wait_applied("cfg-apps", &second);
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("two")
    );

    // Redefining the fleet source is refused: a commit must not be able
    // to cut the node off from its repository.
    let hijack = format!("{apps}\n[git.fleet]\nurl = \"https://git.example.org/elsewhere.git\"\n");
    let third = setup
        .repo
        .commit(&[("clusters/edge-1/apps.toml", &hijack)], "move the fleet");
    let said = wait_status(
        &setup,
        &format!("git/fleet@main@sha1:{third}:clusters/edge-1/apps.toml:"),
    );
    assert!(
        said.contains("may not declare the source the config comes from"),
        "{said}"
    );

    // A good commit adds a kustomization; the refusal is forgotten.
    let more = kustomization("cfg-more", "./more", &ns.name, "");
    let fourth = setup.repo.commit(
        &[
            ("clusters/edge-1/apps.toml", &apps),
            ("clusters/edge-1/more.toml", &more),
            ("more/b.yaml", &configmap("b", "more")),
        ],
        "add the more kustomization",
    );
    setup.wait_applied("cfg-more", &fourth);
    assert_eq!(
        value_of(&client, &ns.name, "b").await.as_deref(),
        Some("more")
    );
    let said = wait_status(
        &setup,
        &format!("git/fleet@main@sha1:{fourth}:clusters/edge-1/more.toml"),
    );
    assert!(!said.contains("refused"), "{said}");
    assert_eq!(
        std::fs::read(&setup.config).expect("read the local config"),
        local,
        "the local file is never written"
    );

    // Restart with the repository gone: the last good config runs.
    daemon.0.kill().expect("kill kedge");
    let _ = daemon.0.wait();
    let away = setup.repo.bare.with_extension("away");
    std::fs::rename(&setup.repo.bare, &away).expect("take the repository away");
    let _daemon = setup.start();
    setup.wait_until_logged("running the config last read from git/fleet@main@sha1:");
    let said = wait_status(&setup, "cfg-more");
    assert!(
        said.contains(&format!(
            "git/fleet@main@sha1:{fourth}:clusters/edge-1/more.toml"
        )),
        "{said}"
    );
    // Still reconciled from the stored artifact: a deleted object comes back.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .delete("b", &DeleteParams::default())
        .await
        .expect("delete b");
    eventually(Duration::from_secs(60), "b recreated", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move { value_of(&client, &ns, "b").await.as_deref() == Some("more") }
    })
    .await;
    std::fs::rename(&away, &setup.repo.bare).expect("bring the repository back");
}

#[tokio::test]
async fn nothing_declared_in_git_is_deleted_while_the_config_source_was_never_read() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "cfg-wait").await;
    let moved = kustomization("cfg-moved", "./apps", &ns.name, "");
    let setup = Setup::new(&moved);
    let first = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "kept"))], "apps");
    let mut daemon = setup.start();
    setup.wait_applied("cfg-moved", &first);
    daemon.0.kill().expect("kill kedge");
    let _ = daemon.0.wait();

    // The kustomization moves from the local file to Git, and the node
    // restarts while the repository is unreachable: the kustomization
    // looks removed, but nothing is deleted.
    let second = setup.repo.commit(
        &[("clusters/edge-1/moved.toml", &moved)],
        "the kustomization, for config_from",
    );
    let away = setup.repo.bare.with_extension("away");
    std::fs::rename(&setup.repo.bare, &away).expect("take the repository away");
    setup.write_config_with_agent(&format!("{CONFIG_FROM}removal_grace_period = \"1s\"\n"), "");
    let _daemon = setup.start();
    setup.wait_until_logged("no config read from git/fleet yet");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("kept"),
        "objects of a kustomization declared in a source not read yet are kept; log:\n{}",
        setup.log_text()
    );

    // Once the repository is back, its config declares the kustomization again.
    std::fs::rename(&away, &setup.repo.bare).expect("bring the repository back");
    wait_status(
        &setup,
        &format!("git/fleet@main@sha1:{second}:clusters/edge-1/moved.toml"),
    );
    setup.wait_for("cfg-moved", "no longer pending removal", |s| {
        s.ready && s.reason != kedge::state::REMOVAL_PENDING
    });
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn a_commit_refused_for_want_of_a_local_table_applies_once_the_local_file_has_it() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "cfg-retry").await;
    let setup = Setup::new("");
    setup.write_config_with_agent(CONFIG_FROM, "");
    let from_extra = kustomization("cfg-retry", "./apps", &ns.name, "")
        .replace("source = \"git/fleet\"", "source = \"git/extra\"");
    let commit = setup.repo.commit(
        &[
            ("clusters/edge-1/apps.toml", &from_extra),
            ("apps/a.yaml", &configmap("a", "retried")),
        ],
        "a kustomization of a source the node does not have yet",
    );
    let _daemon = setup.start();
    wait_status(
        &setup,
        "kustomization.cfg-retry.source: no source [git.extra]",
    );

    // The operator adds the source to the local file: the refused commit
    // is tried again at once, not at the next commit.
    let extra = format!(
        "[git.extra]\nurl = \"file://{}\"\ninterval = \"1s\"\n",
        setup.repo.bare.display()
    );
    setup.write_config_with_agent(CONFIG_FROM, &extra);
    setup.wait_for("cfg-retry", "applied from git/extra", |s| {
        s.ready && s.last_applied_revision.as_deref() == Some(&format!("main@sha1:{commit}"))
    });
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("retried")
    );
    let said = status(&setup);
    assert!(!said.contains("refused"), "{said}");
}
