//! The inventory: the objects a kustomization has applied, as a list of
//! [`ObjRef`]s. Pure functions; the caller stores the list (SQLite, one per
//! owner per revision, each ref as [`ObjRef::to_id`]).

use std::collections::HashSet;

use super::changeset::{Action, ChangeSet};
use super::objref::ObjRef;

/// The objects an apply leaves in the cluster, in apply order.
pub fn from_changeset(changes: &ChangeSet) -> Vec<ObjRef> {
    changes
        .entries
        .iter()
        .filter(|c| c.action != Action::Deleted)
        .map(|c| c.object.clone())
        .collect()
}

/// Stale objects: in `old` and not in `new`, to be pruned. Objects are
/// compared by group, kind, namespace and name, not version: an object
/// whose apiVersion moved (`v1beta1` → `v1`) is still the same object and
/// must not be deleted.
pub fn diff(old: &[ObjRef], new: &[ObjRef]) -> Vec<ObjRef> {
    let keep: HashSet<_> = new.iter().map(ObjRef::identity).collect();
    old.iter()
        .filter(|o| !keep.contains(&o.identity()))
        .cloned()
        .collect()
}

/// `inventory` plus the `survivors` it lacks: objects whose prune failed
/// stay tracked, so the next reconcile tries again instead of forgetting
/// them (Flux issue #1664).
pub fn merge(mut inventory: Vec<ObjRef>, survivors: &[ObjRef]) -> Vec<ObjRef> {
    let known: HashSet<_> = inventory.iter().map(ObjRef::to_id).collect();
    let missing: Vec<ObjRef> = survivors
        .iter()
        .filter(|s| !known.contains(&s.to_id()))
        .cloned()
        .collect();
    inventory.extend(missing);
    inventory
}

/// The distinct kinds (group, version, kind) of an inventory, in first-seen
/// order: what to watch for drift.
pub fn kinds(inventory: &[ObjRef]) -> Vec<ObjRef> {
    let mut seen = HashSet::new();
    inventory
        .iter()
        .filter(|o| seen.insert((o.group.clone(), o.version.clone(), o.kind.clone())))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(id: &str) -> ObjRef {
        ObjRef::from_id(id).unwrap()
    }

    #[test]
    fn diff_returns_what_left_the_set() {
        let old = [
            r("_v1_ConfigMap_a_one"),
            r("_v1_ConfigMap_a_two"),
            r("_v1_Namespace__a"),
        ];
        let new = [r("_v1_ConfigMap_a_one")];
        assert_eq!(
            diff(&old, &new),
            vec![r("_v1_ConfigMap_a_two"), r("_v1_Namespace__a")]
        );
    }

    #[test]
    fn diff_keeps_an_object_whose_api_version_changed() {
        let old = [r("autoscaling_v1_HorizontalPodAutoscaler_a_web")];
        let new = [r("autoscaling_v2_HorizontalPodAutoscaler_a_web")];
        assert!(diff(&old, &new).is_empty());
    }

    #[test]
    fn diff_of_a_new_set_against_an_empty_inventory_is_empty() {
        assert!(diff(&[], &[r("_v1_ConfigMap_a_one")]).is_empty());
    }

    #[test]
    fn merge_keeps_failed_prunes_tracked_once() {
        let new = vec![r("_v1_ConfigMap_a_one")];
        let survivors = [r("_v1_ConfigMap_a_two"), r("_v1_ConfigMap_a_one")];
        assert_eq!(
            merge(new, &survivors),
            vec![r("_v1_ConfigMap_a_one"), r("_v1_ConfigMap_a_two")]
        );
    }

    #[test]
    fn from_changeset_leaves_out_deleted_objects() {
        let mut changes = ChangeSet::default();
        changes.push(r("_v1_ConfigMap_a_one"), Action::Created);
        changes.push(r("_v1_ConfigMap_a_two"), Action::Unchanged);
        changes.push(r("_v1_ConfigMap_a_three"), Action::Deleted);
        assert_eq!(
            from_changeset(&changes),
            vec![r("_v1_ConfigMap_a_one"), r("_v1_ConfigMap_a_two")]
        );
    }

    #[test]
    fn kinds_lists_each_kind_once() {
        let inventory = [
            r("_v1_ConfigMap_a_one"),
            r("apps_v1_Deployment_a_web"),
            r("_v1_ConfigMap_b_x"),
        ];
        let kinds: Vec<_> = kinds(&inventory).into_iter().map(|o| o.kind).collect();
        assert_eq!(kinds, ["ConfigMap", "Deployment"]);
    }
}
