//! A fleet repository written for Flux (`tests/fixtures/flux-fleet/`),
//! applied by kedge from a table that repeats its Flux Kustomization
//! field by field: every Kustomization feature a Flux user relies on at
//! once, with Flux's semantics — decryption before substitution, the
//! build fields on top of the build, drift ignore rules and per-object
//! policies.

use std::path::Path;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::json;

use crate::kustomization_drift::{edit_key, until_value};
use crate::kustomization_flux_fields::subjects_of;
use crate::kustomization_run::{value_of, Setup};
use crate::support::sops::{encrypt, AgeKey};
use crate::support::{cluster, eventually, repo_root, TestNamespace};

const NAME: &str = "flux-fleet";

/// The fixture's files, relative to its root, with the Secret encrypted
/// for `key` as the fleet's owners commit it.
fn fleet_files(root: &Path, key: &AgeKey) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read fixture dir") {
            let path = entry.expect("fixture entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let relative = path
                .strip_prefix(root)
                .expect("under the fixture")
                .display()
                .to_string();
            let mut text = std::fs::read_to_string(&path).expect("fixture text");
            if relative == "apps/base/db-secret.yaml" {
                let encrypted = encrypt(
                    key,
                    "db-secret.yaml",
                    text.as_bytes(),
                    &["--encrypted-regex", "^(data|stringData)$"],
                );
                text = String::from_utf8(encrypted).expect("sops writes text");
            }
            files.push((relative, text));
        }
    }
    files
}

#[tokio::test]
async fn a_repository_written_for_flux_converges_under_its_flux_kustomization_fields() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "flux-fleet").await;
    let keydir = tempfile::tempdir().expect("tempdir");
    let key = AgeKey::fixture(keydir.path(), "fleet");
    let fixture = repo_root().join("tests/fixtures/flux-fleet");
    let table = std::fs::read_to_string(fixture.join("clusters/edge/kedge.toml"))
        .expect("the kedge table")
        .replace("NAMESPACE", &ns.name)
        .replace("AGE_KEY_FILE", &key.file.display().to_string());
    let setup = Setup::new(&table);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let vars: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "cluster-vars" },
        "data": { "region": "eu-west", "replicas": "2" }
    }))
    .expect("cluster-vars");
    configmaps
        .create(&PostParams::default(), &vars)
        .await
        .expect("create cluster-vars");
    let files = fleet_files(&fixture, &key);
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let first = setup.repo.commit(&refs, "the fleet, as written for Flux");
    let _daemon = setup.start();
    setup.wait_applied(NAME, &first);

    // Build fields on top of the build, then substitution from the
    // ConfigMap, the table and defaults; `$$` escapes.
    let settings = configmaps.get("edge-settings").await.expect("settings");
    let data = settings.data.clone().unwrap_or_default();
    let get = |key: &str| data.get(key).map(String::as_str);
    assert_eq!(get("patched"), Some("yes"), "patch with a target");
    assert_eq!(
        get("region"),
        Some("eu-west"),
        "substitute_from a ConfigMap"
    );
    assert_eq!(get("greeting"), Some("hello"), "${{var:-default}}");
    assert_eq!(
        get("literal"),
        Some("${not_substituted}"),
        "$${{var}} escape"
    );
    let labels = settings.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("team").map(String::as_str), Some("edge"));
    configmaps
        .get("edge-monitoring")
        .await
        .expect("the component's object, prefixed");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    let web = deployments.get("edge-web").await.expect("deployment");
    let web_labels = web.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        web_labels.get("cluster").map(String::as_str),
        Some("edge-1")
    );
    let spec = web.spec.clone().expect("spec");
    assert_eq!(
        spec.replicas,
        Some(2),
        "an unquoted variable keeps its type"
    );
    let image = spec.template.spec.expect("pod spec").containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.27"));

    // Decrypted first, then substituted, as Flux does.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns.name);
    let db = secrets.get("edge-db").await.expect("secret");
    let password = db
        .data
        .unwrap_or_default()
        .remove("password")
        .expect("password");
    assert_eq!(password.0, b"hunter2-edge-1");

    let subjects = subjects_of(&client, &ns.name, "edge-web").await;
    let in_target = |name: &str| (name.to_string(), Some(ns.name.clone()));
    assert_eq!(
        subjects,
        vec![in_target("edge-web"), in_target("default")],
        "subjects follow the prefixed ServiceAccount into the target namespace"
    );

    // Drift: replicas belong to an autoscaler by the ignore rule; an edit
    // of a declared value is reverted; an IfNotPresent object is left.
    let scale = PatchParams {
        field_manager: Some("autoscaler".into()),
        ..PatchParams::default()
    };
    deployments
        .patch(
            "edge-web",
            &scale,
            &Patch::Merge(json!({ "spec": { "replicas": 5 } })),
        )
        .await
        .expect("scale by hand");
    edit_key(&configmaps, "edge-once", "kubectl-edit", "edited").await;
    edit_key(&configmaps, "edge-settings", "kubectl-edit", "edited").await;
    until_value(
        &client,
        &ns.name,
        "edge-settings",
        "declared",
        "drift reverted",
    )
    .await;
    let replicas = deployments
        .get("edge-web")
        .await
        .expect("deployment")
        .spec
        .and_then(|s| s.replicas);
    assert_eq!(
        replicas,
        Some(5),
        "ignored path kept the autoscaler's value"
    );
    assert_eq!(
        value_of(&client, &ns.name, "edge-once").await.as_deref(),
        Some("edited"),
        "ssa: IfNotPresent"
    );

    // Prune: objects gone from Git are deleted, unless prune: disabled.
    std::fs::remove_file(setup.repo.work.join("apps/base/kept.yaml")).expect("rm kept");
    std::fs::remove_file(setup.repo.work.join("apps/base/once.yaml")).expect("rm once");
    let kustomization = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n  - settings.yaml\n  - rbac.yaml\n  - db-secret.yaml\n";
    let second = setup.repo.commit(
        &[("apps/base/kustomization.yaml", kustomization)],
        "drop two ConfigMaps",
    );
    setup.wait_applied(NAME, &second);
    eventually(
        std::time::Duration::from_secs(60),
        "edge-once pruned",
        || async { value_of(&client, &ns.name, "edge-once").await.is_none() },
    )
    .await;
    assert_eq!(
        value_of(&client, &ns.name, "edge-kept").await.as_deref(),
        Some("declared"),
        "prune: disabled"
    );
}
