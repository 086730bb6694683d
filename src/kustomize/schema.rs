//! What the strategic merge patch and the transformers need to know about
//! built-in kinds: which lists merge by key, and which kinds are
//! cluster-scoped. `merge_keys.json` is generated from the Kubernetes
//! OpenAPI (`/openapi/v2`) by `scripts/gen-merge-keys.sh`; kinds it does not
//! know (custom resources) have no schema, so their lists are replaced
//! whole by a patch, as kustomize does.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::Deserialize;

const TABLE: &str = include_str!("merge_keys.json");

/// One field of an OpenAPI definition, reduced to what merging needs.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldInfo {
    #[serde(default)]
    pub list: bool,
    /// Definition of the list's items.
    pub items: Option<String>,
    /// Definition of an object field.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Definition of the values of a map field.
    pub values: Option<String>,
    pub key: Option<String>,
    pub map_keys: Option<Vec<String>>,
    pub strategy: Option<String>,
}

impl FieldInfo {
    /// Lists whose patch strategy includes `merge` merge element by element.
    pub fn merges(&self) -> bool {
        self.strategy
            .as_deref()
            .is_some_and(|s| s.split(',').any(|p| p == "merge"))
    }

    /// The keys that identify an element of a merging list.
    pub fn merge_keys(&self) -> Vec<String> {
        match (&self.map_keys, &self.key) {
            (Some(keys), _) if !keys.is_empty() => keys.clone(),
            (_, Some(key)) => vec![key.clone()],
            _ => Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Table {
    roots: HashMap<String, String>,
    cluster_scoped: HashSet<String>,
    definitions: HashMap<String, HashMap<String, FieldInfo>>,
}

fn table() -> &'static Table {
    static TABLE_CELL: OnceLock<Table> = OnceLock::new();
    // The table is compiled in and checked by a unit test; an unreadable
    // table would only make every kind schemaless.
    TABLE_CELL.get_or_init(|| serde_json::from_str(TABLE).unwrap_or_default())
}

/// Group-versions kustomize's bundled schema (Kubernetes 1.21) still has
/// but current Kubernetes no longer serves; their kinds merge like the
/// kind's current version.
const REMOVED_SINCE_1_21: &[&str] = &[
    "batch/v1beta1",
    "policy/v1beta1",
    "autoscaling/v2beta1",
    "autoscaling/v2beta2",
    "networking.k8s.io/v1beta1",
    "extensions/v1beta1",
    "discovery.k8s.io/v1beta1",
    "events.k8s.io/v1beta1",
    "node.k8s.io/v1beta1",
    "storage.k8s.io/v1beta1",
    "rbac.authorization.k8s.io/v1beta1",
    "admissionregistration.k8s.io/v1beta1",
    "apiextensions.k8s.io/v1beta1",
    "apiregistration.k8s.io/v1beta1",
    "certificates.k8s.io/v1beta1",
    "coordination.k8s.io/v1beta1",
    "scheduling.k8s.io/v1beta1",
    "flowcontrol.apiserver.k8s.io/v1beta1",
];

/// The definition name of a kind, e.g. `apps/v1/Deployment`.
pub fn root(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    let key = |group: &str, version: &str| {
        if group.is_empty() {
            format!("{version}/{kind}")
        } else {
            format!("{group}/{version}/{kind}")
        }
    };
    if let Some(def) = table().roots.get(&key(group, version)) {
        return Some(def);
    }
    if !REMOVED_SINCE_1_21.contains(&format!("{group}/{version}").as_str()) {
        return None;
    }
    // extensions/v1beta1 Ingress lives on in networking.k8s.io.
    let group = if group == "extensions" && kind == "Ingress" {
        "networking.k8s.io"
    } else {
        group
    };
    let prefix = format!("{group}/");
    let mut candidates: Vec<(&String, &String)> = table()
        .roots
        .iter()
        .filter(|(k, _)| {
            k.starts_with(&prefix)
                && k.ends_with(&format!("/{kind}"))
                && k.matches('/').count() == 2
        })
        .collect();
    candidates.sort();
    candidates.last().map(|(_, def)| def.as_str())
}

/// A field of a definition.
pub fn field(definition: &str, name: &str) -> Option<&'static FieldInfo> {
    table().definitions.get(definition)?.get(name)
}

pub fn is_cluster_scoped(group: &str, kind: &str) -> bool {
    table().cluster_scoped.contains(&format!("{group}/{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_table_parses_and_knows_containers_by_name() {
        let deployment = root("apps", "v1", "Deployment").unwrap();
        let spec = field(deployment, "spec")
            .unwrap()
            .reference
            .as_deref()
            .unwrap();
        let template = field(spec, "template")
            .unwrap()
            .reference
            .as_deref()
            .unwrap();
        let pod_spec = field(template, "spec")
            .unwrap()
            .reference
            .as_deref()
            .unwrap();
        let containers = field(pod_spec, "containers").unwrap();
        assert!(containers.merges());
        assert_eq!(containers.merge_keys(), vec!["name"]);
    }

    #[test]
    fn removed_versions_merge_like_the_current_one() {
        assert_eq!(
            root("batch", "v1beta1", "CronJob"),
            root("batch", "v1", "CronJob")
        );
        assert!(root("extensions", "v1beta1", "Ingress").is_some());
        assert!(root("apps", "v1beta1", "Deployment").is_none());
    }

    #[test]
    fn namespaces_are_cluster_scoped_and_config_maps_are_not() {
        assert!(is_cluster_scoped("", "Namespace"));
        assert!(is_cluster_scoped(
            "rbac.authorization.k8s.io",
            "ClusterRole"
        ));
        assert!(!is_cluster_scoped("", "ConfigMap"));
    }
}
