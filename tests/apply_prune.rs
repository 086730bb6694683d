//! `apply::Manager::prune` and the inventory diff against the test control
//! plane: stale objects, the annotation, owners, namespaces, failed deletes
//! and the resourceVersion precondition.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kedge::apply::{inventory, ApplyOptions, Manager, ObjRef, Owner, PruneOptions, SkipReason};
use kube::api::{Patch, PatchParams};
use kube::client::{Body, ClientBuilder};
use kube::Api;
use serde_json::json;
use tower::ServiceExt;

use crate::apply_ssa::{configmap, owner};
use crate::support::{cluster, TestNamespace};

async fn exists(configmaps: &Api<ConfigMap>, name: &str) -> bool {
    configmaps
        .get_opt(name)
        .await
        .expect("get configmap")
        .is_some()
}

#[tokio::test]
async fn stale_objects_are_deleted_and_kept_ones_stay() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "prune-stale").await;
    let manager = Manager::new(client.clone());
    let options = ApplyOptions::default();
    let old = manager
        .apply(
            vec![
                configmap(&ns.name, "keep", "x"),
                configmap(&ns.name, "drop", "x"),
            ],
            &owner(&ns.name),
            &options,
        )
        .await
        .expect("first apply");
    let new = manager
        .apply(
            vec![configmap(&ns.name, "keep", "x")],
            &owner(&ns.name),
            &options,
        )
        .await
        .expect("second apply");

    let stale = inventory::diff(
        &inventory::from_changeset(&old),
        &inventory::from_changeset(&new),
    );
    assert_eq!(stale.len(), 1);
    let result = manager
        .prune(&stale, &owner(&ns.name), &PruneOptions::default())
        .await;
    assert_eq!(result.deleted, stale);
    assert!(
        result.failed.is_empty() && result.skipped.is_empty(),
        "{result:?}"
    );

    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert!(exists(&configmaps, "keep").await);
    assert!(!exists(&configmaps, "drop").await);

    // Pruning again finds nothing to delete and still reports it deleted (404).
    let again = manager
        .prune(&stale, &owner(&ns.name), &PruneOptions::default())
        .await;
    assert_eq!(again.deleted, stale);
}

#[tokio::test]
async fn the_prune_annotation_and_another_owner_keep_an_object() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "prune-skip").await;
    let manager = Manager::new(client.clone());
    let mut protected = configmap(&ns.name, "protected", "x");
    protected["metadata"]["annotations"] = json!({ "kedge.dev/prune": "disabled" });
    let applied = manager
        .apply(
            vec![protected, configmap(&ns.name, "taken", "x")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    // Another kustomization takes "taken" over.
    let infra = Owner::new(&format!("{}-infra", ns.name), "Kustomization");
    manager
        .apply(
            vec![configmap(&ns.name, "taken", "x")],
            &infra,
            &ApplyOptions::default(),
        )
        .await
        .expect("takeover");

    let stale = inventory::from_changeset(&applied);
    let result = manager
        .prune(&stale, &owner(&ns.name), &PruneOptions::default())
        .await;
    assert!(result.deleted.is_empty(), "{result:?}");
    let reasons: Vec<_> = result
        .skipped
        .iter()
        .map(|(o, r)| (o.name.as_str(), r.clone()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("protected", SkipReason::PruneDisabled),
            ("taken", SkipReason::NotOurs)
        ]
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert!(exists(&configmaps, "protected").await);
    assert!(exists(&configmaps, "taken").await);
}

#[tokio::test]
async fn namespaces_are_pruned_after_their_contents() {
    let client = cluster().client().await;
    let scratch = TestNamespace::new(&client, "prune-ns").await;
    let manager = Manager::new(client.clone());
    let child = format!("{}-child", scratch.name);
    let _cleanup = TestNamespace {
        name: child.clone(),
    };
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": child } });
    let applied = manager
        .apply(
            vec![namespace, configmap(&child, "inside", "x")],
            &owner(&scratch.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");

    let stale = inventory::from_changeset(&applied);
    assert_eq!(
        stale[0].kind, "Namespace",
        "apply order puts the Namespace first"
    );
    let result = manager
        .prune(&stale, &owner(&scratch.name), &PruneOptions::default())
        .await;
    let deleted: Vec<_> = result.deleted.iter().map(|o| o.kind.as_str()).collect();
    assert_eq!(deleted, ["ConfigMap", "Namespace"], "{result:?}");
    let namespaces: Api<Namespace> = Api::all(client);
    let ns = namespaces.get_opt(&child).await.expect("get namespace");
    assert!(
        ns.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "namespace deleted or terminating"
    );
}

#[tokio::test]
async fn a_delete_that_fails_is_returned_and_kept_in_the_inventory() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "prune-fail").await;
    let manager = Manager::new(client.clone());
    let applied = manager
        .apply(
            vec![configmap(&ns.name, "held", "x")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let stale = inventory::from_changeset(&applied);

    // A kedge that may not delete: impersonating a user without RBAC makes
    // the API server refuse (403) with a real error, not a simulated one.
    let mut config = config_of_cluster().await;
    config.auth_info.impersonate = Some("nobody".into());
    let limited = Manager::new(kube::Client::try_from(config).expect("client"));
    let result = limited
        .prune(&stale, &owner(&ns.name), &PruneOptions::default())
        .await;
    assert_eq!(result.survivors(), stale, "{result:?}");
    assert!(result.failed[0].1.contains("forbidden"), "{result:?}");
    let kept = inventory::merge(Vec::<ObjRef>::new(), &result.survivors());
    assert_eq!(kept, stale);

    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert!(exists(&configmaps, "held").await);
}

async fn config_of_cluster() -> kube::Config {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&cluster().kubeconfig).expect("kubeconfig");
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config")
}

#[tokio::test]
async fn an_object_recorded_under_a_version_no_longer_served_is_still_pruned() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "prune-version").await;
    let manager = Manager::new(client.clone());
    let applied = manager
        .apply(
            vec![configmap(&ns.name, "old", "x")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let mut stale = inventory::from_changeset(&applied);
    stale[0].version = "v1beta9".into();
    let result = manager
        .prune(&stale, &owner(&ns.name), &PruneOptions::default())
        .await;
    assert_eq!(result.deleted, stale, "{result:?}");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert!(!exists(&configmaps, "old").await);
}

/// A Service layer that runs `edit` just before a DELETE of ConfigMap
/// `name` goes to the API server: the window between the prune's GET and
/// its DELETE, made deterministic.
struct EditBeforeDelete<S> {
    inner: Arc<tokio::sync::Mutex<S>>,
    path_suffix: String,
    edit: Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>,
}

impl<S> tower::Service<http::Request<Body>> for EditBeforeDelete<S>
where
    S: tower::Service<http::Request<Body>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
    S::Response: Send,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let hook = (request.method() == http::Method::DELETE
            && request.uri().path().ends_with(&self.path_suffix))
        .then(|| self.edit.clone());
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(edit) = hook {
                edit().await;
            }
            let response = {
                let mut service = inner.lock().await;
                service.ready().await?.call(request)
            };
            response.await
        })
    }
}

#[tokio::test]
async fn an_object_changed_between_the_prunes_read_and_its_delete_survives() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "prune-race").await;
    let owner = owner(&ns.name);
    let applied = Manager::new(client.clone())
        .apply(
            vec![configmap(&ns.name, "raced", "x")],
            &owner,
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let stale = inventory::from_changeset(&applied);

    let edits = Arc::new(AtomicUsize::new(0));
    let edit = {
        let (client, namespace, edits) = (client.clone(), ns.name.clone(), edits.clone());
        Arc::new(move || -> BoxFuture<'static, ()> {
            let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
            let edits = edits.clone();
            Box::pin(async move {
                let edit = PatchParams {
                    field_manager: Some("kubectl-edit".into()),
                    ..PatchParams::default()
                };
                configmaps
                    .patch(
                        "raced",
                        &edit,
                        &Patch::Merge(json!({ "data": { "key": "changed" } })),
                    )
                    .await
                    .expect("edit between read and delete");
                edits.fetch_add(1, Ordering::SeqCst);
            })
        })
    };
    let path_suffix = format!("/namespaces/{}/configmaps/raced", ns.name);
    let racing = ClientBuilder::try_from(config_of_cluster().await)
        .expect("client builder")
        .with_layer(&tower::layer::layer_fn(|service| EditBeforeDelete {
            inner: Arc::new(tokio::sync::Mutex::new(service)),
            path_suffix: path_suffix.clone(),
            edit: edit.clone(),
        }))
        .build();
    let result = Manager::new(racing)
        .prune(&stale, &owner, &PruneOptions::default())
        .await;

    assert_eq!(
        edits.load(Ordering::SeqCst),
        1,
        "the edit ran once, before the DELETE"
    );
    assert!(result.deleted.is_empty(), "{result:?}");
    assert_eq!(result.survivors(), stale, "{result:?}");
    assert!(
        result.failed[0]
            .1
            .contains("ResourceVersion in the precondition"),
        "refused by the resourceVersion precondition: {result:?}"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    let live = configmaps.get("raced").await.expect("still there");
    assert_eq!(
        live.data.unwrap_or_default().get("key").map(String::as_str),
        Some("changed")
    );
}
