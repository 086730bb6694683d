//! Output order. Without `sortOptions`, `kubectl kustomize` uses the
//! legacy order: kinds listed first (Namespace, …, PodDisruptionBudget),
//! other kinds, kinds listed last (webhook configurations); then by group,
//! version, kind, namespace and name. `sortOptions.order: fifo` keeps the
//! build order.

use std::cmp::Ordering;
use std::collections::HashMap;

use super::kustomization::SortOptions;
use super::resource::{ResId, Resource};

const ORDER_FIRST: &[&str] = &[
    "Namespace",
    "ResourceQuota",
    "StorageClass",
    "CustomResourceDefinition",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Endpoints",
    "Service",
    "LimitRange",
    "PriorityClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "CronJob",
    "PodDisruptionBudget",
];

const ORDER_LAST: &[&str] = &[
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

pub fn sort(resources: &mut [Resource], options: Option<&SortOptions>) -> Result<(), String> {
    let (first, last): (Vec<String>, Vec<String>) = match options {
        None => (to_strings(ORDER_FIRST), to_strings(ORDER_LAST)),
        Some(o) => match o.order.as_deref() {
            Some("fifo") => {
                if o.legacy_sort_options.is_some() {
                    return Err("the field 'sortOptions.legacySortOptions' is set but the selected sort order is 'fifo', not 'legacy'".into());
                }
                return Ok(());
            }
            Some("legacy") => match &o.legacy_sort_options {
                Some(l) => (l.order_first.clone(), l.order_last.clone()),
                None => (to_strings(ORDER_FIRST), to_strings(ORDER_LAST)),
            },
            _ => return Err("the field 'sortOptions.order' must be one of [fifo, legacy]".into()),
        },
    };
    let mut rank: HashMap<String, i64> = HashMap::new();
    for (i, kind) in first.iter().enumerate() {
        rank.insert(kind.clone(), i as i64 - first.len() as i64);
    }
    for (i, kind) in last.iter().enumerate() {
        rank.insert(kind.clone(), i as i64 + 1);
    }
    resources.sort_by(|a, b| legacy_cmp(&a.id(), &b.id(), &rank));
    Ok(())
}

fn to_strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn or(value: &str, missing: &str) -> String {
    if value.is_empty() {
        missing.to_string()
    } else {
        value.to_string()
    }
}

fn gvk_key(id: &ResId) -> String {
    format!(
        "{}_{}_{}",
        or(&id.group, "~G"),
        or(&id.version, "~V"),
        or(&id.kind, "~K")
    )
}

fn legacy_cmp(a: &ResId, b: &ResId, rank: &HashMap<String, i64>) -> Ordering {
    if !a.same_gvk(b) {
        let (ra, rb) = (
            rank.get(&a.kind).copied().unwrap_or(0),
            rank.get(&b.kind).copied().unwrap_or(0),
        );
        if ra != rb {
            return ra.cmp(&rb);
        }
        let ordering = gvk_key(a).cmp(&gvk_key(b));
        if a.kind == "Namespace"
            && b.kind == "Namespace"
            && (a.group.is_empty() || b.group.is_empty())
        {
            return ordering.reverse();
        }
        return ordering;
    }
    // One string, as kustomize compares them: `kubeflow-system|x` sorts
    // before `kubeflow|y`.
    let key = |id: &ResId| format!("{}|{}", or(&id.namespace, "~X"), or(&id.name, "~N"));
    key(a).cmp(&key(b))
}
