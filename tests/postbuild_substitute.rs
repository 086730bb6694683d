//! Post-build variable substitution under `kedge run`: variables from the
//! config, a ConfigMap, a Secret and a file on the node, in Flux's order;
//! `$${var}` escapes; objects that opt out; `strict`.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::PostParams;
use kube::Api;
use serde_json::json;

use crate::kustomization_run::{kustomization, Setup};
use crate::support::{cluster, TestNamespace};

async fn data(client: &kube::Client, namespace: &str, name: &str) -> serde_json::Value {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let cm = api.get(name).await.expect("configmap applied");
    serde_json::to_value(cm.data.unwrap_or_default()).expect("json")
}

const MANIFESTS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cluster-${cluster_name}\ndata:\n  region: ${region}\n  tier: ${tier:=standard}\n  zone: ${zone}\n  from_file: ${from_file}\n  token: ${token}\n  script: echo $${HOME} ${region,,}\n  missing: x${missing}x\n  port: \"${port:=8080}\"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: verbatim\n  annotations:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  region: ${region}\n";

#[tokio::test]
async fn variables_come_from_the_config_objects_and_files_in_flux_order() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "subst").await;
    let vars_dir = tempfile::tempdir().expect("tempdir");
    let vars_file = vars_dir.path().join("vars.env");
    std::fs::write(
        &vars_file,
        "# node variables\nfrom_file=node\nregion=from-file\n",
    )
    .expect("vars file");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "cluster-vars"},
        "data": {"region": "from-configmap", "zone": "a", "cluster_name": "from-configmap"}
    }))
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create vars");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "cluster-secrets"},
        "stringData": {"token": "t0ken"}
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
    let extra = format!(
        "substitute = {{ cluster_name = \"edge-1\" }}\n\
         substitute_from = [{{ kind = \"ConfigMap\", name = \"cluster-vars\", namespace = {ns:?} }}, \
         {{ kind = \"ConfigMap\", name = \"absent\", namespace = {ns:?}, optional = true }}, \
         {{ kind = \"Secret\", name = \"cluster-secrets\", namespace = {ns:?} }}, \
         {{ file = {file:?} }}]\n",
        ns = ns.name,
        file = vars_file.display().to_string(),
    );
    let setup = Setup::new(&kustomization("subst", "./apps", &ns.name, &extra));
    let first = setup
        .repo
        .commit(&[("apps/cm.yaml", MANIFESTS)], "substituted");
    let _daemon = setup.start();
    setup.wait_applied("subst", &first);

    let got = data(&client, &ns.name, "cluster-edge-1").await;
    assert_eq!(
        got["region"], "from-file",
        "a later entry overrides an earlier one"
    );
    assert_eq!(got["zone"], "a");
    assert_eq!(got["tier"], "standard");
    assert_eq!(got["from_file"], "node");
    assert_eq!(got["token"], "t0ken");
    assert_eq!(got["script"], "echo ${HOME} from-file");
    assert_eq!(got["missing"], "xx", "undefined is empty unless strict");
    assert_eq!(got["port"], "8080", "quoted in the manifest: a string");
    assert_eq!(
        data(&client, &ns.name, "verbatim").await["region"],
        "${region}"
    );

    // strict: the undefined variable fails the build, naming the variable and
    // the object as the repository writes it.
    setup.write_config(&kustomization(
        "subst",
        "./apps",
        &ns.name,
        &format!("{extra}strict = true\n"),
    ));
    let failed = setup.wait_for("subst", "strict refuses ${missing}", |s| {
        !s.ready && s.reason == "BuildFailed"
    });
    for part in ["ConfigMap/", "cluster-${cluster_name}", "\"missing\""] {
        assert!(
            failed.message.contains(part),
            "{part:?} in {}",
            failed.message
        );
    }
}
