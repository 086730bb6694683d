//! Flux's Kustomization fields under `kedge run`: `target_namespace`
//! (RoleBinding subjects included), `name_prefix`, `name_suffix`,
//! `patches` with targets, `images`, `components` and `common_metadata`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;

use crate::kustomization_drift::{edit_key, until_value};
use crate::kustomization_run::{configmap, kustomization, value_of, Setup};
use crate::support::{cluster, TestNamespace};

const ROLE_BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: web
subjects:
- kind: ServiceAccount
  name: web
  namespace: elsewhere
- kind: ServiceAccount
  name: default
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: web
";

const SERVICE_ACCOUNT: &str = "apiVersion: v1
kind: ServiceAccount
metadata:
  name: web
  namespace: elsewhere
";

/// The subjects of RoleBinding `name`: name and namespace.
pub(crate) async fn subjects_of(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Vec<(String, Option<String>)> {
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), namespace);
    let binding = bindings.get(name).await.expect("role binding");
    binding
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.namespace))
        .collect()
}

/// Issue 20: `target_namespace` left RoleBinding subjects in the
/// namespace the repository named. Flux sets kustomize's `namespace`, which
/// moves subjects naming a ServiceAccount of the set, and `default`.
#[tokio::test]
async fn target_namespace_moves_role_binding_subjects_as_flux_does() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kf-rb").await;
    let setup = Setup::new(&kustomization("kf-rb", "./rbac", &ns.name, ""));
    let commit = setup.repo.commit(
        &[
            ("rbac/binding.yaml", ROLE_BINDING),
            ("rbac/account.yaml", SERVICE_ACCOUNT),
        ],
        "a role binding",
    );
    let _daemon = setup.start();
    setup.wait_applied("kf-rb", &commit);
    assert_eq!(
        subjects_of(&client, &ns.name, "web").await,
        vec![
            ("web".to_string(), Some(ns.name.clone())),
            ("default".to_string(), Some(ns.name.clone())),
        ]
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.0
";

#[tokio::test]
async fn flux_build_fields_are_applied_on_top_of_the_build() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kf-fields").await;
    let extra = r#"name_prefix = "edge-"
name_suffix = "-v2"
components = ["../extras"]
images = [{ name = "nginx", new_tag = "1.27" }]
patches = [
  { patch = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  patched: \"yes\"\n", target = { kind = "ConfigMap", name = "settings" } },
  { patch = "- op: replace\n  path: /spec/replicas\n  value: 2\n", target = { kind = "Deployment" } },
]
common_metadata = { labels = { team = "edge" }, annotations = { "example.com/owner" = "ops" } }
"#;
    let setup = Setup::new(&kustomization("kf-fields", "./app", &ns.name, extra));
    let component =
        "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- extra.yaml\n";
    let commit = setup.repo.commit(
        &[
            ("app/deployment.yaml", DEPLOYMENT),
            ("app/settings.yaml", &configmap("settings", "declared")),
            ("extras/kustomization.yaml", component),
            ("extras/extra.yaml", &configmap("extra", "from-component")),
        ],
        "an app and a component",
    );
    let _daemon = setup.start();
    setup.wait_applied("kf-fields", &commit);

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let settings = configmaps
        .get("edge-settings-v2")
        .await
        .expect("settings, prefixed and suffixed");
    let data = settings.data.clone().unwrap_or_default();
    assert_eq!(data.get("patched").map(String::as_str), Some("yes"));
    let labels = settings.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("edge"));
    let annotations = settings.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("example.com/owner").map(String::as_str),
        Some("ops")
    );
    configmaps
        .get("edge-extra-v2")
        .await
        .expect("the component's object");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let web = deployments.get("edge-web-v2").await.expect("deployment");
    let spec = web.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2), "JSON 6902 patch with a kind target");
    let image = spec.template.spec.expect("pod spec").containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.27"));
}

fn annotated(name: &str, value: &str, annotations: &[(&str, &str)], extra: &str) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  annotations:\n{annotations}{extra}data:\n  key: \"{value}\"\n"
    )
}

/// Flux's per-object annotations and their `kedge.dev/` equivalents:
/// `ssa: Ignore | IfNotPresent`, `prune: disabled`, `force: enabled`,
/// `reconcile: disabled` (set on the live object, as `kubectl annotate`).
#[tokio::test]
async fn per_object_policies_behave_as_in_flux() {
    use kube::api::{Patch, PatchParams};
    use serde_json::json;

    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "kf-policy").await;
    let name = "kf-policy";
    let setup = Setup::new(
        &kustomization(name, "./apps", &ns.name, "")
            .replace("interval = \"1m\"", "interval = \"1h\""),
    );
    let files = |frozen: &str, paused: &str, once: &str| {
        vec![
            (
                "apps/ignored.yaml".to_string(),
                annotated(
                    "ignored",
                    "x",
                    &[("kustomize.toolkit.fluxcd.io/ssa", "Ignore")],
                    "",
                ),
            ),
            (
                "apps/once.yaml".to_string(),
                annotated("once", once, &[("kedge.dev/ssa", "IfNotPresent")], ""),
            ),
            (
                "apps/kept.yaml".to_string(),
                annotated(
                    "kept",
                    "x",
                    &[("kustomize.toolkit.fluxcd.io/prune", "disabled")],
                    "",
                ),
            ),
            (
                "apps/frozen.yaml".to_string(),
                annotated(
                    "frozen",
                    frozen,
                    &[("kustomize.toolkit.fluxcd.io/force", "enabled")],
                    "immutable: true\n",
                ),
            ),
            ("apps/paused.yaml".to_string(), configmap("paused", paused)),
            (
                "apps/barrier.yaml".to_string(),
                configmap("barrier", "declared"),
            ),
        ]
    };
    let commit = |files: Vec<(String, String)>, message: &str| {
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        setup.repo.commit(&refs, message)
    };
    let first = commit(files("v1", "declared", "declared"), "policies");
    let _daemon = setup.start();
    setup.wait_applied(name, &first);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    assert_eq!(
        value_of(&client, &ns.name, "ignored").await,
        None,
        "ssa: Ignore never applied"
    );
    assert_eq!(
        value_of(&client, &ns.name, "once").await.as_deref(),
        Some("declared")
    );

    // An IfNotPresent object's edit is left; reconcile: disabled set on
    // the live object stops its applies. The barrier's revert shows the
    // daemon judged both.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    edit_key(&configmaps, "once", "kubectl-edit", "edited").await;
    configmaps
        .patch(
            "paused",
            &edit,
            &Patch::Merge(json!({ "metadata": { "annotations": {
                "kustomize.toolkit.fluxcd.io/reconcile": "disabled" } } })),
        )
        .await
        .expect("annotate paused");
    edit_key(&configmaps, "barrier", "kubectl-edit", "edited").await;
    until_value(&client, &ns.name, "barrier", "declared", "barrier reverted").await;
    assert_eq!(
        value_of(&client, &ns.name, "once").await.as_deref(),
        Some("edited")
    );
    let log = setup.log_text();
    assert!(
        !log.lines()
            .any(|l| l.contains("DriftDetected") && l.contains("/once")),
        "a change of an IfNotPresent object was drift:\n{log}"
    );

    // The next revision: kept leaves Git, frozen's immutable data changes,
    // paused and once change.
    std::fs::remove_file(setup.repo.work.join("apps/kept.yaml")).expect("rm kept");
    let second_files: Vec<(String, String)> = files("v2", "changed", "changed")
        .into_iter()
        .filter(|(path, _)| !path.ends_with("kept.yaml"))
        .collect();
    let second = commit(second_files, "second revision");
    setup.wait_applied(name, &second);
    assert_eq!(
        value_of(&client, &ns.name, "kept").await.as_deref(),
        Some("x"),
        "prune: disabled kept"
    );
    assert_eq!(
        value_of(&client, &ns.name, "frozen").await.as_deref(),
        Some("v2"),
        "force: enabled re-created the immutable ConfigMap"
    );
    assert_eq!(
        value_of(&client, &ns.name, "paused").await.as_deref(),
        Some("declared"),
        "reconcile: disabled on the live object stops applies"
    );
    assert_eq!(
        value_of(&client, &ns.name, "once").await.as_deref(),
        Some("edited")
    );
}
