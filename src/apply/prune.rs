//! [`Manager::prune`]: delete stale objects that are still ours.

use std::fmt;

use kube::api::{DeleteParams, DynamicObject, Preconditions};

use super::changeset::{Action, ChangeSet};
use super::objref::ObjRef;
use super::policy::Policy;
use super::{Manager, Owner};

/// How to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Deletes in flight at once.
    pub concurrency: usize,
}

impl Default for PruneOptions {
    fn default() -> PruneOptions {
        PruneOptions { concurrency: 16 }
    }
}

/// Why a stale object was left in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// It carries `prune: disabled` or `reconcile: disabled` (see `policy.rs`).
    PruneDisabled,
    /// Its labels no longer name this owner: someone else took it over.
    NotOurs,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::PruneDisabled => "annotated prune: disabled or reconcile: disabled",
            SkipReason::NotOurs => "labels name another owner",
        })
    }
}

/// What a prune did, object by object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneResult {
    /// Deleted, already gone, or of a kind no longer served.
    pub deleted: Vec<ObjRef>,
    /// Left in place on purpose.
    pub skipped: Vec<(ObjRef, SkipReason)>,
    /// Not deleted because of an error (the message says which).
    pub failed: Vec<(ObjRef, String)>,
}

impl PruneResult {
    /// Objects to keep in the inventory: those whose delete failed.
    pub fn survivors(&self) -> Vec<ObjRef> {
        self.failed.iter().map(|(o, _)| o.clone()).collect()
    }

    /// Deleted and skipped objects in [`ChangeSet`] vocabulary.
    pub fn changeset(&self) -> ChangeSet {
        let mut changes = ChangeSet::default();
        for o in &self.deleted {
            changes.push(o.clone(), Action::Deleted);
        }
        for (o, _) in &self.skipped {
            changes.push(o.clone(), Action::Skipped);
        }
        changes
    }
}

enum Outcome {
    Deleted,
    Skipped(SkipReason),
    Failed(String),
}

impl Manager {
    /// Deletes the `stale` objects that still carry `owner`'s labels,
    /// everything else first, then CRDs, then Namespaces.
    ///
    /// # Guarantees
    /// - An object annotated (or labelled) `prune: disabled` or `reconcile:
    ///   disabled` (kedge's or Flux's key), or whose labels name another
    ///   owner, is never deleted ([`PruneResult::skipped`]).
    /// - The delete is conditional on the object's uid and resourceVersion
    ///   as checked, so an object changed in between is not deleted.
    /// - A delete that fails is returned in [`PruneResult::failed`]; the
    ///   caller keeps those objects in its inventory
    ///   ([`super::inventory::merge`] with [`PruneResult::survivors`]) so
    ///   the next reconcile retries them. See Flux issue #1664.
    /// - A missing object (404), or one whose group and kind are no longer
    ///   served in any version, counts as deleted.
    pub async fn prune(
        &self,
        stale: &[ObjRef],
        owner: &Owner,
        options: &PruneOptions,
    ) -> PruneResult {
        let (namespaces, rest): (Vec<&ObjRef>, Vec<&ObjRef>) =
            stale.iter().partition(|o| o.is_namespace());
        let (crds, others): (Vec<&ObjRef>, Vec<&ObjRef>) =
            rest.into_iter().partition(|o| o.is_crd());
        let mut result = PruneResult::default();
        for batch in [others, crds, namespaces] {
            let outcomes: Vec<Outcome> = self
                .bounded(
                    batch.iter().map(|o| self.prune_one(o, owner)).collect(),
                    options.concurrency,
                )
                .await;
            for (object, outcome) in batch.into_iter().zip(outcomes) {
                let object = object.clone();
                match outcome {
                    Outcome::Deleted => result.deleted.push(object),
                    Outcome::Skipped(reason) => result.skipped.push((object, reason)),
                    Outcome::Failed(message) => result.failed.push((object, message)),
                }
            }
        }
        result
    }

    async fn prune_one(&self, object: &ObjRef, owner: &Owner) -> Outcome {
        let kind = match self.kinds.resolve_any_version(object).await {
            Ok(Some(kind)) => kind,
            Ok(None) => return Outcome::Deleted,
            Err(err) => return Outcome::Failed(err.to_string()),
        };
        let api = self.api(&kind, object);
        let live = match api.get_opt(&object.name).await {
            Ok(Some(live)) => live,
            Ok(None) => return Outcome::Deleted,
            Err(err) => return Outcome::Failed(format!("cannot read it: {err}")),
        };
        if let Some(reason) = skip_reason(&live, owner) {
            return Outcome::Skipped(reason);
        }
        if live.metadata.deletion_timestamp.is_some() {
            return Outcome::Deleted;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: live.metadata.uid.clone(),
                resource_version: live.metadata.resource_version.clone(),
            }),
            ..DeleteParams::background()
        };
        self.memo.forget(object);
        match api.delete(&object.name, &params).await {
            Ok(_) => Outcome::Deleted,
            Err(kube::Error::Api(status)) if status.code == 404 => Outcome::Deleted,
            Err(err) => Outcome::Failed(format!("delete failed: {err}")),
        }
    }
}

fn skip_reason(live: &DynamicObject, owner: &Owner) -> Option<SkipReason> {
    let metadata = &live.metadata;
    if Policy::of(metadata.annotations.as_ref(), metadata.labels.as_ref()).keep_on_prune {
        return Some(SkipReason::PruneDisabled);
    }
    (!owner.owns(live.metadata.labels.as_ref())).then_some(SkipReason::NotOurs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(labels: serde_json::Value, annotations: serde_json::Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": labels, "annotations": annotations}
        }))
        .unwrap()
    }

    fn ours() -> serde_json::Value {
        json!({"kedge.dev/name": "apps", "kedge.dev/kind": "Kustomization"})
    }

    #[test]
    fn an_object_of_ours_without_annotation_is_pruned() {
        let owner = Owner::new("apps", "Kustomization");
        assert_eq!(skip_reason(&live(ours(), json!({})), &owner), None);
    }

    #[test]
    fn the_prune_disabled_annotation_keeps_an_object() {
        let owner = Owner::new("apps", "Kustomization");
        let annotated = live(ours(), json!({"kedge.dev/prune": "disabled"}));
        assert_eq!(
            skip_reason(&annotated, &owner),
            Some(SkipReason::PruneDisabled)
        );
        let flux = live(
            ours(),
            json!({"kustomize.toolkit.fluxcd.io/reconcile": "disabled"}),
        );
        assert_eq!(skip_reason(&flux, &owner), Some(SkipReason::PruneDisabled));
    }

    #[test]
    fn an_object_taken_over_by_another_owner_is_kept() {
        let owner = Owner::new("apps", "Kustomization");
        let theirs = live(
            json!({"kedge.dev/name": "infra", "kedge.dev/kind": "Kustomization"}),
            json!({}),
        );
        assert_eq!(skip_reason(&theirs, &owner), Some(SkipReason::NotOurs));
    }
}
