//! `kedge run` with Git sources and kustomizations against the test control
//! plane: apply, update, prune, invalid manifests, drift, kill -9 and
//! restart, and the prune-disabled annotation. The helpers here serve
//! `kustomization_guarantees` too.
//!
//! Every test names its kustomizations after itself: the drift watch
//! selects by owner label cluster-wide, so a shared name would let one
//! test's edits wake another test's daemon.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kedge::state::{KustomizationStatus, Store};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::git::FixtureRepo;
use crate::support::{cluster, eventually, TestNamespace};

pub(crate) struct Daemon(pub(crate) Child);

/// `kedge run --config CONFIG` at debug level, its log appended to `log`.
pub(crate) fn run_daemon(config: &std::path::Path, log: &std::path::Path) -> Daemon {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log");
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config"])
            .arg(config)
            .env("KEDGE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge run"),
    )
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A Git repository, a config and a state directory for one test.
pub(crate) struct Setup {
    root: tempfile::TempDir,
    pub(crate) repo: FixtureRepo,
    pub(crate) config: PathBuf,
    pub(crate) state_dir: PathBuf,
    log: PathBuf,
    /// More keys of the `[git.fleet]` table.
    source_keys: String,
}

impl Setup {
    /// `kustomizations` is the TOML of the `[kustomization.*]` tables.
    pub(crate) fn new(kustomizations: &str) -> Setup {
        Setup::with_source_keys("", kustomizations)
    }

    /// [`Setup::new`] with `source_keys` (TOML lines) added to `[git.fleet]`.
    pub(crate) fn with_source_keys(source_keys: &str, kustomizations: &str) -> Setup {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FixtureRepo::new(root.path(), "fleet");
        let state_dir = root.path().join("state");
        let config = root.path().join("kedge.toml");
        let log = root.path().join("kedge.log");
        let setup = Setup {
            root,
            repo,
            config,
            state_dir,
            log,
            source_keys: source_keys.to_string(),
        };
        setup.write_config(kustomizations);
        setup
    }

    /// Writes the config with `kustomizations` (a running daemon reloads it).
    pub(crate) fn write_config(&self, kustomizations: &str) {
        self.write_config_with_agent("", kustomizations);
    }

    /// [`Setup::write_config`] with `agent_keys` (TOML lines) added to `[agent]`.
    pub(crate) fn write_config_with_agent(&self, agent_keys: &str, kustomizations: &str) {
        let text = format!(
            "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n{agent_keys}\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"1s\"\n{}\n\n{kustomizations}",
            self.state_dir.display().to_string(),
            cluster().kubeconfig.display().to_string(),
            self.socket().display().to_string(),
            self.repo.bare.display(),
            self.source_keys,
        );
        let temp = self.config.with_extension("tmp");
        std::fs::write(&temp, text).expect("write config");
        std::fs::rename(&temp, &self.config).expect("rename the config into place");
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("kedge.sock")
    }

    /// Runs the CLI against this setup's daemon.
    pub(crate) fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run kedge")
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the daemon's log contains `text`.
    pub(crate) fn wait_until_logged(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log_text().contains(text) {
            assert!(
                Instant::now() < deadline,
                "{text:?} not logged within 60 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The object ids of kustomization `name`'s inventory in the state.
    pub(crate) fn inventory(&self, name: &str) -> Vec<String> {
        let db = self.state_dir.join("kedge.db");
        Store::open_read_only(&db)
            .and_then(|store| store.inventory(name))
            .unwrap_or_else(|err| panic!("inventory of {name}: {err}"))
    }

    pub(crate) fn start(&self) -> Daemon {
        run_daemon(&self.config, &self.log)
    }

    pub(crate) fn status(&self, name: &str) -> Option<KustomizationStatus> {
        let db = self.state_dir.join("kedge.db");
        Store::open_read_only(&db)
            .ok()?
            .kustomization_status(name)
            .ok()?
    }

    /// Waits until kustomization `name` satisfies `accept`; panics with its
    /// status and the daemon's log otherwise.
    pub(crate) fn wait_for(
        &self,
        name: &str,
        what: &str,
        accept: impl Fn(&KustomizationStatus) -> bool,
    ) -> KustomizationStatus {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let status = self.status(name);
            if let Some(status) = status.as_ref().filter(|s| accept(s)) {
                return status.clone();
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                panic!(
                    "timed out waiting for {what}; status: {status:#?}\nlog (newest first):\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn wait_applied(&self, name: &str, commit: &str) -> KustomizationStatus {
        self.wait_for(name, &format!("{name} applied at {commit}"), |s| {
            s.ready && s.last_applied_revision.as_deref() == Some(&format!("main@sha1:{commit}"))
        })
    }
}

pub(crate) fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

pub(crate) fn kustomization(name: &str, path: &str, namespace: &str, extra: &str) -> String {
    format!(
        "[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"{path}\"\ninterval = \"1m\"\nretry_interval = \"1s\"\nprune = true\ntarget_namespace = \"{namespace}\"\n{extra}\n"
    )
}

pub(crate) async fn value_of(client: &Client, namespace: &str, name: &str) -> Option<String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get_opt(name).await.expect("get configmap")?;
    cm.data.unwrap_or_default().get("key").cloned()
}

#[tokio::test]
async fn a_commit_is_applied_updated_and_pruned_and_an_invalid_one_changes_nothing() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "ks-apply").await;
    let setup = Setup::new(&kustomization("run-apply", "./apps", &ns.name, ""));
    let first = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "one")),
            ("apps/b.yaml", &configmap("b", "one")),
            ("docs/README.md", "not a manifest\n"),
        ],
        "two configmaps",
    );
    let _daemon = setup.start();
    setup.wait_applied("run-apply", &first);
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("one")
    );
    assert_eq!(
        value_of(&client, &ns.name, "b").await.as_deref(),
        Some("one")
    );

    // A change and a removal: a is updated, b is pruned.
    std::fs::remove_file(setup.repo.work.join("apps/b.yaml")).expect("rm b");
    let second = setup.repo.commit(
        &[("apps/a.yaml", &configmap("a", "two"))],
        "update a, drop b",
    );
    setup.wait_applied("run-apply", &second);
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("two")
    );
    assert_eq!(value_of(&client, &ns.name, "b").await, None, "b pruned");

    // An invalid object in the set: nothing of the set is applied.
    let third = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "three")),
            (
                "apps/bad.yaml",
                "apiVersion: v1\nkind: Service\nmetadata:\n  name: bad\nspec:\n  ports:\n  - port: 99999\n",
            ),
        ],
        "invalid service",
    );
    let failed = setup.wait_for("run-apply", "the invalid revision refused", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&format!("main@sha1:{third}"))
    });
    assert_eq!(failed.reason, "ReconciliationFailed");
    assert!(
        failed.message.contains("Service/") && failed.message.contains("bad"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("port"),
        "names the field: {}",
        failed.message
    );
    assert_eq!(
        failed.last_applied_revision,
        Some(format!("main@sha1:{second}"))
    );
    assert_eq!(
        value_of(&client, &ns.name, "a").await.as_deref(),
        Some("two"),
        "nothing applied"
    );
}

#[tokio::test]
async fn drift_by_another_manager_and_deletion_are_reverted_promptly() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "ks-drift").await;
    // A long interval: only the drift watch can explain a revert. The bound
    // is generous (a loaded machine, a debug build); the timing goal lives
    // in `benches/drift.rs`.
    let setup = Setup::new(
        &kustomization("run-drift", "./apps", &ns.name, "")
            .replace("interval = \"1m\"", "interval = \"1h\""),
    );
    let commit = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "declared"))], "one");
    let _daemon = setup.start();
    setup.wait_applied("run-drift", &commit);

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .patch("a", &PatchParams::apply("kubectl-edit").force(), &Patch::Apply(&json!({
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "a" }, "data": { "key": "edited" }
        })))
        .await
        .expect("edit by another manager");
    let reverted = eventually(Duration::from_secs(60), "edit reverted", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move { value_of(&client, &ns, "a").await.as_deref() == Some("declared") }
    })
    .await;
    eprintln!(
        "drift reverted in {:.0} ms",
        reverted.as_secs_f64() * 1000.0
    );

    configmaps
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    eventually(Duration::from_secs(60), "deleted object recreated", || {
        let client = client.clone();
        let ns = ns.name.clone();
        async move { value_of(&client, &ns, "a").await.as_deref() == Some("declared") }
    })
    .await;
}

#[tokio::test]
async fn prune_disabled_objects_stay_while_the_rest_of_the_commit_is_pruned() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "ks-keep").await;
    let setup = Setup::new(&kustomization("run-keep", "./infra", &ns.name, ""));
    let keep = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep\n  annotations:\n    kedge.dev/prune: disabled\ndata:\n  key: k\n";
    let first = setup.repo.commit(
        &[
            ("infra/base.yaml", &configmap("base", "1")),
            ("infra/keep.yaml", keep),
            ("infra/gone.yaml", &configmap("gone", "1")),
        ],
        "three configmaps",
    );
    let _daemon = setup.start();
    setup.wait_applied("run-keep", &first);

    // Both leave Git in one commit: the annotation alone explains the difference.
    for file in ["infra/keep.yaml", "infra/gone.yaml"] {
        std::fs::remove_file(setup.repo.work.join(file)).expect("rm");
    }
    let second = setup.repo.commit(&[], "drop keep and gone from git");
    setup.wait_applied("run-keep", &second);
    assert_eq!(
        value_of(&client, &ns.name, "gone").await,
        None,
        "the unannotated object is pruned"
    );
    assert_eq!(
        value_of(&client, &ns.name, "keep").await.as_deref(),
        Some("k"),
        "prune disabled"
    );
}

#[tokio::test]
async fn after_kill_9_a_restarted_daemon_still_prunes_what_it_applied_before() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "ks-restart").await;
    let setup = Setup::new(&kustomization("run-restart", "./apps", &ns.name, ""));
    let first = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "1")),
            ("apps/b.yaml", &configmap("b", "1")),
        ],
        "a and b",
    );
    {
        let mut daemon = setup.start();
        setup.wait_applied("run-restart", &first);
        // kill -9: no chance to clean up.
        daemon.0.kill().expect("kill -9");
        daemon.0.wait().expect("wait");
    }
    std::fs::remove_file(setup.repo.work.join("apps/b.yaml")).expect("rm b");
    let second = setup.repo.commit(&[], "drop b");
    let _daemon = setup.start();
    setup.wait_applied("run-restart", &second);
    assert_eq!(
        value_of(&client, &ns.name, "b").await,
        None,
        "b pruned after restart"
    );
    assert_eq!(value_of(&client, &ns.name, "a").await.as_deref(), Some("1"));
    let db = setup.state_dir.join("kedge.db");
    let inventory = Store::open_read_only(&db)
        .expect("db")
        .inventory("run-restart")
        .expect("inventory");
    assert_eq!(inventory.len(), 1, "{inventory:?}");
    assert!(
        inventory[0].contains("ConfigMap") && inventory[0].ends_with("_a"),
        "{inventory:?}"
    );
}

#[tokio::test]
async fn waiting_for_the_first_artifact_is_not_logged_as_a_failure() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "first-artifact").await;
    // A name no other test uses: a first start adopts objects labelled with it.
    let name = "first-artifact";
    // The repository has no commit yet: the source has no artifact to give.
    let setup = Setup::new(&kustomization(name, "./apps", &ns.name, ""));
    let _daemon = setup.start();
    setup.wait_for(
        name,
        "waiting for an artifact",
        |s: &KustomizationStatus| !s.ready,
    );
    let commit = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "one"))], "one");
    setup.wait_applied(name, &commit);
    let log = std::fs::read_to_string(&setup.log).unwrap_or_default();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("artifact"))
        .collect();
    assert!(
        warnings.is_empty(),
        "a kustomization waiting for its first artifact warns: {warnings:#?}"
    );
}

#[tokio::test]
async fn a_build_error_names_the_file_in_the_repository_with_source_and_revision() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "build-error").await;
    let setup = Setup::new(&kustomization("run-build-apps-1", "./apps", &ns.name, ""));
    let commit = setup
        .repo
        .commit(&[("apps/broken.yaml", "data: [unclosed\n")], "broken");
    let _daemon = setup.start();
    let failed = setup.wait_for(
        "run-build-apps-1",
        "the build refused",
        |s: &KustomizationStatus| !s.ready && s.reason == "BuildFailed",
    );
    assert!(
        failed.message.contains("apps/broken.yaml")
            && failed
                .message
                .contains(&format!("git/fleet@main@sha1:{commit}"))
            && !failed.message.contains("unpacked"),
        "{}",
        failed.message
    );
}
