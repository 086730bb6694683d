//! The guarantees of the kustomization reconciler (module docs of
//! `reconcile::kustomization`, `reconcile::runner` and `apply::prune`),
//! each under `kedge run` against the test control plane, several with a
//! fault injected by the API server (`support::admission`).

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;

use crate::kustomization_run::{configmap, kustomization, value_of, Setup};
use crate::support::admission::{Denial, DENIED};
use crate::support::{cluster, eventually, TestNamespace};

fn revision(commit: &str) -> String {
    format!("main@sha1:{commit}")
}

fn has_object(inventory: &[String], name: &str) -> bool {
    inventory.iter().any(|id| id.ends_with(&format!("_{name}")))
}

/// Generous: a loaded 2-core machine and a debug build.
const BOUND: Duration = Duration::from_secs(60);

async fn until_value(client: &Client, ns: &str, name: &str, want: Option<&str>, what: &str) {
    eventually(BOUND, what, || async move {
        value_of(client, ns, name).await.as_deref() == want
    })
    .await;
}

#[tokio::test]
async fn a_build_failure_or_a_missing_path_applies_and_prunes_nothing_and_keeps_the_last_revision()
{
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-build").await;
    let name = "g-build";
    let setup = Setup::new(&kustomization(name, "./apps", &ns.name, ""));
    let first = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "one")),
            ("apps/b.yaml", &configmap("b", "one")),
        ],
        "a and b",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &first);
    let inventory = setup.inventory(name);
    assert_eq!(inventory.len(), 2, "{inventory:?}");

    let unchanged = |what: &'static str| {
        let (client, ns, setup, inventory) = (&client, &ns.name, &setup, &inventory);
        async move {
            assert_eq!(
                value_of(client, ns, "a").await.as_deref(),
                Some("one"),
                "{what}: nothing applied"
            );
            assert_eq!(
                value_of(client, ns, "b").await.as_deref(),
                Some("one"),
                "{what}: nothing pruned"
            );
            assert_eq!(&setup.inventory(name), inventory, "{what}: inventory kept");
        }
    };

    // a changes, b leaves, and the kustomization.yaml names a missing file.
    std::fs::remove_file(setup.repo.work.join("apps/b.yaml")).expect("rm b");
    let broken = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "two")),
            (
                "apps/kustomization.yaml",
                "resources:\n- a.yaml\n- missing.yaml\n",
            ),
        ],
        "a build that fails",
    );
    let failed = setup.wait_for(name, "the build failure", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&revision(&broken))
    });
    assert_eq!(failed.reason, "BuildFailed", "{}", failed.message);
    assert!(
        failed.message.contains("missing.yaml"),
        "{}",
        failed.message
    );
    assert_eq!(failed.last_applied_revision, Some(revision(&first)));
    unchanged("build failure").await;

    // The path itself disappears.
    std::fs::remove_dir_all(setup.repo.work.join("apps")).expect("rm apps");
    let gone = setup
        .repo
        .commit(&[("other/c.yaml", &configmap("c", "x"))], "no apps");
    let failed = setup.wait_for(name, "the missing path", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&revision(&gone))
    });
    assert_eq!(failed.reason, "InvalidPath", "{}", failed.message);
    assert!(failed.message.contains("./apps"), "{}", failed.message);
    assert_eq!(failed.last_applied_revision, Some(revision(&first)));
    unchanged("missing path").await;
}

#[tokio::test]
async fn a_prune_denied_by_the_api_server_keeps_the_object_in_the_inventory_and_is_retried() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-prune-fail").await;
    let name = "g-prune-fail";
    let setup = Setup::new(&kustomization(name, "./apps", &ns.name, ""));
    let first = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "1")),
            ("apps/held.yaml", &configmap("held", "1")),
            ("apps/gone.yaml", &configmap("gone", "1")),
        ],
        "a, held and gone",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &first);
    let denial = Denial::deletes(&client, &ns.name, "held").await;

    for file in ["apps/held.yaml", "apps/gone.yaml"] {
        std::fs::remove_file(setup.repo.work.join(file)).expect("rm");
    }
    let second = setup.repo.commit(&[], "drop held and gone");
    let failed = setup.wait_for(name, "the failed prune", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&revision(&second))
    });
    assert_eq!(failed.reason, "PruneFailed", "{}", failed.message);
    assert!(
        failed.message.contains("held") && failed.message.contains(DENIED),
        "names the object and why: {}",
        failed.message
    );
    assert_eq!(
        value_of(&client, &ns.name, "gone").await,
        None,
        "gone pruned"
    );
    assert!(value_of(&client, &ns.name, "held").await.is_some());
    let inventory = setup.inventory(name);
    assert!(
        has_object(&inventory, "held"),
        "survivor kept: {inventory:?}"
    );
    assert!(!has_object(&inventory, "gone"), "{inventory:?}");

    // Once the API server allows it, a retry (retry_interval 1s) deletes it.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let (configmaps, dry_run) = (&configmaps, &dry_run);
    denial
        .lift(&client, || async move {
            configmaps.delete("held-probe", dry_run).await.is_ok()
        })
        .await;
    until_value(&client, &ns.name, "held", None, "held pruned by a retry").await;
    let done = setup.wait_for(name, "ready after the retry", |s| s.ready);
    assert_eq!(done.last_applied_revision, Some(revision(&second)));
    assert!(!has_object(&setup.inventory(name), "held"));
}

#[tokio::test]
async fn objects_applied_before_an_apply_failed_are_recorded_and_pruned_later() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-partial").await;
    let name = "g-partial";
    let setup = Setup::new(&kustomization(name, "./apps", &ns.name, ""));
    let first = setup
        .repo
        .commit(&[("apps/x.yaml", &configmap("x", "1"))], "x");
    let _daemon = setup.start();
    setup.wait_applied(name, &first);
    let _denial = Denial::creates_but_not_dry_runs(&client, &ns.name, "denied").await;

    // The dry-run of the set passes, the apply of denied-b fails: a is
    // created all the same.
    let second = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "1")),
            ("apps/b.yaml", &configmap("denied-b", "1")),
        ],
        "a and denied-b",
    );
    let failed = setup.wait_for(name, "the partial apply", |s| {
        !s.ready && s.last_attempted_revision.as_deref() == Some(&revision(&second))
    });
    assert_eq!(failed.reason, "ReconciliationFailed", "{}", failed.message);
    assert!(failed.message.contains("denied-b"), "{}", failed.message);
    assert_eq!(value_of(&client, &ns.name, "a").await.as_deref(), Some("1"));
    let inventory = setup.inventory(name);
    assert!(
        has_object(&inventory, "a") && has_object(&inventory, "x"),
        "widened to what was applied: {inventory:?}"
    );

    // Both leave Git: a, applied by the failed run, is pruned.
    for file in ["apps/a.yaml", "apps/b.yaml"] {
        std::fs::remove_file(setup.repo.work.join(file)).expect("rm");
    }
    let third = setup.repo.commit(&[], "only x");
    setup.wait_applied(name, &third);
    assert_eq!(value_of(&client, &ns.name, "a").await, None, "a pruned");
    assert_eq!(value_of(&client, &ns.name, "x").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn with_prune_false_stale_objects_stay_while_a_pruning_sibling_deletes_its_own() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-noprune").await;
    let tables = format!(
        "{}{}",
        kustomization("g-noprune", "./keep", &ns.name, "").replace("prune = true", "prune = false"),
        kustomization("g-noprune-control", "./drop", &ns.name, ""),
    );
    let setup = Setup::new(&tables);
    let first = setup.repo.commit(
        &[
            ("keep/a.yaml", &configmap("a", "1")),
            ("keep/b.yaml", &configmap("b", "1")),
            ("drop/c.yaml", &configmap("c", "1")),
            ("drop/d.yaml", &configmap("d", "1")),
        ],
        "two sets",
    );
    let _daemon = setup.start();
    setup.wait_applied("g-noprune", &first);
    setup.wait_applied("g-noprune-control", &first);

    for file in ["keep/b.yaml", "drop/d.yaml"] {
        std::fs::remove_file(setup.repo.work.join(file)).expect("rm");
    }
    let second = setup.repo.commit(&[], "drop b and d");
    setup.wait_applied("g-noprune", &second);
    setup.wait_applied("g-noprune-control", &second);
    assert_eq!(
        value_of(&client, &ns.name, "d").await,
        None,
        "the control prunes"
    );
    assert_eq!(
        value_of(&client, &ns.name, "b").await.as_deref(),
        Some("1"),
        "prune = false leaves b alone"
    );
}

#[tokio::test]
async fn a_dependent_is_held_while_its_dependency_fails_and_released_when_it_is_ready() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-deps").await;
    let tables = format!(
        "{}{}",
        kustomization("g-deps-infra", "./infra", &ns.name, ""),
        kustomization(
            "g-deps-apps",
            "./apps",
            &ns.name,
            "depends_on = [\"g-deps-infra\"]"
        )
    );
    let setup = Setup::new(&tables);
    setup.repo.commit(
        &[
            ("infra/kustomization.yaml", "resources:\n- missing.yaml\n"),
            ("apps/app.yaml", &configmap("app", "1")),
        ],
        "a broken dependency",
    );
    let _daemon = setup.start();
    setup.wait_for("g-deps-infra", "the dependency's failure", |s| {
        s.reason == "BuildFailed"
    });
    let held = setup.wait_for("g-deps-apps", "the dependent held", |s| {
        s.reason == "DependencyNotReady"
    });
    assert!(!held.ready);
    assert!(held.message.contains("g-deps-infra"), "{}", held.message);
    assert_eq!(held.last_applied_revision, None);
    assert_eq!(value_of(&client, &ns.name, "app").await, None, "held back");

    std::fs::remove_file(setup.repo.work.join("infra/kustomization.yaml")).expect("rm");
    let fixed = setup
        .repo
        .commit(&[("infra/base.yaml", &configmap("base", "1"))], "fixed");
    let infra = setup.wait_applied("g-deps-infra", &fixed);
    let apps = setup.wait_applied("g-deps-apps", &fixed);
    assert_eq!(
        value_of(&client, &ns.name, "app").await.as_deref(),
        Some("1")
    );
    let (infra_done, apps_done) = (
        infra.last_success_at.expect("infra success time"),
        apps.last_success_at.expect("apps success time"),
    );
    assert!(
        apps_done >= infra_done,
        "apps applied after infra ({apps_done} < {infra_done})"
    );
}

fn deployment(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: 1\n{extra_spec}  selector:\n    matchLabels:\n      app: {name}\n  template:\n    metadata:\n      labels:\n        app: {name}\n      annotations:\n        testcluster.kedge.dev/pod: unready\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n"
    )
}

#[tokio::test]
async fn wait_and_health_checks_fail_the_run_and_a_failed_object_ends_the_wait_early() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-health").await;
    // The simulated node keeps these Pods unready: a Deployment never
    // becomes available. `web` waits out its 3 s timeout; `stuck` (progress deadline
    // 1 s) is Failed long before its 10 min timeout.
    let tables = format!(
        "{}{}",
        kustomization(
            "g-health-wait",
            "./wait",
            &ns.name,
            "wait = true\ntimeout = \"3s\""
        ),
        kustomization(
            "g-health-check",
            "./check",
            &ns.name,
            &format!(
                "timeout = \"10m\"\nhealth_checks = [{{ kind = \"Deployment\", name = \"stuck\", namespace = \"{}\" }}]",
                ns.name
            )
        ),
    );
    let setup = Setup::new(&tables);
    let commit = setup.repo.commit(
        &[
            ("wait/web.yaml", &deployment("web", "")),
            (
                "check/stuck.yaml",
                &deployment("stuck", "  progressDeadlineSeconds: 1\n"),
            ),
            ("check/other.yaml", &deployment("other", "")),
        ],
        "two deployments that never roll out",
    );
    let _daemon = setup.start();
    let timed_out = setup.wait_for("g-health-wait", "the wait timed out", |s| {
        s.last_attempted_revision.as_deref() == Some(&revision(&commit))
    });
    assert!(!timed_out.ready);
    assert_eq!(
        timed_out.reason, "HealthCheckFailed",
        "{}",
        timed_out.message
    );
    assert!(
        timed_out
            .message
            .contains(&format!("Deployment/{}/web", ns.name)),
        "{}",
        timed_out.message
    );

    let failed = setup.wait_for("g-health-check", "the failed health check", |s| {
        s.last_attempted_revision.as_deref() == Some(&revision(&commit))
    });
    assert!(!failed.ready);
    assert_eq!(failed.reason, "HealthCheckFailed", "{}", failed.message);
    assert!(
        failed.message.contains("stuck") && failed.message.contains("progress deadline"),
        "{}",
        failed.message
    );
    assert!(
        !failed.message.contains("other"),
        "only the listed object is checked: {}",
        failed.message
    );
    let took = Duration::from_millis(failed.last_duration_ms.unwrap_or(i64::MAX) as u64);
    assert!(
        took < Duration::from_secs(300),
        "ended by the failure, not the 10 min timeout: {took:?}"
    );
}

#[tokio::test]
async fn a_kustomization_removed_while_stopped_is_collected_at_start_and_a_failed_delete_is_retried(
) {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-removed").await;
    let stays = kustomization("g-removed-stays", "./stays", &ns.name, "");
    let gone = kustomization("g-removed-gone", "./gone", &ns.name, "");
    let setup = Setup::new(&format!("{stays}{gone}"));
    let commit = setup.repo.commit(
        &[
            ("stays/s.yaml", &configmap("s", "1")),
            ("gone/a.yaml", &configmap("gone-a", "1")),
            ("gone/b.yaml", &configmap("held-b", "1")),
        ],
        "two kustomizations",
    );
    {
        let mut daemon = setup.start();
        setup.wait_applied("g-removed-stays", &commit);
        setup.wait_applied("g-removed-gone", &commit);
        daemon.0.kill().expect("stop");
        daemon.0.wait().expect("wait");
    }

    // Removed from the config while stopped; one of its deletes is denied.
    setup.write_config(&stays);
    let denial = Denial::deletes(&client, &ns.name, "held").await;
    let mut daemon = setup.start();
    until_value(&client, &ns.name, "gone-a", None, "gone-a deleted at start").await;
    setup.wait_until_logged("could not be deleted");
    assert!(value_of(&client, &ns.name, "held-b").await.is_some());
    assert!(value_of(&client, &ns.name, "s").await.is_some());
    let survivors = setup.inventory("g-removed-gone");
    assert!(
        survivors.len() == 1 && has_object(&survivors, "held-b"),
        "only the survivor stays recorded: {survivors:?}"
    );
    assert!(
        setup.status("g-removed-gone").is_some(),
        "kept, so the next start retries"
    );
    daemon.0.kill().expect("stop");
    daemon.0.wait().expect("wait");

    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let dry_run = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    let (configmaps, dry_run) = (&configmaps, &dry_run);
    denial
        .lift(&client, || async move {
            configmaps.delete("held-probe", dry_run).await.is_ok()
        })
        .await;
    let _daemon = setup.start();
    until_value(
        &client,
        &ns.name,
        "held-b",
        None,
        "held-b deleted at the next start",
    )
    .await;
    eventually(BOUND, "g-removed-gone forgotten", || async {
        setup.status("g-removed-gone").is_none()
    })
    .await;
    assert!(setup.inventory("g-removed-gone").is_empty());
}

#[tokio::test]
async fn a_reload_that_changes_path_target_namespace_and_prune_is_applied() {
    let client = cluster().client().await;
    let first_ns = TestNamespace::new(&client, "g-reload-1").await;
    let second_ns = TestNamespace::new(&client, "g-reload-2").await;
    let name = "g-reload";
    let setup = Setup::new(&kustomization(name, "./one", &first_ns.name, ""));
    let commit = setup.repo.commit(
        &[
            ("one/a.yaml", &configmap("a", "1")),
            ("two/b.yaml", &configmap("b", "1")),
        ],
        "two directories",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &commit);
    let (one, two) = (first_ns.name.as_str(), second_ns.name.as_str());
    assert!(value_of(&client, one, "a").await.is_some());

    // path: ./one → ./two. b applied, a pruned.
    setup.write_config(&kustomization(name, "./two", one, ""));
    until_value(
        &client,
        one,
        "b",
        Some("1"),
        "b applied after the path change",
    )
    .await;
    until_value(&client, one, "a", None, "a pruned after the path change").await;

    // target_namespace: b moves.
    setup.write_config(&kustomization(name, "./two", two, ""));
    until_value(&client, two, "b", Some("1"), "b in the new namespace").await;
    until_value(&client, one, "b", None, "b pruned from the old namespace").await;

    // prune = false and back to ./one: a applied, b left alone.
    setup.write_config(
        &kustomization(name, "./one", two, "").replace("prune = true", "prune = false"),
    );
    until_value(
        &client,
        two,
        "a",
        Some("1"),
        "a applied after prune = false",
    )
    .await;
    setup.wait_for(name, "ready with prune = false", |s| s.ready);
    assert_eq!(
        value_of(&client, two, "b").await.as_deref(),
        Some("1"),
        "not pruned"
    );
}

fn crd(group: &str) -> String {
    format!(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.{group}\nspec:\n  group: {group}\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        properties:\n          spec:\n            type: object\n            properties:\n              size:\n                type: string\n"
    )
}

fn labelled(kind_header: &str, name: &str, extra: &str) -> String {
    format!("{kind_header}metadata:\n  name: {name}\n  labels:\n    tier: declared\n{extra}")
}

/// What `kubectl label --overwrite` sends, as field manager "kubectl-label".
async fn relabel<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = PatchParams {
        field_manager: Some("kubectl-label".into()),
        ..PatchParams::default()
    };
    api.patch(
        name,
        &params,
        &Patch::Merge(json!({ "metadata": { "labels": { "tier": "edited" } } })),
    )
    .await
    .unwrap_or_else(|e| panic!("relabel {name}: {e}"));
}

async fn tier<K>(api: &Api<K>, name: &str) -> Option<String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let object = api.get_opt(name).await.expect("get")?;
    object.meta().labels.as_ref()?.get("tier").cloned()
}

async fn until_tier<K>(api: &Api<K>, name: &str, want: &str, what: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    eventually(BOUND, what, || async move {
        tier(api, name).await.as_deref() == Some(want)
    })
    .await;
}

#[tokio::test]
async fn drift_on_a_new_object_a_cluster_scoped_one_and_a_custom_resource_is_reverted() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-drift").await;
    let name = "g-drift";
    let group = format!("{}.kedge.test", ns.name);
    // interval 1h: only the drift watch explains a revert.
    let setup = Setup::new(
        &kustomization(name, "./apps", &ns.name, "")
            .replace("interval = \"1m\"", "interval = \"1h\""),
    );
    let first = setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "declared")),
            ("apps/crd.yaml", &crd(&group)),
            (
                "apps/role.yaml",
                &labelled(
                    "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\n",
                    &format!("{}-reader", ns.name),
                    "rules: []\n",
                ),
            ),
            (
                "apps/widget.yaml",
                &labelled(
                    &format!("apiVersion: {group}/v1\nkind: Widget\n"),
                    "w",
                    "spec:\n  size: small\n",
                ),
            ),
        ],
        "a configmap, a cluster role, a CRD and a widget",
    );
    let _daemon = setup.start();
    setup.wait_applied(name, &first);

    let roles: Api<ClusterRole> = Api::all(client.clone());
    let role = format!("{}-reader", ns.name);
    relabel(&roles, &role).await;
    until_tier(&roles, &role, "declared", "cluster-scoped drift reverted").await;

    let widget_kind = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(&group, "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &widget_kind);
    relabel(&widgets, "w").await;
    until_tier(&widgets, "w", "declared", "custom resource drift reverted").await;

    // A new object joins the inventory: the watch follows it.
    let second = setup
        .repo
        .commit(&[("apps/b.yaml", &configmap("b", "declared"))], "add b");
    setup.wait_applied(name, &second);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .patch(
            "b",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "b" },
                "data": { "key": "edited" }
            })),
        )
        .await
        .expect("edit b");
    until_value(
        &client,
        &ns.name,
        "b",
        Some("declared"),
        "drift on b reverted",
    )
    .await;
}

#[tokio::test]
async fn drift_is_left_alone_while_suspended_and_reverted_on_resume() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "g-suspend").await;
    let long = |table: String| table.replace("interval = \"1m\"", "interval = \"1h\"");
    let tables = format!(
        "{}{}",
        long(kustomization("g-suspend", "./held", &ns.name, "")),
        long(kustomization(
            "g-suspend-control",
            "./control",
            &ns.name,
            ""
        )),
    );
    let setup = Setup::new(&tables);
    let commit = setup.repo.commit(
        &[
            ("held/h.yaml", &configmap("h", "declared")),
            ("control/c.yaml", &configmap("c", "declared")),
        ],
        "two kustomizations",
    );
    let _daemon = setup.start();
    setup.wait_applied("g-suspend", &commit);
    setup.wait_applied("g-suspend-control", &commit);

    let out = setup.cli(&["suspend", "g-suspend"]);
    assert!(out.status.success(), "{:?}", out);
    setup.wait_for("g-suspend", "suspended", |s| s.reason == "Suspended");

    // h is edited first, c second; c's revert proves the daemon saw drift
    // after h's edit, so h left as edited is the suspension's doing.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    for object in ["h", "c"] {
        configmaps
            .patch(
                object,
                &edit,
                &Patch::Merge(json!({ "data": { "key": "edited" } })),
            )
            .await
            .expect("edit");
    }
    let deadline = std::time::Instant::now() + BOUND;
    while value_of(&client, &ns.name, "c").await.as_deref() != Some("declared") {
        assert!(
            std::time::Instant::now() < deadline,
            "the control's drift not reverted within {BOUND:?}; log:\n{}",
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        value_of(&client, &ns.name, "h").await.as_deref(),
        Some("edited"),
        "no revert while suspended; log:\n{}",
        setup.log_text()
    );

    let out = setup.cli(&["resume", "g-suspend"]);
    assert!(out.status.success(), "{:?}", out);
    until_value(
        &client,
        &ns.name,
        "h",
        Some("declared"),
        "reverted on resume",
    )
    .await;
}
