//! `apply::Manager::wait` (kstatus rules) against the test control plane,
//! whose simulated node runs every Pod: a Deployment becomes available
//! unless its Pods carry `testcluster.kedge.dev/pod: unready`.

use std::time::{Duration, Instant};

use kedge::apply::{inventory, ApplyOptions, HealthError, Manager};
use serde_json::{json, Value};

use crate::apply_ssa::{configmap, owner};
use crate::support::{cluster, TestNamespace};

fn deployment(ns: &str, name: &str, replicas: i64) -> Value {
    deployment_with_pods(ns, name, replicas, "")
}

/// A Deployment whose Pods the simulated node treats as `fate` says
/// (`""`: they run and are ready).
fn deployment_with_pods(ns: &str, name: &str, replicas: i64, fate: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": {
                    "labels": { "app": name },
                    "annotations": { "testcluster.kedge.dev/pod": fate }
                },
                "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] }
            }
        }
    })
}

#[tokio::test]
async fn a_configmap_an_idle_deployment_and_one_whose_pods_run_become_current() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "health-ok").await;
    let manager = Manager::new(client);
    let applied = manager
        .apply(
            vec![
                configmap(&ns.name, "settings", "x"),
                deployment(&ns.name, "idle", 0),
                deployment(&ns.name, "web", 2),
            ],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    manager
        .wait(
            &inventory::from_changeset(&applied),
            Duration::from_secs(60),
        )
        .await
        .expect("current: the simulated node runs both replicas of web");
}

#[tokio::test]
async fn a_deployment_that_cannot_roll_out_times_out_naming_it_and_why() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "health-timeout").await;
    let manager = Manager::new(client);
    let applied = manager
        .apply(
            vec![
                configmap(&ns.name, "settings", "x"),
                deployment_with_pods(&ns.name, "web", 1, "unready"),
            ],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let started = Instant::now();
    let err = manager
        .wait(&inventory::from_changeset(&applied), Duration::from_secs(3))
        .await
        .expect_err("never available");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "bounded by the timeout"
    );
    let HealthError::TimedOut { pending, .. } = &err else {
        panic!("expected a timeout, got {err}");
    };
    assert_eq!(pending.len(), 1, "only the Deployment is pending: {err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("Deployment/{}/web", ns.name)),
        "{message}"
    );
    assert!(
        message.contains("replicas: 0/1"),
        "says what is awaited: {message}"
    );
}

#[tokio::test]
async fn a_missing_object_is_pending_until_the_timeout() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "health-missing").await;
    let manager = Manager::new(client);
    let applied = manager
        .apply(
            vec![configmap(&ns.name, "there", "x")],
            &owner(&ns.name),
            &ApplyOptions::default(),
        )
        .await
        .expect("apply");
    let mut refs = inventory::from_changeset(&applied);
    refs[0].name = "absent".into();
    let err = manager
        .wait(&refs, Duration::from_millis(600))
        .await
        .expect_err("absent object");
    assert!(err.to_string().contains("absent (not found)"), "{err}");
}
