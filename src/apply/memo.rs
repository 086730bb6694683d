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

use super::drift::{fingerprint_of, Fingerprint};
use super::ignore::DriftIgnore;
use super::objref::ObjRef;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Applied {
    resource_version: String,
    content: u64,
    /// Who managed the object right after our apply: a first sight by a
    /// drift watch is compared with it (an edit made before the watch's
    /// first list is drift too).
    managed: Fingerprint,
}

/// Last applied state per object ([`ObjRef::to_id`]).
#[derive(Default)]
pub(crate) struct Memo {
    applied: Mutex<HashMap<String, Applied>>,
}

impl Memo {
    /// Remembers `object` as returned by an apply as `field_manager`, its
    /// fingerprint without the fields `ignore` names.
    pub fn remember(
        &self,
        objref: &ObjRef,
        object: &DynamicObject,
        field_manager: &str,
        ignore: &DriftIgnore,
    ) {
        let ignored = ignore.pointers(objref);
        let Some(applied) = summary(object, field_manager, &ignored) else {
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
    }

    /// Whether `dry_run`, the object as an apply would leave it, is the
    /// object as we last applied it and nobody has written it since.
    pub fn unchanged(&self, objref: &ObjRef, dry_run: &DynamicObject) -> bool {
        let Some(now) = summary(dry_run, "", &[]) else {
            return false;
        };
        self.applied
            .lock()
            .map(|map| {
                map.get(&objref.to_id()).is_some_and(|last| {
                    (&last.resource_version, last.content) == (&now.resource_version, now.content)
                })
            })
            .unwrap_or(false)
    }

    /// Who managed `objref` right after this process last applied it.
    pub fn managed(&self, objref: &ObjRef) -> Option<Fingerprint> {
        let map = self.applied.lock().ok()?;
        map.get(&objref.to_id()).map(|a| a.managed.clone())
    }
}

fn summary(object: &DynamicObject, field_manager: &str, ignored: &[&[String]]) -> Option<Applied> {
    let resource_version = object.metadata.resource_version.clone()?;
    let value = serde_json::to_value(object).ok()?;
    Some(Applied {
        resource_version,
        content: content_hash(&server_fields_removed(value)),
        managed: fingerprint_of(&object.metadata, field_manager, ignored),
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
        memo.remember(
            &objref(),
            &cm("7", "a", "2026-01-01T00:00:00Z"),
            "kedge",
            &DriftIgnore::default(),
        );
        assert!(memo.unchanged(&objref(), &cm("7", "a", "2026-01-01T00:00:09Z")));
    }

    #[test]
    fn a_new_version_or_new_content_or_no_memory_is_not_unchanged() {
        let memo = Memo::default();
        assert!(!memo.unchanged(&objref(), &cm("7", "a", T)));
        memo.remember(
            &objref(),
            &cm("7", "a", T),
            "kedge",
            &DriftIgnore::default(),
        );
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
