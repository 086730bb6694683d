//! Whether an object is ready, by kstatus rules: pure functions over the
//! object as the API server returns it.
//!
//! # Design
//! The rules follow kstatus (the library Flux's health checks use), read
//! for behaviour: an object whose controller has not seen its latest
//! generation is in progress; then per kind (Deployment, StatefulSet,
//! DaemonSet rollout, Job, CRD, PVC); then the generic `Stalled`,
//! `Reconciling` and `Ready` conditions; an object with none of these is
//! Current.

use serde_json::Value;

/// An object's readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Reconciled and ready.
    Current,
    /// Not yet: the message says what is awaited.
    InProgress(String),
    /// Will not become ready without a change: the message says why.
    Failed(String),
}

use Status::{Current, Failed, InProgress};

/// The readiness of `object` (a full object: apiVersion, kind, metadata,
/// spec, status).
pub fn evaluate(object: &Value) -> Status {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return InProgress("being deleted".into());
    }
    if let Some(pending) = generation_not_observed(object) {
        return pending;
    }
    let group = object["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .map_or("", |(g, _)| g);
    match (group, object["kind"].as_str().unwrap_or("")) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => statefulset(object),
        ("apps", "DaemonSet") => daemonset(object),
        ("batch", "Job") => job(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        ("", "PersistentVolumeClaim") => pvc(object),
        _ => generic(object),
    }
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

/// (status, reason, message) of the condition of type `kind`.
fn condition<'a>(object: &'a Value, kind: &str) -> Option<(&'a str, &'a str, &'a str)> {
    let conditions = object.pointer("/status/conditions")?.as_array()?;
    let found = conditions.iter().find(|c| c["type"] == kind)?;
    let text = |f: &str| found[f].as_str().unwrap_or("");
    Some((text("status"), text("reason"), text("message")))
}

fn is_true(object: &Value, kind: &str) -> bool {
    matches!(condition(object, kind), Some(("True", _, _)))
}

fn generation_not_observed(object: &Value) -> Option<Status> {
    let generation = int(object, "/metadata/generation")?;
    let observed = int(object, "/status/observedGeneration")?;
    (observed < generation).then(|| {
        InProgress(format!(
            "observedGeneration {observed} < generation {generation}"
        ))
    })
}

/// Whether the workload controller has reported at all: a rollout kind
/// with no `status.observedGeneration` has not been seen yet.
fn unobserved_workload(object: &Value) -> Option<Status> {
    let seen = int(object, "/status/observedGeneration").is_some();
    (!seen).then(|| InProgress("not yet observed by its controller".into()))
}

fn awaiting(what: &str, have: i64, want: i64) -> Option<Status> {
    (have < want).then(|| InProgress(format!("{what}: {have}/{want}")))
}

fn deployment(d: &Value) -> Status {
    if let Some(pending) = unobserved_workload(d) {
        return pending;
    }
    if let Some(("True" | "False", "ProgressDeadlineExceeded", message)) =
        condition(d, "Progressing")
    {
        return Failed(format!("progress deadline exceeded: {message}"));
    }
    let want = int(d, "/spec/replicas").unwrap_or(1);
    let replicas = int(d, "/status/replicas").unwrap_or(0);
    let updated = int(d, "/status/updatedReplicas").unwrap_or(0);
    let available = int(d, "/status/availableReplicas").unwrap_or(0);
    let ready = int(d, "/status/readyReplicas").unwrap_or(0);
    if replicas > updated {
        return InProgress(format!("pending termination: {}", replicas - updated));
    }
    let checks = [
        awaiting("updated replicas", updated, want),
        awaiting("available replicas", available, want),
        awaiting("ready replicas", ready, want),
    ];
    if let Some(pending) = checks.into_iter().flatten().next() {
        return pending;
    }
    if !matches!(
        condition(d, "Progressing"),
        Some(("True", "NewReplicaSetAvailable", _))
    ) {
        return InProgress("new ReplicaSet not available yet".into());
    }
    if !is_true(d, "Available") {
        return InProgress("Deployment not Available".into());
    }
    Current
}

fn statefulset(s: &Value) -> Status {
    if let Some(pending) = unobserved_workload(s) {
        return pending;
    }
    let want = int(s, "/spec/replicas").unwrap_or(1);
    let ready = int(s, "/status/readyReplicas").unwrap_or(0);
    let current = int(s, "/status/currentReplicas").unwrap_or(0);
    let updated = int(s, "/status/updatedReplicas").unwrap_or(0);
    let rolling = s
        .pointer("/spec/updateStrategy/type")
        .and_then(Value::as_str)
        != Some("OnDelete");
    if let Some(pending) = awaiting("ready replicas", ready, want) {
        return pending;
    }
    if rolling {
        let current_rev = s.pointer("/status/currentRevision");
        let update_rev = s.pointer("/status/updateRevision");
        if let Some(pending) = awaiting("updated replicas", updated.max(current), want) {
            return pending;
        }
        if current_rev != update_rev {
            return InProgress("rolling update in progress".into());
        }
    }
    Current
}

fn daemonset(d: &Value) -> Status {
    if let Some(pending) = unobserved_workload(d) {
        return pending;
    }
    let want = int(d, "/status/desiredNumberScheduled").unwrap_or(0);
    let checks = [
        ("scheduled", "/status/currentNumberScheduled"),
        ("updated", "/status/updatedNumberScheduled"),
        ("available", "/status/numberAvailable"),
        ("ready", "/status/numberReady"),
    ];
    for (what, pointer) in checks {
        if let Some(pending) = awaiting(what, int(d, pointer).unwrap_or(0), want) {
            return pending;
        }
    }
    Current
}

fn job(j: &Value) -> Status {
    if let Some(("True", reason, message)) = condition(j, "Failed") {
        return Failed(format!("job failed ({reason}): {message}"));
    }
    if is_true(j, "Complete") {
        return Current;
    }
    let succeeded = int(j, "/status/succeeded").unwrap_or(0);
    let want = int(j, "/spec/completions").unwrap_or(1);
    InProgress(format!("job not complete: {succeeded}/{want} succeeded"))
}

fn crd(c: &Value) -> Status {
    if let Some(("False", reason, message)) = condition(c, "NamesAccepted") {
        return Failed(format!("names not accepted ({reason}): {message}"));
    }
    if is_true(c, "Established") {
        Current
    } else {
        InProgress("not Established".into())
    }
}

fn pvc(p: &Value) -> Status {
    match p.pointer("/status/phase").and_then(Value::as_str) {
        Some("Bound") => Current,
        Some(phase) => InProgress(format!("phase {phase}, not Bound")),
        None => InProgress("not Bound".into()),
    }
}

fn generic(object: &Value) -> Status {
    if let Some(("True", reason, message)) = condition(object, "Stalled") {
        return Failed(format!("Stalled ({reason}): {message}"));
    }
    if let Some(("True", reason, message)) = condition(object, "Reconciling") {
        return InProgress(format!("Reconciling ({reason}): {message}"));
    }
    match condition(object, "Ready") {
        Some(("True", _, _)) | None => Current,
        Some((status, reason, message)) => {
            InProgress(format!("Ready={status} ({reason}): {message}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(spec_replicas: i64, status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "generation": 2},
               "spec": {"replicas": spec_replicas}, "status": status})
    }

    fn rolled_out(replicas: i64) -> Value {
        json!({"observedGeneration": 2, "replicas": replicas, "updatedReplicas": replicas,
               "availableReplicas": replicas, "readyReplicas": replicas,
               "conditions": [
                   {"type": "Available", "status": "True"},
                   {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]})
    }

    #[test]
    fn an_object_without_status_is_current() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert_eq!(evaluate(&cm), Current);
    }

    #[test]
    fn a_rolled_out_deployment_is_current_with_zero_or_more_replicas() {
        assert_eq!(evaluate(&deployment(0, rolled_out(0))), Current);
        assert_eq!(evaluate(&deployment(3, rolled_out(3))), Current);
    }

    #[test]
    fn a_deployment_waiting_for_available_replicas_is_in_progress() {
        let mut status = rolled_out(2);
        status["availableReplicas"] = json!(1);
        assert_eq!(
            evaluate(&deployment(2, status)),
            InProgress("available replicas: 1/2".into())
        );
    }

    #[test]
    fn a_deployment_not_yet_observed_is_in_progress() {
        let mut status = rolled_out(1);
        status["observedGeneration"] = json!(1);
        assert_eq!(
            evaluate(&deployment(1, status)),
            InProgress("observedGeneration 1 < generation 2".into())
        );
        assert!(matches!(evaluate(&deployment(1, json!({}))), InProgress(_)));
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_failed() {
        let status = json!({"observedGeneration": 2, "conditions": [
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet web-1 has timed out progressing."}]});
        assert!(matches!(evaluate(&deployment(1, status)), Failed(m) if m.contains("timed out")));
    }

    #[test]
    fn a_statefulset_mid_rollout_is_in_progress_until_revisions_match() {
        let sts = |update_rev: &str| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "db", "generation": 1}, "spec": {"replicas": 2},
                   "status": {"observedGeneration": 1, "readyReplicas": 2, "currentReplicas": 2,
                              "updatedReplicas": 2, "currentRevision": "db-1",
                              "updateRevision": update_rev}})
        };
        assert_eq!(evaluate(&sts("db-1")), Current);
        assert!(matches!(evaluate(&sts("db-2")), InProgress(_)));
    }

    #[test]
    fn a_daemonset_is_current_once_every_scheduled_pod_is_ready() {
        let ds = |ready: i64| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                   "metadata": {"name": "agent", "generation": 1},
                   "status": {"observedGeneration": 1, "desiredNumberScheduled": 1,
                              "currentNumberScheduled": 1, "updatedNumberScheduled": 1,
                              "numberAvailable": ready, "numberReady": ready}})
        };
        assert_eq!(evaluate(&ds(1)), Current);
        assert_eq!(evaluate(&ds(0)), InProgress("available: 0/1".into()));
    }

    #[test]
    fn a_job_is_current_when_complete_and_failed_when_failed() {
        let job = |conditions: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                   "status": {"conditions": conditions}})
        };
        assert_eq!(
            evaluate(&job(json!([{"type": "Complete", "status": "True"}]))),
            Current
        );
        assert!(matches!(
            evaluate(&job(json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]))),
            Failed(m) if m.contains("BackoffLimitExceeded")
        ));
        assert!(matches!(evaluate(&job(json!([]))), InProgress(_)));
    }

    #[test]
    fn a_crd_is_current_once_established() {
        let crd = |established: &str| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "widgets.example.com"},
                   "status": {"conditions": [{"type": "Established", "status": established}]}})
        };
        assert_eq!(evaluate(&crd("True")), Current);
        assert_eq!(
            evaluate(&crd("False")),
            InProgress("not Established".into())
        );
    }

    #[test]
    fn a_pvc_is_current_once_bound() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "p"},
                   "status": {"phase": phase}})
        };
        assert_eq!(evaluate(&pvc("Bound")), Current);
        assert!(matches!(evaluate(&pvc("Pending")), InProgress(m) if m.contains("Pending")));
    }

    #[test]
    fn generic_conditions_ready_reconciling_and_stalled_are_read() {
        let custom = |conditions: Value| {
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
                   "status": {"conditions": conditions}})
        };
        assert_eq!(
            evaluate(&custom(json!([{"type": "Ready", "status": "True"}]))),
            Current
        );
        assert!(matches!(
            evaluate(&custom(json!([{"type": "Ready", "status": "False", "reason": "Waiting"}]))),
            InProgress(m) if m.contains("Waiting")
        ));
        assert!(matches!(
            evaluate(&custom(json!([{"type": "Stalled", "status": "True"}]))),
            Failed(_)
        ));
    }

    #[test]
    fn an_object_being_deleted_is_in_progress() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "deletionTimestamp": "2026-01-01T00:00:00Z"}});
        assert!(matches!(evaluate(&cm), InProgress(_)));
    }
}
