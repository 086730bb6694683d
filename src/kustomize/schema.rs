//! What the strategic merge patch and the transformers need to know about
//! built-in kinds: which lists merge by key, and which kinds are
//! cluster-scoped. `merge_keys.json` is generated from the Kubernetes
//! OpenAPI (`/openapi/v2`) by `scripts/gen-merge-keys.sh`; kinds it does not
//! know (custom resources) have no schema, so their lists are replaced
//! whole by a patch, as kustomize does.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::OnceLock;

use serde::Deserialize;

const TABLE: &str = include_str!("merge_keys.json");

/// One field of an OpenAPI definition, reduced to what merging needs.
#[derive(Debug, Default, Clone, Deserialize)]
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
pub struct Table {
    roots: HashMap<String, String>,
    definitions: HashMap<String, HashMap<String, FieldInfo>>,
}

thread_local! {
    /// A kustomization's own OpenAPI schema (`openapi: {path: …}`), in force
    /// for the build running on this thread.
    static CUSTOM: RefCell<Option<Rc<Table>>> = const { RefCell::new(None) };
}

/// Puts a custom schema in force for this thread's build (or removes it).
pub fn set_custom(table: Option<Table>) {
    CUSTOM.with(|c| *c.borrow_mut() = table.map(Rc::new));
}

fn custom() -> Option<Rc<Table>> {
    CUSTOM.with(|c| c.borrow().clone())
}

/// Reads an OpenAPI v2 document like `scripts/gen-merge-keys.py` does;
/// inline object schemas (common in CRD schemas) become definitions of
/// their own, named after their path.
pub fn parse_openapi(doc: &serde_json::Value) -> Table {
    use serde_json::Value;
    let mut table = Table::default();
    let definitions = doc.get("definitions").and_then(Value::as_object);
    for (name, def) in definitions.into_iter().flatten() {
        register(&mut table, name, def);
        for gvk in def
            .get("x-kubernetes-group-version-kind")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let part = |k: &str| gvk.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let (group, version, kind) = (part("group"), part("version"), part("kind"));
            let key = if group.is_empty() {
                format!("{version}/{kind}")
            } else {
                format!("{group}/{version}/{kind}")
            };
            table.roots.entry(key).or_insert_with(|| name.clone());
        }
    }
    table
}

fn ref_name(v: &serde_json::Value) -> Option<String> {
    let r = v.get("$ref")?.as_str()?;
    Some(r.rsplit('/').next().unwrap_or(r).to_string())
}

/// The definition a schema stands for: its `$ref`, or itself registered
/// under `name` when it is an inline object.
fn definition_of(table: &mut Table, name: &str, schema: &serde_json::Value) -> Option<String> {
    if let Some(r) = ref_name(schema) {
        return Some(r);
    }
    if schema
        .get("properties")
        .is_some_and(serde_json::Value::is_object)
    {
        register(table, name, schema);
        return Some(name.to_string());
    }
    None
}

fn register(table: &mut Table, name: &str, def: &serde_json::Value) {
    use serde_json::Value;
    let mut fields = HashMap::new();
    for (field, prop) in def
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let mut info = FieldInfo::default();
        let path = format!("{name}/{field}");
        if prop.get("type").and_then(Value::as_str) == Some("array") {
            info.list = true;
            info.items = prop
                .get("items")
                .and_then(|i| definition_of(table, &format!("{path}[]"), i));
        } else {
            info.reference = definition_of(table, &path, prop);
            info.values = prop.get("additionalProperties").and_then(ref_name);
        }
        info.key = prop
            .get("x-kubernetes-patch-merge-key")
            .and_then(Value::as_str)
            .map(String::from);
        info.strategy = prop
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
            .map(String::from);
        info.map_keys = prop
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            });
        fields.insert(field.clone(), info);
    }
    table.definitions.insert(name.to_string(), fields);
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

/// The definition name of a kind, e.g. `apps/v1/Deployment`; a custom
/// schema in force comes first.
pub fn root(group: &str, version: &str, kind: &str) -> Option<String> {
    if let Some(custom) = custom() {
        let key = if group.is_empty() {
            format!("{version}/{kind}")
        } else {
            format!("{group}/{version}/{kind}")
        };
        if let Some(def) = custom.roots.get(&key) {
            return Some(def.clone());
        }
    }
    builtin_root(group, version, kind).map(String::from)
}

fn builtin_root(group: &str, version: &str, kind: &str) -> Option<&'static str> {
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

/// A field of a definition (from the custom schema if it defines it).
pub fn field(definition: &str, name: &str) -> Option<FieldInfo> {
    if let Some(custom) = custom() {
        if let Some(fields) = custom.definitions.get(definition) {
            return fields.get(name).cloned();
        }
    }
    table().definitions.get(definition)?.get(name).cloned()
}

/// Whether kustomize treats objects of this group, version and kind as
/// cluster-scoped: only the types its built-in schema (Kubernetes v1.21.2)
/// knows as such; every other type, `flowcontrol.apiserver.k8s.io/v1`
/// included, is namespaced (kyaml's `precomputedIsNamespaceScoped`).
pub fn is_cluster_scoped(group: &str, version: &str, kind: &str) -> bool {
    CLUSTER_SCOPED
        .iter()
        .any(|(g, v, k)| *g == group && *v == version && *k == kind)
}

const CLUSTER_SCOPED: &[(&str, &str, &str)] = &[
    (
        "admissionregistration.k8s.io",
        "v1",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "v1beta1",
        "MutatingWebhookConfiguration",
    ),
    (
        "admissionregistration.k8s.io",
        "v1beta1",
        "ValidatingWebhookConfiguration",
    ),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
    (
        "apiextensions.k8s.io",
        "v1beta1",
        "CustomResourceDefinition",
    ),
    ("apiregistration.k8s.io", "v1", "APIService"),
    ("apiregistration.k8s.io", "v1beta1", "APIService"),
    ("certificates.k8s.io", "v1", "CertificateSigningRequest"),
    (
        "certificates.k8s.io",
        "v1beta1",
        "CertificateSigningRequest",
    ),
    ("flowcontrol.apiserver.k8s.io", "v1beta1", "FlowSchema"),
    (
        "flowcontrol.apiserver.k8s.io",
        "v1beta1",
        "PriorityLevelConfiguration",
    ),
    ("networking.k8s.io", "v1", "IngressClass"),
    ("networking.k8s.io", "v1beta1", "IngressClass"),
    ("node.k8s.io", "v1", "RuntimeClass"),
    ("node.k8s.io", "v1beta1", "RuntimeClass"),
    ("policy", "v1beta1", "PodSecurityPolicy"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io", "v1beta1", "ClusterRole"),
    ("rbac.authorization.k8s.io", "v1beta1", "ClusterRoleBinding"),
    ("scheduling.k8s.io", "v1", "PriorityClass"),
    ("scheduling.k8s.io", "v1beta1", "PriorityClass"),
    ("storage.k8s.io", "v1", "CSIDriver"),
    ("storage.k8s.io", "v1", "CSINode"),
    ("storage.k8s.io", "v1", "StorageClass"),
    ("storage.k8s.io", "v1", "VolumeAttachment"),
    ("storage.k8s.io", "v1beta1", "CSIDriver"),
    ("storage.k8s.io", "v1beta1", "CSINode"),
    ("storage.k8s.io", "v1beta1", "StorageClass"),
    ("storage.k8s.io", "v1beta1", "VolumeAttachment"),
    ("", "v1", "ComponentStatus"),
    ("", "v1", "Namespace"),
    ("", "v1", "Node"),
    ("", "v1", "NodeProxyOptions"),
    ("", "v1", "PersistentVolume"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_table_parses_and_knows_containers_by_name() {
        let deployment = root("apps", "v1", "Deployment").unwrap();
        let spec = field(&deployment, "spec").unwrap().reference.unwrap();
        let template = field(&spec, "template").unwrap().reference.unwrap();
        let pod_spec = field(&template, "spec").unwrap().reference.unwrap();
        let containers = field(&pod_spec, "containers").unwrap();
        assert!(containers.merges());
        assert_eq!(containers.merge_keys(), vec!["name"]);
    }

    #[test]
    fn a_custom_schema_comes_first_and_inline_objects_get_definitions() {
        let doc = serde_json::json!({"definitions": {"my.Crd": {
            "x-kubernetes-group-version-kind": [{"group": "x.io", "version": "v1", "kind": "Crd"}],
            "properties": {"spec": {"properties": {"items": {"type": "array",
                "x-kubernetes-patch-merge-key": "id", "x-kubernetes-patch-strategy": "merge",
                "items": {"properties": {"id": {"type": "string"}}}}}}}}}});
        set_custom(Some(parse_openapi(&doc)));
        let crd = root("x.io", "v1", "Crd").unwrap();
        let spec = field(&crd, "spec").unwrap().reference.unwrap();
        let items = field(&spec, "items").unwrap();
        assert!(items.merges() && items.items.is_some());
        set_custom(None);
        assert!(root("x.io", "v1", "Crd").is_none());
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
        assert!(is_cluster_scoped("", "v1", "Namespace"));
        assert!(is_cluster_scoped(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole"
        ));
        // kustomize's schema is Kubernetes v1.21's: newer versions are
        // namespaced to it, removed ones still cluster-scoped.
        assert!(!is_cluster_scoped(
            "flowcontrol.apiserver.k8s.io",
            "v1",
            "FlowSchema"
        ));
        assert!(is_cluster_scoped("policy", "v1beta1", "PodSecurityPolicy"));
        assert!(!is_cluster_scoped("", "v1", "ConfigMap"));
    }
}
