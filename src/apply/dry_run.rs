//! Server-side dry-run: validation before an apply, and
//! [`Manager::dry_run_diff`], what an apply would change (for `kedge diff`).

use kube::api::{DynamicObject, Patch, PatchParams};
use serde_json::Value;

use super::ignore::DriftIgnore;
use super::manifest::{self, Placed};
use super::memo::server_fields_removed;
use super::objref::ObjRef;
use super::policy::{ApplyPolicy, Policy};
use super::ssa::{ApplyError, ObjectFailure};
use super::{Manager, Owner};

/// How an object would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffKind {
    /// It does not exist yet.
    Create,
    /// It exists and would change.
    Update,
    /// Applying it would change nothing.
    Unchanged,
}

/// One object's dry-run outcome: the live object and what it would become,
/// both without the fields the server maintains (managedFields,
/// resourceVersion, generation, uid, timestamps).
#[derive(Debug, Clone)]
pub struct ObjectDiff {
    pub object: ObjRef,
    pub kind: DiffKind,
    pub live: Option<Value>,
    pub merged: Value,
}

impl Manager {
    /// Server-side dry-run apply of every object, `concurrency` at a time,
    /// results in the objects' order.
    pub(crate) async fn dry_run_all(
        &self,
        placed: &[&Placed],
        owner: &Owner,
        concurrency: usize,
    ) -> Vec<Result<DynamicObject, kube::Error>> {
        let params = PatchParams::apply(&owner.field_manager).force().dry_run();
        let requests = placed
            .iter()
            .map(|p| {
                let api = self.api(&p.kind, &p.objref);
                let params = &params;
                async move {
                    api.patch(&p.objref.name, params, &Patch::Apply(&p.body))
                        .await
                }
            })
            .collect();
        self.bounded(requests, concurrency).await
    }

    /// What applying `objects` as `owner` would change, object by object,
    /// without changing anything; fields `ignore` names keep their live
    /// values, as an apply would keep them, and objects an apply would
    /// skip (`policy.rs`) are left out. Kinds must be served (CRs whose
    /// CRD is not installed yet are reported as [`ApplyError::UnknownKind`]).
    ///
    /// # Errors
    /// [`ApplyError::DryRunFailed`] lists every object the server refused.
    pub async fn dry_run_diff(
        &self,
        objects: Vec<Value>,
        owner: &Owner,
        ignore: &DriftIgnore,
    ) -> Result<Vec<ObjectDiff>, ApplyError> {
        let mut placed = Vec::new();
        for m in manifest::prepare(objects, owner)? {
            let Some(kind) = self.kinds.resolve(&m.objref).await? else {
                return Err(ApplyError::UnknownKind {
                    api_version: m.objref.api_version(),
                    kind: m.objref.kind.clone(),
                    object: m.objref,
                    applied: Default::default(),
                });
            };
            placed.push(manifest::place(m, kind)?);
        }
        let mut checked = Vec::with_capacity(placed.len());
        let mut lives = Vec::with_capacity(placed.len());
        let mut failures = Vec::new();
        for mut p in placed {
            match self.live(&p).await {
                Ok(live) => {
                    let value = live.as_ref().and_then(|l| serde_json::to_value(l).ok());
                    if skipped(&p.body, value.as_ref()) {
                        continue;
                    }
                    ignore.keep_live(&p.objref, &mut p.body, value.as_ref());
                    lives.push(live);
                    checked.push(p);
                }
                Err(err) => failures.push(ObjectFailure::new(&p.objref, &err)),
            }
        }
        let refs: Vec<&Placed> = checked.iter().collect();
        let merged = self.dry_run_all(&refs, owner, 16).await;
        let mut diffs = Vec::with_capacity(checked.len());
        for ((p, result), live) in checked.iter().zip(merged).zip(lives) {
            match result {
                Ok(merged) => diffs.push(compare(&p.objref, live, merged)),
                Err(err) => failures.push(ObjectFailure::new(&p.objref, &err)),
            }
        }
        if failures.is_empty() {
            Ok(diffs)
        } else {
            Err(ApplyError::DryRunFailed {
                failures,
                applied: Default::default(),
            })
        }
    }

    pub(crate) async fn live(&self, placed: &Placed) -> Result<Option<DynamicObject>, kube::Error> {
        self.api(&placed.kind, &placed.objref)
            .get_opt(&placed.objref.name)
            .await
    }
}

/// Whether an apply skips the manifest `body` given the `live` object.
fn skipped(body: &Value, live: Option<&Value>) -> bool {
    let desired = Policy::of_manifest(body);
    let live_policy = live.map(Policy::of_manifest).unwrap_or_default();
    desired.apply == ApplyPolicy::Skip
        || live_policy.apply == ApplyPolicy::Skip
        || (desired.apply == ApplyPolicy::IfNotPresent && live.is_some())
}

fn compare(object: &ObjRef, live: Option<DynamicObject>, merged: DynamicObject) -> ObjectDiff {
    let merged = server_fields_removed(serde_json::to_value(merged).unwrap_or(Value::Null));
    let live = live.map(|l| server_fields_removed(serde_json::to_value(l).unwrap_or(Value::Null)));
    let kind = match &live {
        None => DiffKind::Create,
        Some(live) if *live == merged => DiffKind::Unchanged,
        Some(_) => DiffKind::Update,
    };
    ObjectDiff {
        object: object.clone(),
        kind,
        live,
        merged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm(data: Value, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "resourceVersion": rv,
                         "managedFields": [{"manager": rv}]},
            "data": data
        }))
        .unwrap()
    }

    fn objref() -> ObjRef {
        ObjRef::from_id("_v1_ConfigMap_n_c").unwrap()
    }

    #[test]
    fn server_maintained_fields_do_not_count_as_a_change() {
        let diff = compare(
            &objref(),
            Some(cm(json!({"a": "1"}), "1")),
            cm(json!({"a": "1"}), "2"),
        );
        assert_eq!(diff.kind, DiffKind::Unchanged);
    }

    #[test]
    fn a_changed_value_is_an_update_and_a_missing_object_a_create() {
        let diff = compare(
            &objref(),
            Some(cm(json!({"a": "1"}), "1")),
            cm(json!({"a": "2"}), "1"),
        );
        assert_eq!(diff.kind, DiffKind::Update);
        assert_eq!(diff.merged["data"]["a"], "2");
        let diff = compare(&objref(), None, cm(json!({"a": "2"}), ""));
        assert_eq!(diff.kind, DiffKind::Create);
    }
}
