//! `apply::Manager::drift_watch` against the test control plane: an edit by
//! another field manager, and a deletion, are seen and undone by re-applying.

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge::apply::{inventory, Action, ApplyOptions, DriftCause, DriftEvent, Manager, Owner};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::apply_ssa::configmap;
use crate::support::{cluster, TestNamespace};

async fn next_event(
    drift: &mut (impl futures::Stream<Item = DriftEvent> + Unpin),
    what: &str,
) -> DriftEvent {
    tokio::time::timeout(Duration::from_secs(10), drift.next())
        .await
        .unwrap_or_else(|_| panic!("no drift event for {what} within 10 s"))
        .expect("the drift stream never ends")
}

async fn value_of(configmaps: &Api<ConfigMap>, name: &str) -> Option<String> {
    let cm = configmaps.get_opt(name).await.expect("get configmap")?;
    cm.data.unwrap_or_default().get("key").cloned()
}

#[tokio::test]
async fn an_edit_by_another_manager_is_seen_and_undone_by_reapplying() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "drift-edit").await;
    let manager = Manager::new(client.clone());
    // Watches are cluster-wide by owner label: an owner of its own per test.
    let owner = Owner::new(&ns.name, "Kustomization");
    let set = || {
        vec![
            configmap(&ns.name, "watched", "ours"),
            configmap(&ns.name, "quiet", "x"),
        ]
    };
    let applied = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("apply");
    let mut drift = Box::pin(
        manager
            .drift_watch(&inventory::from_changeset(&applied), &owner)
            .await
            .expect("watch"),
    );

    // What `kubectl edit` sends: a patch under the field manager "kubectl-edit".
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let edited_at = Instant::now();
    configmaps
        .patch(
            "watched",
            &edit,
            &Patch::Merge(json!({ "data": { "key": "edited" } })),
        )
        .await
        .expect("edit");

    let event = next_event(&mut drift, "the edit").await;
    assert_eq!(
        event.object.to_string(),
        format!("ConfigMap/{}/watched", ns.name)
    );
    assert_eq!(
        event.cause,
        DriftCause::ChangedBy(vec!["kubectl-edit".into()])
    );

    let changes = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("re-apply");
    assert_eq!(changes.action_of(&event.object), Some(Action::Configured));
    assert_eq!(
        value_of(&configmaps, "watched").await.as_deref(),
        Some("ours")
    );
    eprintln!("edit reverted {:?} after it was made", edited_at.elapsed());

    // Our own re-apply is not drift: the next event is a later edit of
    // the other object, not one about our apply of "watched".
    configmaps
        .patch(
            "quiet",
            &edit,
            &Patch::Merge(json!({ "data": { "key": "edited" } })),
        )
        .await
        .expect("edit quiet");
    let next = next_event(&mut drift, "the edit of quiet").await;
    assert_eq!(
        next.object.to_string(),
        format!("ConfigMap/{}/quiet", ns.name),
        "our own apply was reported as drift: {next:?}"
    );
}

#[tokio::test]
async fn a_deleted_object_is_seen_and_recreated_by_reapplying() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "drift-delete").await;
    let manager = Manager::new(client.clone());
    // Watches are cluster-wide by owner label: an owner of its own per test.
    let owner = Owner::new(&ns.name, "Kustomization");
    let set = || vec![configmap(&ns.name, "doomed", "ours")];
    let applied = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("apply");
    let mut drift = Box::pin(
        manager
            .drift_watch(&inventory::from_changeset(&applied), &owner)
            .await
            .expect("watch"),
    );
    // Polled once, so the watch starts; a delete before it is running is
    // reported too (the object is missing from the list).
    let none = futures::FutureExt::now_or_never(drift.next());
    assert!(none.is_none(), "no drift before the delete: {none:?}");

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .delete("doomed", &DeleteParams::default())
        .await
        .expect("delete");
    let event = next_event(&mut drift, "the deletion").await;
    assert_eq!(
        event.object.to_string(),
        format!("ConfigMap/{}/doomed", ns.name)
    );
    assert_eq!(event.cause, DriftCause::Deleted);

    let changes = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("re-apply");
    assert_eq!(changes.action_of(&event.object), Some(Action::Created));
    assert_eq!(
        value_of(&configmaps, "doomed").await.as_deref(),
        Some("ours")
    );
}

#[tokio::test]
async fn an_object_deleted_before_the_watch_started_is_reported() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "drift-early").await;
    let manager = Manager::new(client.clone());
    let owner = Owner::new(&ns.name, "Kustomization");
    let applied = manager
        .apply(
            vec![configmap(&ns.name, "early", "ours")],
            &owner,
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .delete("early", &DeleteParams::default())
        .await
        .expect("delete");

    let mut drift = Box::pin(
        manager
            .drift_watch(&inventory::from_changeset(&applied), &owner)
            .await
            .expect("watch"),
    );
    let event = next_event(&mut drift, "the earlier deletion").await;
    assert_eq!(
        event.object.to_string(),
        format!("ConfigMap/{}/early", ns.name)
    );
    assert_eq!(event.cause, DriftCause::Deleted);
}

#[tokio::test]
async fn a_field_kedge_never_set_is_not_drift_before_or_after_the_watch_starts() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "drift-extra").await;
    let manager = Manager::new(client.clone());
    let owner = Owner::new(&ns.name, "Kustomization");
    let set = || vec![configmap(&ns.name, "web-config", "ours")];
    let applied = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("apply");
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let add_key = |key: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            let patch = PatchParams {
                field_manager: Some("kubectl-patch".into()),
                ..PatchParams::default()
            };
            configmaps
                .patch(
                    "web-config",
                    &patch,
                    &Patch::Merge(json!({ "data": { key: "x" } })),
                )
                .await
                .expect("patch");
        }
    };
    // One key added before the watch starts (a restart sees it at first
    // sight), one while it runs: neither was set by kedge.
    add_key("before").await;
    let inventory = inventory::from_changeset(&applied);
    let mut drift = Box::pin(
        manager
            .drift_watch(&inventory, &owner)
            .await
            .expect("watch"),
    );
    add_key("after").await;
    let quiet = tokio::time::timeout(Duration::from_secs(2), drift.next()).await;
    assert!(
        quiet.is_err(),
        "keys kedge never set reported as drift: {quiet:?}"
    );

    // A field kedge set is still drift.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    configmaps
        .patch(
            "web-config",
            &edit,
            &Patch::Merge(json!({ "data": { "key": "edited" } })),
        )
        .await
        .expect("edit");
    let event = next_event(&mut drift, "the edit of a field kedge set").await;
    assert_eq!(
        event.cause,
        DriftCause::ChangedBy(vec!["kubectl-edit".into()])
    );
}

/// Owners that share a kind share one watch of it; each hears only of its
/// own objects, and the watch stops with its last follower.
#[tokio::test]
async fn owners_sharing_a_kind_share_one_watch_and_hear_only_of_their_objects() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "drift-shared").await;
    let manager = Manager::new(client.clone());
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut streams = Vec::new();
    for index in 0..3 {
        let owner = Owner::new(&format!("{}-{index}", ns.name), "Kustomization");
        let applied = manager
            .apply(
                vec![configmap(&ns.name, &format!("cm-{index}"), "ours")],
                &owner,
                &ApplyOptions::default(),
            )
            .await
            .expect("apply");
        let drift = manager
            .drift_watch(&inventory::from_changeset(&applied), &owner)
            .await
            .expect("watch");
        streams.push(Box::pin(drift));
    }
    assert_eq!(manager.drift_watches(), 1, "one watch for the one kind");

    configmaps
        .delete("cm-1", &DeleteParams::default())
        .await
        .expect("delete cm-1");
    let event = next_event(&mut streams[1], "the deletion of cm-1").await;
    assert_eq!(event.object.name, "cm-1");
    assert_eq!(event.cause, DriftCause::Deleted);
    for other in [0, 2] {
        let heard = tokio::time::timeout(Duration::from_millis(500), streams[other].next()).await;
        assert!(
            heard.is_err(),
            "owner {other} heard of another's object: {heard:?}"
        );
    }

    streams.clear();
    assert_eq!(
        manager.drift_watches(),
        0,
        "the watch stops with its last follower"
    );
}
