//! Proof that the test control plane is a real Kubernetes API: what kedge
//! relies on (server-side apply, conflicts, namespace finalization, garbage
//! collection) behaves as on a real cluster.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::support::{cluster, eventually, field_managers, TestNamespace};

fn configmap(name: &str, value: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name },
        "data": { "key": value }
    })
}

fn deployment(name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name },
        "spec": {
            "replicas": 1,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] }
            }
        }
    })
}

async fn apply<K>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    body: &serde_json::Value,
) -> kube::Result<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch(name, &PatchParams::apply(manager), &Patch::Apply(body))
        .await
}

async fn client() -> Client {
    cluster().client().await
}

#[tokio::test]
async fn server_side_apply_creates_and_reads_back_a_configmap_and_a_deployment() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "proof-ssa").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);

    apply(
        &configmaps,
        "kedge",
        "settings",
        &configmap("settings", "one"),
    )
    .await
    .expect("apply configmap");
    apply(&deployments, "kedge", "web", &deployment("web"))
        .await
        .expect("apply deployment");

    let cm = configmaps.get("settings").await.expect("get configmap");
    assert_eq!(
        cm.data.unwrap_or_default().get("key").map(String::as_str),
        Some("one")
    );
    let managers = field_managers(&cm.metadata);
    assert_eq!(managers, vec!["kedge".to_string()]);

    let deploy = deployments.get("web").await.expect("get deployment");
    let image = deploy
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].image.clone());
    assert_eq!(image, Some(Some("nginx:1.27".to_string())));
}

#[tokio::test]
async fn a_second_managers_conflicting_apply_is_reported_as_a_conflict() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "proof-conflict").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    apply(
        &configmaps,
        "kedge",
        "owned",
        &configmap("owned", "kedge-value"),
    )
    .await
    .expect("first apply");

    let err = apply(
        &configmaps,
        "intruder",
        "owned",
        &configmap("owned", "other"),
    )
    .await
    .expect_err("conflict");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 409, "{status:?}");
            assert!(
                status.message.contains("kedge"),
                "conflict names the owner: {}",
                status.message
            );
        }
        other => panic!("expected a 409 conflict, got {other:?}"),
    }

    // Forcing, as kedge does, takes the field over.
    let forced = configmaps
        .patch(
            "owned",
            &PatchParams::apply("kedge").force(),
            &Patch::Apply(&configmap("owned", "again")),
        )
        .await
        .expect("forced apply");
    assert_eq!(
        forced
            .data
            .unwrap_or_default()
            .get("key")
            .map(String::as_str),
        Some("again")
    );
}

#[tokio::test]
async fn deleting_a_namespace_with_a_deployment_completes_within_bound() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "proof-nsdel").await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns.name);
    apply(&deployments, "kedge", "web", &deployment("web"))
        .await
        .expect("apply deployment");
    eventually(Duration::from_secs(20), "replicaset created", || {
        let rs: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns.name);
        async move {
            rs.list(&ListParams::default())
                .await
                .map(|l| !l.items.is_empty())
                .unwrap_or(false)
        }
    })
    .await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .delete(&ns.name, &DeleteParams::default())
        .await
        .expect("delete namespace");
    let took = eventually(Duration::from_secs(30), "namespace deleted", || {
        let namespaces = namespaces.clone();
        let name = ns.name.clone();
        async move { matches!(namespaces.get_opt(&name).await, Ok(None)) }
    })
    .await;
    eprintln!("namespace deletion took {:.1}s", took.as_secs_f64());
}

#[tokio::test]
async fn deleting_an_owner_cascades_to_its_dependents() {
    let client = client().await;
    let ns = TestNamespace::new(&client, "proof-gc").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let owner = apply(&configmaps, "kedge", "owner", &configmap("owner", "x"))
        .await
        .expect("owner");
    let uid = owner.metadata.uid.expect("owner uid");
    let mut dependent = configmap("dependent", "y");
    dependent["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid
    }]);
    apply(&configmaps, "kedge", "dependent", &dependent)
        .await
        .expect("dependent");

    configmaps
        .delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    let took = eventually(
        Duration::from_secs(20),
        "dependent garbage-collected",
        || {
            let configmaps = configmaps.clone();
            async move { matches!(configmaps.get_opt("dependent").await, Ok(None)) }
        },
    )
    .await;
    eprintln!("garbage collection took {:.1}s", took.as_secs_f64());
}
