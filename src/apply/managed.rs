//! Who manages an object, from its `managedFields`: the fields our field
//! manager holds and when it last applied, and the other managers' entries.
//! The apply memo keeps this for each object as our apply returned it; a
//! drift watch compares each sighting with the one before.

use std::collections::HashSet;

use kube::api::DynamicObject;

/// A managedFields entry of another manager: who, how and when.
pub(crate) type Entry = (String, String, String);

/// What one sighting of an object says about who manages it.
#[derive(Debug, Default, Clone)]
pub(crate) struct Sighting {
    /// Entries of other managers on the object itself.
    pub foreign: HashSet<Entry>,
    /// The fields kedge's own entry holds, as paths (`f:data/f:key`).
    pub ours: HashSet<String>,
    /// When kedge last applied, per its own entry.
    pub applied_at: String,
}

/// Who manages `object` itself (not a subresource such as status): our
/// entries' fields and time, and the other managers' entries.
pub(crate) fn sighting(object: &DynamicObject, ours: &str) -> Sighting {
    let mut seen = Sighting::default();
    let fields = object
        .metadata
        .managed_fields
        .as_deref()
        .unwrap_or_default();
    for f in fields
        .iter()
        .filter(|f| f.subresource.as_deref().unwrap_or("").is_empty())
    {
        let Some(manager) = f.manager.clone() else {
            continue;
        };
        let time = f
            .time
            .as_ref()
            .map(|t| format!("{:?}", t.0))
            .unwrap_or_default();
        if manager == ours {
            if let Some(v1) = &f.fields_v1 {
                field_paths(&v1.0, "", &mut seen.ours);
            }
            seen.applied_at = seen.applied_at.max(time);
        } else if manager != "before-first-apply" {
            let operation = f.operation.clone().unwrap_or_default();
            seen.foreign.insert((manager, operation, time));
        }
    }
    seen
}

/// Every path of a `fieldsV1` trie: `f:data`, `f:data/f:key`, ….
fn field_paths(trie: &serde_json::Value, prefix: &str, paths: &mut HashSet<String>) {
    let Some(children) = trie.as_object() else {
        return;
    };
    for (name, child) in children.iter().filter(|(name, _)| name.as_str() != ".") {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}/{name}")
        };
        field_paths(child, &path, paths);
        paths.insert(path);
    }
}
