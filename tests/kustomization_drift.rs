//! Drift under `kedge run`: what counts as drift, the `drift` modes and
//! ignore rules of a kustomization.
//!
//! Every test names its kustomizations after itself (the drift watch
//! selects by owner label cluster-wide).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::kustomization_run::{configmap, kustomization, value_of, Setup};
use crate::support::{cluster, eventually, TestNamespace};

const BOUND: Duration = Duration::from_secs(60);

/// A kustomization with a 1h interval: only the drift watch explains a run.
fn watched(name: &str, path: &str, namespace: &str, extra: &str) -> String {
    kustomization(name, path, namespace, extra).replace("interval = \"1m\"", "interval = \"1h\"")
}

/// The daemon's "drift on …" log lines.
fn drift_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("DriftDetected"))
        .map(str::to_string)
        .collect()
}

/// Sets `data.key` of ConfigMap `name` as field manager `manager`.
pub(crate) async fn edit_key(configmaps: &Api<ConfigMap>, name: &str, manager: &str, value: &str) {
    let params = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    configmaps
        .patch(
            name,
            &params,
            &Patch::Merge(json!({ "data": { "key": value } })),
        )
        .await
        .unwrap_or_else(|err| panic!("edit {name}: {err}"));
}

/// Waits until ConfigMap `name`'s `data.key` is `want`.
pub(crate) async fn until_value(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    want: &str,
    what: &str,
) {
    eventually(BOUND, what, || async move {
        value_of(client, namespace, name).await.as_deref() == Some(want)
    })
    .await;
}

/// Issue 20: `kubectl patch cm web-config -p '{"data":{"extra":"x"}}'` on a
/// ConfigMap kedge manages was logged as drift and re-applied.
#[tokio::test]
async fn a_key_kedge_never_set_added_by_kubectl_patch_is_not_drift() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kd-extra").await;
    let name = "kd-extra";
    let setup = Setup::new(&watched(name, "./apps", &ns.name, ""));
    let commit = setup.repo.commit(
        &[
            ("apps/web-config.yaml", &configmap("web-config", "declared")),
            ("apps/barrier.yaml", &configmap("barrier", "declared")),
        ],
        "two configmaps",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &commit);

    // What `kubectl patch` sends: a strategic merge patch as "kubectl-patch".
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .patch(
            "web-config",
            &PatchParams {
                field_manager: Some("kubectl-patch".into()),
                ..PatchParams::default()
            },
            &Patch::Strategic(json!({ "data": { "extra": "x" } })),
        )
        .await
        .expect("kubectl patch");
    // A real edit after it, on the same kind's watch: once it is reverted,
    // the patch before it has been judged.
    edit_key(&configmaps, "barrier", "kubectl-edit", "edited").await;
    until_value(
        &client,
        &ns.name,
        "barrier",
        "declared",
        "the barrier's drift reverted",
    )
    .await;

    let log = setup.log_text();
    let lines = drift_lines(&log);
    assert!(
        lines.iter().any(|l| l.contains("barrier")),
        "the edit of barrier was drift: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("web-config")),
        "a key kedge never set was reported as drift: {lines:?}"
    );
    let web = configmaps.get("web-config").await.expect("get web-config");
    assert_eq!(
        web.data
            .unwrap_or_default()
            .get("extra")
            .map(String::as_str),
        Some("x"),
        "the other manager's key stays"
    );
}

/// The last status message of kustomization `name`.
fn message_of(setup: &Setup, name: &str) -> String {
    setup.status(name).map(|s| s.message).unwrap_or_default()
}

/// `detect` reports and leaves the edit; `off` neither watches nor
/// reverts; `correct` (the control, on the same kind's watch) reverts.
#[tokio::test]
async fn drift_modes_detect_reports_off_ignores_correct_reverts() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kd-modes").await;
    let tables = [
        watched(
            "kd-modes-detect",
            "./detect",
            &ns.name,
            "drift = { mode = \"detect\" }",
        ),
        watched(
            "kd-modes-off",
            "./off",
            &ns.name,
            "drift = { mode = \"off\" }",
        ),
        watched("kd-modes-control", "./control", &ns.name, ""),
    ]
    .concat();
    let setup = Setup::new(&tables);
    let commit = setup.repo.commit(
        &[
            ("detect/d.yaml", &configmap("d", "declared")),
            ("detect/d2.yaml", &configmap("d2", "declared")),
            ("off/o.yaml", &configmap("o", "declared")),
            ("control/c.yaml", &configmap("c", "declared")),
        ],
        "three kustomizations",
    );
    let _daemon = setup.start();
    for name in ["kd-modes-detect", "kd-modes-off", "kd-modes-control"] {
        setup.wait_applied(name, &commit);
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    for object in ["d", "o", "c"] {
        edit_key(&configmaps, object, "kubectl-edit", "edited").await;
    }
    until_value(
        &client,
        &ns.name,
        "c",
        "declared",
        "the control's drift reverted",
    )
    .await;
    let detected = setup.wait_for("kd-modes-detect", "drift reported", |s| {
        s.message.contains("drift not corrected")
    });
    assert!(detected.ready, "{detected:?}");
    assert!(
        detected
            .message
            .contains(&format!("ConfigMap/{}/d", ns.name))
            && !detected
                .message
                .contains(&format!("ConfigMap/{}/d2", ns.name)),
        "names the drifted object only: {}",
        detected.message
    );
    for object in ["d", "o"] {
        assert_eq!(
            value_of(&client, &ns.name, object).await.as_deref(),
            Some("edited"),
            "{object} reverted; log:\n{}",
            setup.log_text()
        );
    }
    let lines = drift_lines(&setup.log_text());
    assert!(
        !lines.iter().any(|l| l.contains("kd-modes-off")),
        "mode off watched: {lines:?}"
    );
    let diff = setup.cli(&["diff", "kd-modes-detect"]);
    let shown = String::from_utf8_lossy(&diff.stdout);
    assert!(
        shown.contains("edited"),
        "kedge diff shows the drift: {shown}"
    );

    // A change of the declared state is applied in mode detect.
    let second = setup.repo.commit(
        &[("detect/d2.yaml", &configmap("d2", "changed"))],
        "change d2",
    );
    setup.wait_applied("kd-modes-detect", &second);
    until_value(&client, &ns.name, "d2", "changed", "d2 applied").await;
    assert!(!message_of(&setup, "kd-modes-detect").is_empty());
}

/// An ignore rule leaves a field to another manager: its edits are not
/// drift and applies keep its value (an autoscaler owning
/// `/spec/replicas`, here a ConfigMap key); the object's other fields
/// are still reverted.
#[tokio::test]
async fn an_ignored_field_is_left_to_its_other_manager() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kd-ignore").await;
    let name = "kd-ignore";
    let ignore = r#"drift = { ignore = [{ paths = ["/data/key"], target = { kind = "ConfigMap", name = "scaled" } }] }"#;
    let setup = Setup::new(&watched(name, "./apps", &ns.name, ignore));
    let scaled = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: scaled\ndata:\n  key: declared\n  other: declared\n";
    let commit = setup.repo.commit(
        &[
            ("apps/scaled.yaml", scaled),
            ("apps/barrier.yaml", &configmap("barrier", "declared")),
        ],
        "two configmaps",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &commit);

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    edit_key(&configmaps, "scaled", "autoscaler", "7").await;
    edit_key(&configmaps, "barrier", "kubectl-edit", "edited").await;
    until_value(
        &client,
        &ns.name,
        "barrier",
        "declared",
        "the barrier's drift reverted",
    )
    .await;
    let lines = drift_lines(&setup.log_text());
    assert!(
        !lines.iter().any(|l| l.contains("scaled")),
        "an ignored field reported as drift: {lines:?}"
    );
    assert_eq!(
        value_of(&client, &ns.name, "scaled").await.as_deref(),
        Some("7"),
        "the apply that reverted the barrier kept the ignored value"
    );

    // Another field of the same object is still kedge's.
    let params = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    configmaps
        .patch(
            "scaled",
            &params,
            &Patch::Merge(json!({ "data": { "other": "edited" } })),
        )
        .await
        .expect("edit other");
    eventually(BOUND, "the other field reverted", || {
        let configmaps = configmaps.clone();
        async move {
            let cm = configmaps.get("scaled").await.expect("get scaled");
            let data = cm.data.unwrap_or_default();
            data.get("other").map(String::as_str) == Some("declared")
                && data.get("key").map(String::as_str) == Some("7")
        }
    })
    .await;
}

/// The case ignore rules exist for: an autoscaler scales a Deployment
/// through its `scale` subresource, which takes `/spec/replicas` from
/// kedge; with the rule, that is not drift and applies keep its count.
#[tokio::test]
async fn an_autoscaler_owns_replicas_without_a_fight() {
    use k8s_openapi::api::apps::v1::Deployment;

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kd-scale").await;
    let name = "kd-scale";
    let ignore = r#"drift = { ignore = [{ paths = ["/spec/replicas"], target = { kind = "Deployment", name = "web" } }] }"#;
    let setup = Setup::new(&watched(name, "./apps", &ns.name, ignore));
    let deployment = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n";
    let commit = setup.repo.commit(
        &[
            ("apps/web.yaml", deployment),
            ("apps/barrier.yaml", &configmap("barrier", "declared")),
        ],
        "a deployment",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &commit);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let autoscaler = PatchParams {
        field_manager: Some("horizontal-pod-autoscaler".into()),
        ..PatchParams::default()
    };
    deployments
        .patch_scale(
            "web",
            &autoscaler,
            &Patch::Merge(json!({ "spec": { "replicas": 3 } })),
        )
        .await
        .expect("scale web");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    edit_key(&configmaps, "barrier", "kubectl-edit", "edited").await;
    until_value(
        &client,
        &ns.name,
        "barrier",
        "declared",
        "the barrier's drift reverted",
    )
    .await;

    let lines = drift_lines(&setup.log_text());
    assert!(
        !lines.iter().any(|l| l.contains("Deployment/")),
        "scaling was drift: {lines:?}"
    );
    let web = deployments.get("web").await.expect("get web");
    assert_eq!(
        web.spec.and_then(|s| s.replicas),
        Some(3),
        "the apply that reverted the barrier kept the autoscaler's count"
    );
}
