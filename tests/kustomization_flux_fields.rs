//! Flux's Kustomization fields under `kedge run`: `target_namespace`
//! (RoleBinding subjects included), `name_prefix`, `name_suffix`,
//! `patches` with targets, `images`, `components` and `common_metadata`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::Api;

use crate::kustomization_run::{configmap, kustomization, Setup};
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
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &ns.name);
    let binding = bindings.get("web").await.expect("role binding");
    let subjects: Vec<(String, Option<String>)> = binding
        .subjects
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.name, s.namespace))
        .collect();
    assert_eq!(
        subjects,
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
