//! `[helm_release]` under `kedge run`, against the test control plane and
//! its simulated node, with the chart in a Git source and the real `helm`
//! CLI reading back what kedge did: install, upgrade on changed values,
//! `helm rollback` by hand undone, a failing upgrade rolled back until
//! retries run out, removal from the config uninstalling, drift and its
//! ignore rules, post-renderers, `kedge build` and `kedge diff`, a failing
//! test hook, the chart's CRDs under each policy, a renamed release, and a
//! helper killed mid-upgrade.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::daemon_common::{stderr, stdout, Daemon, Setup};
use crate::support::helm::helm_output;
use crate::support::{built_tool, cluster, repo_root, TestNamespace};

const BOUND: Duration = Duration::from_secs(120);

pub(crate) fn helper_path() -> &'static Path {
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

/// `[agent]`: the test control plane and the helper.
fn agent_config() -> String {
    format!(
        "kubeconfig = {:?}\nhelm_helper = {:?}\nremoval_grace_period = \"1s\"\n",
        cluster().kubeconfig.display().to_string(),
        helper_path().display().to_string(),
    )
}

impl Release {
    fn new(namespace: &str) -> Release {
        let setup = Setup::new(&agent_config(), "");
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
        self.configure_named("web", extra);
    }

    /// [`Release::configure`] with Helm's release name `release_name`.
    fn configure_named(&self, release_name: &str, extra: &str) {
        let release = format!(
            "[helm_release.web]\nchart = {{ source = \"git/fleet\", path = \"charts/web\" }}\ntarget_namespace = \"{}\"\nrelease_name = \"{release_name}\"\ninterval = \"3s\"\n{extra}",
            self.namespace
        );
        self.setup
            .replace_config(&self.setup.config_text(&agent_config(), &release));
    }

    fn helm(&self, args: &[&str]) -> String {
        let kubeconfig = cluster().kubeconfig.display().to_string();
        let mut all = vec!["--kubeconfig", &kubeconfig, "-n", &self.namespace];
        all.extend_from_slice(args);
        helm_output(self.helm_home.path(), &all).0
    }

    /// `helm history web` as (revision, status, description) rows.
    fn history(&self) -> Vec<(u64, String, String)> {
        self.history_of("web")
    }

    fn history_of(&self, release_name: &str) -> Vec<(u64, String, String)> {
        let kubeconfig = cluster().kubeconfig.display().to_string();
        let out = std::process::Command::new(crate::support::helm::binary())
            .args(["--kubeconfig", &kubeconfig, "-n", &self.namespace])
            .args(["history", release_name, "-o", "json"])
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

pub(crate) fn chart_files(root: &Path) -> Vec<(String, String)> {
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

/// The replicas the release's Deployment `web` has now.
async fn replicas_of_web(
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
) -> Option<i32> {
    deployments
        .get("web")
        .await
        .ok()
        .and_then(|d| d.spec)
        .and_then(|s| s.replicas)
}

/// The labels of the release's Deployment `web`.
async fn labels_of_web(
    deployments: &kube::Api<k8s_openapi::api::apps::v1::Deployment>,
) -> std::collections::BTreeMap<String, String> {
    deployments
        .get("web")
        .await
        .expect("the release's Deployment")
        .metadata
        .labels
        .unwrap_or_default()
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
    release
        .setup
        .replace_config(&release.setup.config_text(&agent_config(), ""));
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
    let replicas = || replicas_of_web(&deployments);
    let labels = labels_of_web(&deployments).await;
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

/// A test namespace, the release configured with `extra`, and `kedge run`
/// once Helm shows revision 1 deployed.
async fn installed(prefix: &str, extra: &str) -> (TestNamespace, Release, Daemon) {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, prefix).await;
    let release = Release::new(&ns.name);
    release.configure(extra);
    let daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release.wait_history("the release installed", |h| deployed(h) == Some(1));
    (ns, release, daemon)
}

/// A server-side apply of `fields` to `kind`/`name` by another manager,
/// forcing conflicts, as someone editing by hand.
async fn edit_by_hand<K>(api: &kube::Api<K>, name: &str, fields: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let by_hand = kube::api::PatchParams::apply("someone").force();
    api.patch(name, &by_hand, &kube::api::Patch::Apply(fields))
        .await
        .unwrap_or_else(|err| panic!("editing {name} by hand: {err}"));
}

#[tokio::test]
async fn an_ignore_rule_keeps_replicas_changed_by_hand_while_other_drift_is_corrected() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;

    let rule = "{ paths = [\"/spec/replicas\"], target = { kind = \"Deployment\" } }";
    let drift = format!("drift_detection = {{ mode = \"enabled\", ignore = [{rule}] }}\n");
    let (ns, release, mut daemon) = installed("hr-ignore", &drift).await;
    let client = cluster().client().await;
    release
        .setup
        .wait_until("the release Ready (drift watch started)", BOUND, || {
            release.status_line().contains("True")
        });
    let deployments = kube::Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let configs = kube::Api::<ConfigMap>::namespaced(client.clone(), &ns.name);
    edit_by_hand(
        &deployments,
        "web",
        serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": 5}}),
    )
    .await;
    edit_by_hand(
        &configs,
        "web-config",
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"message": "by hand"}}),
    )
    .await;
    let message = || async {
        configs
            .get("web-config")
            .await
            .ok()
            .and_then(|c| c.data)
            .and_then(|d| d.get("message").cloned())
    };
    crate::support::eventually(BOUND, "the ConfigMap's drift corrected", || async {
        message().await.as_deref() == Some("hello")
    })
    .await;
    let replicas = || replicas_of_web(&deployments);
    assert_eq!(
        replicas().await,
        Some(5),
        "the ignored field keeps its value"
    );
    // The interval's runs leave it too.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(replicas().await, Some(5), "still kept after more runs");
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(events.contains("DriftCorrected"), "{events}");
    daemon.stop();
}

/// `post_renderers` with a strategic merge patch of the Deployment and an
/// image override to `tag`.
fn post_renderers(tag: &str) -> String {
    let patch = "apiVersion: apps/v1\\nkind: Deployment\\nmetadata:\\n  name: web\\n  labels:\\n    patched: by-kedge\\n";
    format!(
        "post_renderers = [{{ kustomize = {{ patches = [{{ patch = \"{patch}\", target = {{ kind = \"Deployment\" }} }}], images = [{{ name = \"registry.invalid/web\", new_tag = \"{tag}\" }}] }} }}]\n"
    )
}

#[tokio::test]
async fn post_renderers_patch_and_retag_the_release_and_changing_them_upgrades_it() {
    use k8s_openapi::api::apps::v1::Deployment;

    let (ns, release, mut daemon) = installed("hr-post", &post_renderers("2.0")).await;
    let client = cluster().client().await;
    let deployments = kube::Api::<Deployment>::namespaced(client.clone(), &ns.name);
    let image = || async {
        deployments
            .get("web")
            .await
            .ok()
            .and_then(|d| d.spec)
            .and_then(|s| s.template.spec)
            .and_then(|s| s.containers.first().and_then(|c| c.image.clone()))
    };
    assert_eq!(image().await.as_deref(), Some("registry.invalid/web:2.0"));
    let labels = labels_of_web(&deployments).await;
    assert_eq!(
        labels.get("patched").map(String::as_str),
        Some("by-kedge"),
        "{labels:?}"
    );
    assert_eq!(
        labels.get("kedge.dev/name").map(String::as_str),
        Some("web"),
        "kedge's own labels stay after the post-renderers"
    );

    // A changed post-renderer is a changed desired state: one upgrade.
    release.configure(&post_renderers("3.0"));
    release.wait_history("the upgrade for the new post-renderer", |h| {
        deployed(h) == Some(2)
    });
    assert_eq!(image().await.as_deref(), Some("registry.invalid/web:3.0"));
    daemon.stop();
}

#[tokio::test]
async fn build_and_diff_show_a_release_rendered_and_what_an_upgrade_would_change() {
    let (ns, release, mut daemon) =
        installed("hr-build", "values = { message = \"first\" }\n").await;

    // Suspended with new values: the diff shows them, nothing is upgraded.
    release.configure("suspend = true\nvalues = { message = \"second\" }\n");
    release
        .setup
        .wait_until("the release suspended", BOUND, || {
            release.status_line().contains("Suspended")
                || release.status_line().contains("suspended")
        });
    let built = release.setup.cli(&["build", "helm_release/web"]);
    let text = stdout(&built);
    assert!(built.status.success(), "{text}{}", stderr(&built));
    for expected in [
        "kind: Deployment",
        "name: web-config",
        "message: second",
        "kedge.dev/name: web",
        &format!("namespace: {}", ns.name),
        "helm.sh/hook: test",
    ] {
        assert!(text.contains(expected), "{expected:?} in:\n{text}");
    }

    let diff = release.setup.cli(&["diff", "helm_release/web"]);
    let text = stdout(&diff);
    assert_eq!(
        diff.status.code(),
        Some(1),
        "a change exits 1: {text}{}",
        stderr(&diff)
    );
    assert!(text.starts_with("helm_release/web at 1.0.0:"), "{text}");
    assert!(text.contains("web-config would change"), "{text}");
    assert!(
        text.contains("data.message: \"first\" -> \"second\""),
        "{text}"
    );
    assert_eq!(
        deployed(&release.history()),
        Some(1),
        "the diff upgraded nothing"
    );

    let unknown = release.setup.cli(&["build", "helm_release/nope"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no helm_release/nope in the config"),
        "{}",
        stderr(&unknown)
    );
    daemon.stop();
}

#[tokio::test]
async fn a_failing_test_hook_is_reported_and_remediated_as_configured() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-test").await;
    let release = Release::new(&ns.name);
    release.configure(concat!(
        "test = { enable = true }\n",
        "install = { remediation = { retries = 1 } }\n",
        "values = { testFate = \"fail\" }\n",
    ));
    let mut daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release.setup.wait_until(
        "install retries exhausted",
        Duration::from_secs(240),
        || release.status_line().contains("retries exhausted"),
    );
    let status = release.status_line();
    assert!(
        status.contains("helm test of release web"),
        "the status names the failed test: {status}"
    );
    // Each failed install (its test failed) was uninstalled, the last too.
    assert!(release.history().is_empty(), "{:?}", release.history());
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert_eq!(events.matches("InstallSucceeded").count(), 2, "{events}");
    assert_eq!(events.matches("TestFailed").count(), 2, "{events}");
    assert!(events.contains("UninstallSucceeded"), "{events}");
    daemon.stop();
}

/// A namespaced CRD of the test's own group, with a printer column when
/// `column` is set.
fn widget_crd(group: &str, column: bool) -> String {
    let columns = if column {
        "      additionalPrinterColumns:\n        - name: Size\n          type: string\n          jsonPath: .spec.size\n"
    } else {
        ""
    };
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  names:\n    kind: Widget\n    listKind: WidgetList\n    plural: widgets\n    singular: widget\n  scope: Namespaced\n  versions:\n    - name: v1\n      served: true\n      storage: true\n      schema:\n        openAPIV3Schema:\n          type: object\n          x-kubernetes-preserve-unknown-fields: true\n{columns}"
    )
}

#[tokio::test]
async fn the_chart_s_crds_are_skipped_created_or_replaced_as_each_policy_says() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hr-crds").await;
    let release = Release::new(&ns.name);
    let group = format!("{}.kedge.test", ns.name);
    let crd_name = format!("widgets.{group}");
    let plain = widget_crd(&group, false);
    release.setup.repo.commit(
        &[("charts/web/crds/widgets.yaml", plain.as_str())],
        "the chart's CRD",
    );
    let crds = kube::Api::<CustomResourceDefinition>::all(client.clone());
    let columns = || async {
        crds.get_opt(&crd_name).await.ok().flatten().map(|crd| {
            crd.spec.versions[0]
                .additional_printer_columns
                .clone()
                .unwrap_or_default()
                .len()
        })
    };

    // Skip: installed without the CRD.
    let skip = "install = { crds = \"Skip\" }\n";
    release.configure(&format!("{skip}upgrade = {{ crds = \"Skip\" }}\n"));
    let mut daemon = release.setup.start(&[]);
    release.setup.wait_ready();
    release.wait_history("the release installed", |h| deployed(h) == Some(1));
    assert_eq!(columns().await, None, "Skip: no CRD");

    // Create: the upgrade creates the missing CRD...
    let create = format!("{skip}upgrade = {{ crds = \"Create\" }}\n");
    release.configure(&format!("{create}values = {{ message = \"create\" }}\n"));
    release.wait_history("the upgrade with Create", |h| deployed(h) == Some(2));
    assert_eq!(columns().await, Some(0), "Create: the CRD created");

    // ...but does not change it once it exists.
    let with_column = widget_crd(&group, true);
    release.setup.repo.commit(
        &[("charts/web/crds/widgets.yaml", with_column.as_str())],
        "a printer column",
    );
    let fetched = release.setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(fetched.status.success(), "{}", stdout(&fetched));
    release.wait_history("the upgrade to the changed chart", |h| {
        deployed(h) == Some(3)
    });
    assert_eq!(columns().await, Some(0), "Create: an existing CRD is kept");

    // CreateReplace: the CRD is replaced by the chart's.
    release.configure(&format!(
        "{skip}upgrade = {{ crds = \"CreateReplace\" }}\nvalues = {{ message = \"replace\" }}\n"
    ));
    release.wait_history("the upgrade with CreateReplace", |h| deployed(h) == Some(4));
    assert_eq!(columns().await, Some(1), "CreateReplace: the CRD replaced");
    daemon.stop();
    let _ = crds
        .delete(&crd_name, &kube::api::DeleteParams::default())
        .await;
}

#[tokio::test]
async fn a_renamed_release_is_uninstalled_then_installed_and_its_logs_carry_both_names() {
    let (ns, release, mut daemon) = installed("hr-rename", "").await;

    release.configure_named("web-two", "");
    release.setup.wait_until("web-two installed", BOUND, || {
        deployed(&release.history_of("web-two")) == Some(1)
    });
    assert!(
        release.history().is_empty(),
        "the old release is uninstalled"
    );
    let events = stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(
        events.contains("release name, namespace or chart changed"),
        "{events}"
    );
    assert!(
        events.contains(&format!("uninstalling {}/web ", ns.name)),
        "{events}"
    );

    // The helper's own log lines: HELMRELEASE is the config's name, the
    // Helm release's name is RELEASE.
    let log = release.setup.log_text();
    let helper_lines: Vec<&str> = log.lines().filter(|l| l.contains("helm: ")).collect();
    assert!(
        helper_lines
            .iter()
            .any(|l| l.contains("helmrelease=web ") && l.contains("release=web-two")),
        "{helper_lines:#?}"
    );
    assert!(
        !helper_lines
            .iter()
            .any(|l| l.contains("helmrelease=web-two") || l.contains("helmrelease=\"web-two\"")),
        "{helper_lines:#?}"
    );
    daemon.stop();
}

/// The pids of the `kedge-helm` processes `parent` started.
fn helpers_of(parent: u32) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid …"; comm may hold spaces and parentheses.
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, comm)| comm);
        let ppid = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && comm.starts_with("kedge-helm") {
            pids.push(pid);
        }
    }
    pids
}

#[tokio::test]
async fn a_helper_killed_mid_upgrade_leaves_a_pending_release_that_is_unlocked_and_retried() {
    let (_ns, release, mut daemon) = installed("hr-kill", "timeout = \"30s\"\n").await;

    // Pods that never become ready: the upgrade waits, its helper running.
    release.configure("timeout = \"30s\"\nvalues = { podFate = \"unready\" }\n");
    release.wait_history("revision 2 pending-upgrade", |h| {
        h.iter().any(|(r, s, _)| *r == 2 && s == "pending-upgrade")
    });
    let helpers = helpers_of(daemon.0.id());
    assert!(!helpers.is_empty(), "the upgrade's helper runs");
    for pid in helpers {
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "kill -KILL {pid}");
    }

    release.wait_history("the release unlocked and the upgrade retried", |h| {
        let unlocked = h
            .iter()
            .any(|(r, s, d)| *r == 2 && s == "failed" && d.contains("unlocked"));
        // Helm describes a failed revision by its error: any revision 3 is
        // kedge's retry, the only actor here.
        let retried = h.iter().any(|(r, _, _)| *r == 3);
        unlocked && retried
    });
    let events = || stdout(&release.setup.cli(&["events", "helm_release/web"]));
    assert!(events().contains("UnlockSucceeded"), "{}", events());
    // The retry's event comes when it ends (here: failed, its Pods unready).
    release.setup.wait_until("the retry's event", BOUND, || {
        events().contains("retrying an interrupted action")
    });
    daemon.stop();
}
