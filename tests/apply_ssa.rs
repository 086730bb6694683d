//! `apply::Manager::apply` and `dry_run_diff` against the test control plane.

use k8s_openapi::api::core::v1::ConfigMap;
use kedge::apply::{Action, ApplyError, ApplyOptions, DiffKind, Manager, ObjRef, Owner};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::Api;
use serde_json::{json, Value};

use crate::support::{cluster, field_managers, TestNamespace};

pub fn configmap(ns: &str, name: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": { "name": name, "namespace": ns },
        "data": { "key": value }
    })
}

/// An owner of the test's own, named after its namespace: drift watches
/// select by owner label cluster-wide, so tests never share an owner.
pub fn owner(namespace: &str) -> Owner {
    Owner::new(namespace, "Kustomization")
}

fn cm_ref(ns: &str, name: &str) -> ObjRef {
    ObjRef {
        group: String::new(),
        version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(ns.into()),
        name: name.into(),
    }
}

async fn value_of(configmaps: &Api<ConfigMap>, name: &str) -> Option<String> {
    let cm = configmaps.get_opt(name).await.expect("get configmap")?;
    cm.data.unwrap_or_default().get("key").cloned()
}

#[tokio::test]
async fn apply_creates_then_reports_unchanged_then_configured_and_labels_every_object() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-ssa").await;
    let manager = Manager::new(client.clone());
    let options = ApplyOptions::default();
    let set = |value: &str| {
        vec![
            configmap(&ns.name, "a", "one"),
            configmap(&ns.name, "b", value),
        ]
    };

    let first = manager
        .apply(set("two"), &owner(&ns.name), &options)
        .await
        .expect("first apply");
    assert_eq!(first.count(Action::Created), 2, "{first:?}");

    let second = manager
        .apply(set("two"), &owner(&ns.name), &options)
        .await
        .expect("second apply");
    assert_eq!(second.count(Action::Unchanged), 2, "{second:?}");

    let third = manager
        .apply(set("three"), &owner(&ns.name), &options)
        .await
        .expect("third apply");
    assert_eq!(
        third.action_of(&cm_ref(&ns.name, "a")),
        Some(Action::Unchanged)
    );
    assert_eq!(
        third.action_of(&cm_ref(&ns.name, "b")),
        Some(Action::Configured)
    );

    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    let b = configmaps.get("b").await.expect("get b");
    let labels = b.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("kedge.dev/name").map(String::as_str),
        Some(ns.name.as_str())
    );
    assert_eq!(
        labels.get("kedge.dev/kind").map(String::as_str),
        Some("Kustomization")
    );
    assert_eq!(
        b.data.unwrap_or_default().get("key").map(String::as_str),
        Some("three")
    );
    let managers = field_managers(&b.metadata);
    assert_eq!(managers, ["kedge"]);
}

#[tokio::test]
async fn one_invalid_object_fails_the_whole_set_naming_object_and_field() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-invalid").await;
    let manager = Manager::new(client.clone());
    let mut bad = configmap(&ns.name, "bad", "x");
    bad["data"] = json!({ "not a valid key": "x" });
    let set = vec![
        configmap(&ns.name, "good-1", "x"),
        bad,
        configmap(&ns.name, "good-2", "x"),
    ];

    let err = manager
        .apply(set, &owner(&ns.name), &ApplyOptions::default())
        .await
        .expect_err("invalid set");
    let message = err.to_string();
    assert!(matches!(err, ApplyError::DryRunFailed { .. }), "{message}");
    assert!(
        message.contains(&format!("ConfigMap/{}/bad", ns.name)),
        "{message}"
    );
    assert!(
        message.contains("data[not a valid key]"),
        "names the field: {message}"
    );

    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    for name in ["good-1", "good-2", "bad"] {
        assert_eq!(
            value_of(&configmaps, name).await,
            None,
            "{name} must not exist"
        );
    }
}

#[tokio::test]
async fn an_unknown_kind_is_refused_before_anything_is_applied() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-unknown").await;
    let manager = Manager::new(client.clone());
    let gadget = json!({
        "apiVersion": "example.com/v1", "kind": "Gadget",
        "metadata": { "name": "g", "namespace": ns.name }
    });
    let err = manager
        .apply(
            vec![configmap(&ns.name, "a", "x"), gadget],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("unknown kind");
    assert_eq!(
        err.to_string(),
        format!(
            "Gadget/{}/g: the cluster serves no kind Gadget in apiVersion example.com/v1",
            ns.name
        )
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(value_of(&configmaps, "a").await, None);
}

#[tokio::test]
async fn a_field_owned_by_another_manager_is_taken_over() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-conflict").await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .patch(
            "shared",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(&configmap(&ns.name, "shared", "theirs")),
        )
        .await
        .expect("other manager's apply");

    let manager = Manager::new(client.clone());
    let changes = manager
        .apply(
            vec![configmap(&ns.name, "shared", "ours")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("forced apply");
    assert_eq!(changes.entries[0].action, Action::Configured);
    assert_eq!(
        value_of(&configmaps, "shared").await.as_deref(),
        Some("ours")
    );
}

#[tokio::test]
async fn a_crd_and_its_custom_resource_apply_in_one_set() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-crd").await;
    let manager = Manager::new(client.clone());
    // A group of its own per test run, so runs never share a CRD.
    let group = format!("{}.kedge.test", ns.name);
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": format!("widgets.{group}") },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "size": { "type": "integer" } } }
                } } }
            }]
        }
    });
    let widget = json!({
        "apiVersion": format!("{group}/v1"), "kind": "Widget",
        "metadata": { "name": "w", "namespace": ns.name },
        "spec": { "size": 3 }
    });
    // The CR comes first in the input: order puts the CRD ahead of it.
    let changes = manager
        .apply(
            vec![widget, crd],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply CRD and CR");
    let kinds: Vec<_> = changes
        .entries
        .iter()
        .map(|c| (c.object.kind.as_str(), c.action))
        .collect();
    assert_eq!(
        kinds,
        [
            ("CustomResourceDefinition", Action::Created),
            ("Widget", Action::Created)
        ]
    );

    let resource = ApiResource {
        group: group.clone(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let widgets: Api<DynamicObject> = Api::namespaced_with(client, &ns.name, &resource);
    let w = widgets.get("w").await.expect("widget exists");
    assert_eq!(w.data["spec"]["size"], 3);
}

#[tokio::test]
async fn a_namespace_and_its_objects_apply_in_one_set() {
    let client = cluster().client().await;
    let scratch = TestNamespace::new(&client, "apply-nsset").await;
    let manager = Manager::new(client.clone());
    let new_ns = format!("{}-child", scratch.name);
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": new_ns } });
    let changes = manager
        .apply(
            vec![configmap(&new_ns, "inside", "x"), namespace],
            &owner(&scratch.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply namespace and configmap");
    assert_eq!(changes.entries[0].object.kind, "Namespace");
    assert_eq!(changes.count(Action::Created), 2);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &new_ns);
    assert_eq!(value_of(&configmaps, "inside").await.as_deref(), Some("x"));
    let _cleanup = TestNamespace { name: new_ns };
}

#[tokio::test]
async fn an_immutable_field_change_fails_without_force_and_recreates_with_it() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-immutable").await;
    let manager = Manager::new(client.clone());
    let frozen = |value: &str| {
        let mut cm = configmap(&ns.name, "frozen", value);
        cm["immutable"] = json!(true);
        cm
    };
    manager
        .apply(
            vec![frozen("one")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("create immutable configmap");

    let err = manager
        .apply(
            vec![frozen("two")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("immutable change without force");
    assert!(err.to_string().contains("immutable"), "{err}");

    let force = ApplyOptions {
        force_recreate: true,
        ..ApplyOptions::default()
    };
    let changes = manager
        .apply(vec![frozen("two")], &owner(&ns.name), &force)
        .await
        .expect("recreate");
    assert_eq!(changes.entries[0].action, Action::Configured);
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(
        value_of(&configmaps, "frozen").await.as_deref(),
        Some("two")
    );
}

#[tokio::test]
async fn dry_run_diff_tells_create_update_and_unchanged_without_changing_anything() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-diff").await;
    let manager = Manager::new(client.clone());
    manager
        .apply(
            vec![
                configmap(&ns.name, "same", "x"),
                configmap(&ns.name, "changed", "old"),
            ],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let diffs = manager
        .dry_run_diff(
            vec![
                configmap(&ns.name, "same", "x"),
                configmap(&ns.name, "changed", "new"),
                configmap(&ns.name, "fresh", "y"),
            ],
            &owner(&ns.name),
            &kedge::apply::DriftIgnore::default(),
        )
        .await
        .expect("diff");
    let kinds: Vec<_> = diffs
        .iter()
        .map(|d| (d.object.name.as_str(), d.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("same", DiffKind::Unchanged),
            ("changed", DiffKind::Update),
            ("fresh", DiffKind::Create)
        ]
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(
        value_of(&configmaps, "changed").await.as_deref(),
        Some("old")
    );
    assert_eq!(value_of(&configmaps, "fresh").await, None);
}

#[tokio::test]
async fn an_invalid_webhook_applied_last_still_stops_the_objects_before_it() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-webhook").await;
    let manager = Manager::new(client.clone());
    let webhook = json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": { "name": ns.name },
        "webhooks": [{
            "name": "not-qualified",
            "clientConfig": { "url": "https://127.0.0.1:1/validate" },
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None"
        }]
    });
    let err = manager
        .apply(
            vec![webhook, configmap(&ns.name, "a", "x")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("invalid webhook");
    let message = err.to_string();
    assert!(
        message.contains(&format!("ValidatingWebhookConfiguration/{}", ns.name)),
        "{message}"
    );
    assert!(
        message.contains("webhooks[0].name"),
        "names the field: {message}"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(value_of(&configmaps, "a").await, None);
}

#[tokio::test]
async fn an_edit_after_an_unchanged_reapply_is_still_reverted() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-memo").await;
    let manager = Manager::new(client.clone());
    let set = || vec![configmap(&ns.name, "held", "ours")];
    manager
        .apply(set(), &owner(&ns.name), &ApplyOptions::default())
        .await
        .expect("apply");
    // Answered from what this manager last applied, without an apply request.
    let unchanged = manager
        .apply(set(), &owner(&ns.name), &ApplyOptions::default())
        .await
        .expect("re-apply");
    assert_eq!(unchanged.entries[0].action, Action::Unchanged);

    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    configmaps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "key": "theirs" } })),
        )
        .await
        .expect("edit");
    let changes = manager
        .apply(set(), &owner(&ns.name), &ApplyOptions::default())
        .await
        .expect("revert");
    assert_eq!(changes.entries[0].action, Action::Configured);
    assert_eq!(value_of(&configmaps, "held").await.as_deref(), Some("ours"));
}

#[tokio::test]
async fn a_namespaced_object_without_namespace_or_with_a_missing_one_is_refused() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-nons").await;
    let manager = Manager::new(client.clone());
    let mut homeless = configmap(&ns.name, "homeless", "x");
    homeless["metadata"]
        .as_object_mut()
        .expect("metadata literal")
        .remove("namespace");
    let err = manager
        .apply(
            vec![configmap(&ns.name, "a", "x"), homeless],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("no namespace");
    assert_eq!(
        err.to_string(),
        "ConfigMap/homeless: kind is namespaced but metadata.namespace is not set"
    );

    let lost = configmap(&format!("{}-absent", ns.name), "lost", "x");
    let err = manager
        .apply(
            vec![configmap(&ns.name, "a", "x"), lost],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect_err("namespace not found");
    let message = err.to_string();
    assert!(
        message.contains("ConfigMap/") && message.contains("/lost"),
        "{message}"
    );
    assert!(message.contains("not found"), "{message}");
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(value_of(&configmaps, "a").await, None);
}

#[tokio::test]
async fn a_crd_that_cannot_be_established_stops_the_apply_naming_it() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "apply-crdfail").await;
    let manager = Manager::new(client.clone());
    let group = format!("{}.kedge.test", ns.name);
    let crd = |plural: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": { "name": format!("{plural}.{group}") },
            "spec": {
                "group": group,
                "scope": "Namespaced",
                "names": { "plural": plural, "kind": "Thing" },
                "versions": [{ "name": "v1", "served": true, "storage": true,
                    "schema": { "openAPIV3Schema": { "type": "object" } } }]
            }
        })
    };
    manager
        .apply(
            vec![crd("things")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("first CRD");
    // A second CRD of the same group and kind: its names are not accepted.
    let options = ApplyOptions {
        crd_timeout: std::time::Duration::from_secs(10),
        ..ApplyOptions::default()
    };
    let err = manager
        .apply(
            vec![crd("others"), configmap(&ns.name, "after", "x")],
            &owner(&ns.name),
            &options,
        )
        .await
        .expect_err("kind conflict");
    let message = err.to_string();
    assert!(
        matches!(err, ApplyError::CrdNotEstablished { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("CustomResourceDefinition/others.{group}")),
        "{message}"
    );
    assert!(message.contains("names not accepted"), "{message}");
    assert_eq!(
        err.applied().map(|a| a.entries.len()),
        Some(1),
        "the CRD was applied"
    );
    let configmaps: Api<ConfigMap> = Api::namespaced(client, &ns.name);
    assert_eq!(value_of(&configmaps, "after").await, None);
}
