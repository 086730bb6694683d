//! What this process last applied, per object, to skip applies that would
//! change nothing.
//!
//! # Design
//! After each apply we keep the object's resourceVersion and a hash of the
//! object as the server returned it (without server-maintained fields).
//! When a later dry-run returns the same resourceVersion (nobody wrote the
//! object since) and the same content (our manifest changes nothing), the
//! apply request is skipped and the object reported Unchanged. A periodic
//! reconcile of an unchanged set thus costs one request per object, not two.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use kube::api::DynamicObject;
use serde_json::Value;

use super::managed::{sighting, Sighting};
use super::objref::ObjRef;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    resource_version: String,
    content: u64,
}

/// Last applied state per object ([`ObjRef::to_id`]).
#[derive(Default)]
pub(crate) struct Memo {
    applied: Mutex<HashMap<String, Applied>>,
    /// Who managed each object right after our last apply of it.
    sightings: Mutex<HashMap<String, Sighting>>,
}

impl Memo {
    /// Remembers `object` as returned by an apply as `field_manager`.
    pub fn remember(&self, objref: &ObjRef, object: &DynamicObject, field_manager: &str) {
        if let Ok(mut map) = self.sightings.lock() {
            map.insert(objref.to_id(), sighting(object, field_manager));
        }
        let Some(applied) = summary(object) else {
            return;
        };
        if let Ok(mut map) = self.applied.lock() {
            map.insert(objref.to_id(), applied);
        }
    }

    pub fn forget(&self, objref: &ObjRef) {
        if let Ok(mut map) = self.applied.lock() {
            map.remove(&objref.to_id());
        }
        if let Ok(mut map) = self.sightings.lock() {
            map.remove(&objref.to_id());
        }
    }

    /// Who managed `objref` right after this process last applied it.
    pub fn applied_sighting(&self, objref: &ObjRef) -> Option<Sighting> {
        self.sightings.lock().ok()?.get(&objref.to_id()).cloned()
    }

    /// Whether `dry_run`, the object as an apply would leave it, is the
    /// object as we last applied it and nobody has written it since.
    pub fn unchanged(&self, objref: &ObjRef, dry_run: &DynamicObject) -> bool {
        let Some(now) = summary(dry_run) else {
            return false;
        };
        self.applied
            .lock()
            .map(|map| map.get(&objref.to_id()) == Some(&now))
            .unwrap_or(false)
    }
}

fn summary(object: &DynamicObject) -> Option<Applied> {
    let resource_version = object.metadata.resource_version.clone()?;
    let value = serde_json::to_value(object).ok()?;
    Some(Applied {
        resource_version,
        content: content_hash(&server_fields_removed(value)),
    })
}

fn content_hash(value: &Value) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.to_string().hash(&mut hasher);
    hasher.finish()
}

/// Drops the fields the server maintains, which differ between a live
/// object and its dry-run without any change of content.
pub(crate) fn server_fields_removed(mut object: Value) -> Value {
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for field in [
            "managedFields",
            "resourceVersion",
            "generation",
            "uid",
            "creationTimestamp",
        ] {
            metadata.remove(field);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(rv: &str, value: &str, managed_time: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "resourceVersion": rv,
                         "managedFields": [{"manager": "kedge", "time": managed_time}]},
            "data": {"key": value}
        }))
        .unwrap()
    }

    fn objref() -> ObjRef {
        ObjRef::from_id("_v1_ConfigMap_n_c").unwrap()
    }

    const T: &str = "2026-01-01T00:00:00Z";

    #[test]
    fn a_dry_run_equal_to_the_last_apply_at_the_same_version_is_unchanged() {
        let memo = Memo::default();
        memo.remember(&objref(), &cm("7", "a", "2026-01-01T00:00:00Z"), "kedge");
        assert!(memo.unchanged(&objref(), &cm("7", "a", "2026-01-01T00:00:09Z")));
    }

    #[test]
    fn a_new_version_or_new_content_or_no_memory_is_not_unchanged() {
        let memo = Memo::default();
        assert!(!memo.unchanged(&objref(), &cm("7", "a", T)));
        memo.remember(&objref(), &cm("7", "a", T), "kedge");
        assert!(
            !memo.unchanged(&objref(), &cm("8", "a", T)),
            "written since"
        );
        assert!(
            !memo.unchanged(&objref(), &cm("7", "b", T)),
            "our manifest changed"
        );
        memo.forget(&objref());
        assert!(!memo.unchanged(&objref(), &cm("7", "a", T)));
    }
}
