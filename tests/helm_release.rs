//! `[helm_release]` under `kedge run`, against the test control plane and
//! its simulated node, with the chart in a Git source and the real `helm`
//! CLI reading back what kedge did: install, upgrade on changed values,
//! `helm rollback` by hand undone, a failing upgrade rolled back until
//! retries run out, removal from the config uninstalling.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::daemon_common::{stdout, Daemon, Setup};
use crate::support::helm::helm_output;
use crate::support::{built_tool, cluster, repo_root, TestNamespace};

const BOUND: Duration = Duration::from_secs(120);

fn helper_path() -> &'static Path {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PATH.get_or_init(|| built_tool("scripts/kedge-helm.sh", "KEDGE_HELM_BIN")) {
        Ok(path) => path,
        Err(err) => panic!("kedge-helm unavailable: {err}"),
    }
}

/// A daemon whose Git source holds the test chart at `charts/web`.
struct Release {
    setup: Setup,
    namespace: String,
    helm_home: tempfile::TempDir,
}

impl Release {
    fn new(namespace: &str) -> Release {
        let agent = format!(
            "kubeconfig = {:?}\nhelm_helper = {:?}\nremoval_grace_period = \"1s\"\n",
            cluster().kubeconfig.display().to_string(),
            helper_path().display().to_string(),
        );
        let setup = Setup::new(&agent, "");
        let chart = repo_root().join("tests/fixtures/helm-release/web");
        let files = chart_files(&chart);
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(path, text)| (path.as_str(), text.as_str()))
            .collect();
        setup.repo.commit(&files, "the web chart");
        Release {
            setup,
            namespace: namespace.to_string(),
            helm_home: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The config with `[helm_release.web]` given `extra` keys.
    fn configure(&self, extra: &str) {
        let release = format!(
            "[helm_release.web]\nchart = {{ source = \"git/fleet\", path = \"charts/web\" }}\ntarget_namespace = \"{}\"\nrelease_name = \"web\"\ninterval = \"3s\"\n{extra}",
            self.namespace
        );
        let agent = format!(
            "kubeconfig = {:?}\nhelm_helper = {:?}\nremoval_grace_period = \"1s\"\n",
            cluster().kubeconfig.display().to_string(),
            helper_path().display().to_string(),
        );
        self.setup
            .replace_config(&self.setup.config_text(&agent, &release));
    }

    fn helm(&self, args: &[&str]) -> String {
        let kubeconfig = cluster().kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig, "-n", &self.namespace];
        all.extend_from_slice(args);
        helm_output(self.helm_home.path(), &all).0
    }

    /// `helm history web` as (revision, status, description) rows.
    fn history(&self) -> Vec<(u64, String, String)> {
        let kubeconfig = cluster().kubeconfig.display().to_string();
        let out = std::process::Command::new(crate::support::helm::binary())
            .args(["--kubeconfig", &kubeconfig, "-n", &self.namespace])
            .args(["history", "web", "-o", "json"])
            .env("HELM_CONFIG_HOME", self.helm_home.path().join("config"))
            .env("HELM_CACHE_HOME", self.helm_home.path().join("cache"))
            .env("HELM_DATA_HOME", self.helm_home.path().join("data"))
            .output()
            .expect("run helm history");
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.iter()
            .map(|row| {
                (
                    row["revision"].as_u64().unwrap_or(0),
                    row["status"].as_str().unwrap_or("").to_string(),
                    row["description"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    fn values(&self) -> serde_json::Value {
        serde_json::from_str(&self.helm(&["get", "values", "web", "-o", "json"]))
            .unwrap_or_default()
    }

    fn status_line(&self) -> String {
        let out = self.setup.cli(&["status"]);
        stdout(&out)
            .lines()
            .find(|line| line.starts_with("helm_release/web"))
            .unwrap_or("")
            .to_string()
    }

    fn wait_history(&self, what: &str, check: impl Fn(&[(u64, String, String)]) -> bool) {
        self.setup
            .wait_until(what, BOUND, || check(&self.history()));
    }
}

fn chart_files(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read chart dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path.strip_prefix(root).expect("inside the chart");
            let text = std::fs::read_to_string(&path).expect("read chart file");
            files.push((format!("charts/web/{}", relative.display()), text));
        }
    }
    files
}

fn deployed(history: &[(u64, String, String)]) -> Option<u64> {
    history
        .iter()
        .rev()
        .find(|(_, status, _)| status == "deployed")
        .map(|(revision, _, _)| *revision)
}

#[tokio::test]
async fn a_release_installs_upgrades_undoes_a_manual_rollback_and_is_uninstalled_when_removed() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-cycle").await;
    let release = Release::new(&ns.name);
    release.configure("values = { message = \"first\" }\n");
    let mut daemon: Daemon = release.setup.start(&[]);
    release.setup.wait_ready();

    release.wait_history("the release installed by kedge", |h| deployed(h) == Some(1));
    assert_eq!(release.values()["message"], "first");
    release
        .setup
        .wait_until("helm_release/web Ready in kedge status", BOUND, || {
            release.status_line().contains("True")
        });
    let status = release.status_line();
    assert!(
        status.contains("1.0.0"),
        "the chart version is the revision: {status}"
    );

    // Changed values: one upgrade.
    release.configure("values = { message = \"second\" }\n");
    release.wait_history("the upgrade to the new values", |h| deployed(h) == Some(2));
    assert_eq!(release.values()["message"], "second");

    // A rollback by hand is noticed and upgraded back to the config.
    // kedge owns the fields (manager "kedge"): helm must force the conflicts.
    release.helm(&["rollback", "web", "1", "--force-conflicts"]);
    release.wait_history("kedge upgrading back after a manual rollback", |h| {
        deployed(h) == Some(4)
    });
    assert_eq!(release.values()["message"], "second");
    let history = release.history();
    assert!(
        history.iter().any(|(_, _, d)| d.contains("kedge upgrade")),
        "kedge's actions are described as its own: {history:?}"
    );

    // In sync: no further revision while kedge keeps reconciling.
    release.setup.stays_for(
        Duration::from_secs(8),
        "no new revision when in sync",
        || deployed(&release.history()) == Some(4),
    );

    // Removed from the config: uninstalled once the grace period passed.
    release.setup.replace_config(&release.setup.config_text(
        &format!(
            "kubeconfig = {:?}\nhelm_helper = {:?}\nremoval_grace_period = \"1s\"\n",
            cluster().kubeconfig.display().to_string(),
            helper_path().display().to_string(),
        ),
        "",
    ));
    release.wait_history("the release uninstalled", |h| h.is_empty());
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(events.contains("InstallSucceeded"), "{events}");
    assert!(events.contains("UpgradeSucceeded"), "{events}");
    assert!(events.contains("uninstalled"), "{events}");
    daemon.stop();
}

#[tokio::test]
async fn a_failing_upgrade_is_rolled_back_until_retries_run_out_then_stalls() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-fail").await;
    let release = Release::new(&ns.name);
    let policy =
        "timeout = \"8s\"\nupgrade = { remediation = { retries = 1, strategy = \"rollback\" } }\n";
    release.configure(policy);
    let mut daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release.wait_history("the release installed", |h| deployed(h) == Some(1));

    // Pods that never become ready: the upgrade times out.
    release.configure(&format!("{policy}values = {{ podFate = \"unready\" }}\n"));
    release
        .setup
        .wait_until("retries exhausted", Duration::from_secs(240), || {
            release.status_line().contains("retries exhausted")
        });
    let history = release.history();
    let failed = history.iter().filter(|(_, s, _)| s == "failed").count();
    assert_eq!(failed, 2, "one upgrade and one retry failed: {history:?}");
    assert_eq!(
        history.last().map(|(_, s, _)| s.as_str()),
        Some("deployed"),
        "the last failure was rolled back too (retries > 0 remediates it): {history:?}"
    );
    // Stalled: nothing more happens on the interval.
    let revisions = history.len();
    release
        .setup
        .stays_for(Duration::from_secs(8), "stalled", || {
            release.history().len() == revisions
        });
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(events.contains("UpgradeFailed"), "{events}");
    assert!(events.contains("RollbackSucceeded"), "{events}");
    daemon.stop();
}

#[tokio::test]
async fn values_come_from_a_secret_and_a_file_and_a_release_waits_for_its_kustomization() {
    use k8s_openapi::api::core::v1::Secret;
    use kube::api::PostParams;

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-values").await;
    let release = Release::new(&ns.name);
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web-values"},
        "stringData": {"values.yaml": "message: from-secret\nreplicaCount: 2\n"}
    }))
    .expect("a Secret");
    kube::Api::<Secret>::namespaced(client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create the values Secret");
    let file = release.setup.root.path().join("web-values.yaml");
    std::fs::write(&file, "message: from-file\nextra: kept\n").expect("write values file");
    // The kustomization's path does not exist yet: it cannot be ready.
    let infra = format!(
        "[kustomization.infra]\nsource = \"git/fleet\"\npath = \"infra\"\ninterval = \"1h\"\nprune = true\ntarget_namespace = \"{}\"\n",
        ns.name
    );
    let values = format!(
        "depends_on = [\"infra\"]\nvalues_from = [{{ file = {:?} }}, {{ kind = \"Secret\", name = \"web-values\" }}]\nvalues = {{ replicaCount = 3 }}\n",
        file.display().to_string()
    );
    release.configure(&format!("{values}{infra}"));
    let mut daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release
        .setup
        .wait_until("the release waiting for infra", BOUND, || {
            release
                .status_line()
                .contains("dependency 'kustomization/infra' is not ready")
        });
    assert!(
        release.history().is_empty(),
        "nothing installed before infra is ready"
    );

    release.setup.repo.commit(
        &[(
            "infra/config.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: infra\ndata:\n  a: b\n",
        )],
        "infra",
    );
    let fetched = release.setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(fetched.status.success(), "{}", stdout(&fetched));
    release.wait_history("the release installed once infra is ready", |h| {
        deployed(h) == Some(1)
    });
    // Later entries win: file < Secret < values.
    let values = release.values();
    assert_eq!(values["message"], "from-secret", "{values}");
    assert_eq!(values["extra"], "kept", "{values}");
    assert_eq!(values["replicaCount"], 3, "{values}");
    daemon.stop();
}

#[tokio::test]
async fn drift_on_a_release_object_is_corrected_and_only_reported_in_warn_mode() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams};

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-drift").await;
    let release = Release::new(&ns.name);
    release.configure("drift_detection = { mode = \"enabled\" }\n");
    let mut daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release.wait_history("the release installed", |h| deployed(h) == Some(1));
    let deployments = kube::Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let replicas = || async {
        deployments
            .get("web")
            .await
            .ok()
            .and_then(|d| d.spec)
            .and_then(|s| s.replicas)
    };
    let labels = deployments
        .get("web")
        .await
        .expect("the release's Deployment")
        .metadata
        .labels
        .unwrap_or_default();
    assert_eq!(
        labels.get("kedge.dev/name").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        labels.get("kedge.dev/kind").map(String::as_str),
        Some("HelmRelease")
    );
    release
        .setup
        .wait_until("the release Ready (drift watch started)", BOUND, || {
            release.status_line().contains("True")
        });

    let scale = |count: i32| serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": count}});
    let by_hand = PatchParams::apply("someone").force();
    deployments
        .patch("web", &by_hand, &Patch::Apply(scale(5)))
        .await
        .expect("scale by hand");
    crate::support::eventually(BOUND, "replicas back to the chart's 1", || async {
        replicas().await == Some(1)
    })
    .await;
    assert_eq!(
        deployed(&release.history()),
        Some(1),
        "corrected without a Helm upgrade"
    );
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(events.contains("DriftCorrected"), "{events}");

    // warn: reported, not corrected.
    release.configure("drift_detection = { mode = \"warn\" }\n");
    release.setup.wait_until("the reload applied", BOUND, || {
        release.setup.log_text().contains("Helm releases: ~web")
    });
    release
        .setup
        .wait_until("the release Ready again", BOUND, || {
            release.status_line().contains("True")
        });
    deployments
        .patch("web", &by_hand, &Patch::Apply(scale(4)))
        .await
        .expect("scale by hand again");
    release
        .setup
        .wait_until("DriftDetected reported", BOUND, || {
            stdout(&release.setup.cli(&["events", "helm_release/web"])).contains("DriftDetected")
        });
    assert_eq!(replicas().await, Some(4), "warn leaves the change in place");
    daemon.stop();
}
