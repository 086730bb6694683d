//! One Kubernetes object of a build, with the bookkeeping kustomize keeps
//! while building: the ids it had before renames, the prefixes and suffixes
//! added, and for generated objects whether a content hash goes on the name.

use std::fmt;

use serde_json::{Map, Value};

use super::yaml::Step;

/// Group, version, kind, namespace and name of an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResId {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ResId {
    pub fn of(value: &Value) -> ResId {
        let api_version = str_at(value, &["apiVersion"]).unwrap_or_default();
        let (group, version) = split_api_version(api_version);
        ResId {
            group: group.to_string(),
            version: version.to_string(),
            kind: str_at(value, &["kind"]).unwrap_or_default().to_string(),
            namespace: str_at(value, &["metadata", "namespace"])
                .unwrap_or_default()
                .to_string(),
            name: str_at(value, &["metadata", "name"])
                .unwrap_or_default()
                .to_string(),
        }
    }

    /// Namespaces "" and "default" are the same namespace; cluster-scoped
    /// kinds have none.
    pub fn same_namespace(&self, other: &ResId) -> bool {
        effective_namespace(self) == effective_namespace(other)
    }

    pub fn same_gvk(&self, other: &ResId) -> bool {
        self.group == other.group && self.version == other.version && self.kind == other.kind
    }

    /// Same object: same kind, group, version, name, namespace.
    pub fn same_object(&self, other: &ResId) -> bool {
        self.same_gvk(other) && self.name == other.name && self.same_namespace(other)
    }
}

fn effective_namespace(id: &ResId) -> &str {
    if super::schema::is_cluster_scoped(&id.group, &id.version, &id.kind) || id.namespace.is_empty()
    {
        if super::schema::is_cluster_scoped(&id.group, &id.version, &id.kind) {
            return "";
        }
        return "default";
    }
    &id.namespace
}

impl fmt::Display for ResId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let gv = if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        };
        write!(f, "{gv}, Kind={} ", self.kind)?;
        if !self.namespace.is_empty() {
            write!(f, "{}/", self.namespace)?;
        }
        write!(f, "{}", self.name)
    }
}

pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// How a generated object combines with an existing one of the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Behavior {
    #[default]
    Create,
    Merge,
    Replace,
}

/// Where an object came from, for `buildMetadata: [originAnnotations]`.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// Read from this manifest file.
    File(std::path::PathBuf),
    /// Made (or, in `transformations`, changed) by a built-in plugin
    /// configured in `file`.
    Generated {
        file: std::path::PathBuf,
        kind: String,
        name: Option<String>,
        namespace: Option<String>,
    },
}

/// One object of a build.
#[derive(Clone, Debug)]
pub struct Resource {
    pub(crate) value: Value,
    /// Ids this object had before renames and namespace changes, oldest first.
    pub(crate) previous_ids: Vec<ResId>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) suffixes: Vec<String>,
    /// Generated objects get a content hash on their name at the end.
    pub(crate) needs_hash: bool,
    pub(crate) behavior: Behavior,
    /// Vars bound to this object.
    pub(crate) var_names: Vec<String>,
    pub(crate) origin: Option<Origin>,
    /// The transformers that ran over this object, in order.
    pub(crate) transformations: Vec<Origin>,
    /// Where the manifest had keys without a value (`key:`); a strategic
    /// merge patch drops them (`smp::drop_empty_nulls`).
    pub(crate) empty_nulls: Vec<Vec<Step>>,
    /// Strings of the manifest written quoted that hold `${`
    /// (`yaml::Document::quoted_templates`).
    pub(crate) quoted_templates: std::collections::BTreeSet<String>,
}

impl Resource {
    pub(crate) fn new(value: Value) -> Resource {
        Resource {
            value,
            previous_ids: Vec::new(),
            prefixes: Vec::new(),
            suffixes: Vec::new(),
            needs_hash: false,
            behavior: Behavior::Create,
            var_names: Vec::new(),
            origin: None,
            transformations: Vec::new(),
            empty_nulls: Vec::new(),
            quoted_templates: Default::default(),
        }
    }

    /// The object as JSON.
    pub fn to_json(&self) -> Value {
        self.value.clone()
    }

    /// Strings holding `${` that the manifest quoted: a substitution keeps
    /// them strings, as Flux does.
    pub fn quoted_templates(&self) -> &std::collections::BTreeSet<String> {
        &self.quoted_templates
    }

    /// The manifest file the object was read from; `None` for generated ones.
    pub fn origin_file(&self) -> Option<&std::path::Path> {
        match &self.origin {
            Some(Origin::File(path)) => Some(path),
            _ => None,
        }
    }

    pub fn api_version(&self) -> &str {
        str_at(&self.value, &["apiVersion"]).unwrap_or_default()
    }

    pub fn kind(&self) -> &str {
        str_at(&self.value, &["kind"]).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        str_at(&self.value, &["metadata", "name"]).unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        str_at(&self.value, &["metadata", "namespace"])
    }

    pub(crate) fn id(&self) -> ResId {
        ResId::of(&self.value)
    }

    /// The current id and every previous one.
    pub(crate) fn all_ids(&self) -> Vec<ResId> {
        let mut ids = self.previous_ids.clone();
        ids.push(self.id());
        ids
    }

    /// The id the object had when it was first read or generated.
    pub(crate) fn original_id(&self) -> ResId {
        self.previous_ids
            .first()
            .cloned()
            .unwrap_or_else(|| self.id())
    }

    /// Remembers the current id, as kustomize does before each transformer
    /// that may change names or namespaces (even when it does not).
    pub(crate) fn remember_id(&mut self) {
        self.previous_ids.push(self.id());
    }

    pub(crate) fn set_name(&mut self, name: &str) {
        set_at(
            &mut self.value,
            &["metadata", "name"],
            Value::String(name.to_string()),
        );
    }

    pub(crate) fn set_namespace(&mut self, namespace: &str) {
        set_at(
            &mut self.value,
            &["metadata", "namespace"],
            Value::String(namespace.to_string()),
        );
    }

    pub(crate) fn labels(&self) -> Option<&Map<String, Value>> {
        self.value.get("metadata")?.get("labels")?.as_object()
    }

    pub(crate) fn annotations(&self) -> Option<&Map<String, Value>> {
        self.value.get("metadata")?.get("annotations")?.as_object()
    }
}

pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = value;
    for key in path {
        v = v.get(key)?;
    }
    v.as_str()
}

/// Sets a value, creating the maps on the way.
pub fn set_at(value: &mut Value, path: &[&str], new: Value) {
    let mut v = value;
    for key in &path[..path.len() - 1] {
        if !v.get(key).is_some_and(Value::is_object) {
            if let Value::Object(map) = v {
                map.insert(key.to_string(), Value::Object(Map::new()));
            } else {
                return;
            }
        }
        v = match v.get_mut(key) {
            Some(next) => next,
            None => return,
        };
    }
    if let (Value::Object(map), Some(last)) = (v, path.last()) {
        map.insert(last.to_string(), new);
    }
}
