//! Per-object policies, read from an object's annotations or labels under
//! Flux's names (`kustomize.toolkit.fluxcd.io/…`) or kedge's
//! (`kedge.dev/…`), with Flux's meaning (fluxcd/pkg `ssa`,
//! kustomize-controller):
//!
//! | key | value | effect |
//! |---|---|---|
//! | `ssa` | `Override` (default), `Merge` | applied |
//! | `ssa` | `IfNotPresent` | created when absent, never updated |
//! | `ssa` | `Ignore` | never applied |
//! | `reconcile` | `disabled` | never applied, never pruned |
//! | `prune` | `disabled` | never pruned |
//! | `force` | `enabled` | deleted and re-created when an immutable field changes |
//!
//! Values match case-insensitively. `Merge` is the default of kedge's
//! apply: Flux's `Override` also strips fields kubectl set, which kedge
//! never does, so both leave other managers' fields in place. None of the
//! skipped objects is drift: nothing would be reverted.

use std::collections::BTreeMap;

/// The prefixes of policy keys, kedge's first.
pub const PREFIXES: [&str; 2] = ["kedge.dev", "kustomize.toolkit.fluxcd.io"];

/// How an object is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyPolicy {
    /// Applied (`ssa: Override` or `Merge`, or nothing said).
    #[default]
    Apply,
    /// Created when absent, then left alone (`ssa: IfNotPresent`).
    IfNotPresent,
    /// Never applied (`ssa: Ignore`, `reconcile: disabled`).
    Skip,
}

/// An object's policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    pub apply: ApplyPolicy,
    /// `prune: disabled` or `reconcile: disabled`.
    pub keep_on_prune: bool,
    /// `force: enabled`.
    pub force: bool,
}

/// What `annotations` and `labels` say under `key` (kedge's prefix first,
/// annotations before labels).
fn setting<'a>(
    annotations: Option<&'a BTreeMap<String, String>>,
    labels: Option<&'a BTreeMap<String, String>>,
    key: &str,
) -> Vec<&'a str> {
    PREFIXES
        .iter()
        .flat_map(|prefix| {
            let full = format!("{prefix}/{key}");
            [annotations, labels]
                .into_iter()
                .flatten()
                .filter_map(move |map| map.get(&full).map(String::as_str))
        })
        .collect()
}

impl Policy {
    /// The policies an object's metadata states.
    pub fn of(
        annotations: Option<&BTreeMap<String, String>>,
        labels: Option<&BTreeMap<String, String>>,
    ) -> Policy {
        let says = |key: &str, value: &str| {
            setting(annotations, labels, key)
                .iter()
                .any(|v| v.eq_ignore_ascii_case(value))
        };
        let reconcile_disabled = says("reconcile", "disabled");
        let apply = if reconcile_disabled || says("ssa", "Ignore") {
            ApplyPolicy::Skip
        } else if says("ssa", "IfNotPresent") {
            ApplyPolicy::IfNotPresent
        } else {
            ApplyPolicy::Apply
        };
        Policy {
            apply,
            keep_on_prune: reconcile_disabled || says("prune", "disabled"),
            force: says("force", "enabled"),
        }
    }

    /// The policies of a manifest (its `metadata`).
    pub fn of_manifest(body: &serde_json::Value) -> Policy {
        let map = |field: &str| -> Option<BTreeMap<String, String>> {
            let object = body.get("metadata")?.get(field)?.as_object()?;
            Some(
                object
                    .iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect(),
            )
        };
        Policy::of(map("annotations").as_ref(), map("labels").as_ref())
    }

    /// Whether kedge leaves the object as it is, so a change is not drift.
    pub fn left_alone(&self) -> bool {
        self.apply != ApplyPolicy::Apply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn flux_and_kedge_keys_in_annotations_or_labels_say_the_same() {
        for key in ["kustomize.toolkit.fluxcd.io/ssa", "kedge.dev/ssa"] {
            let annotations = map(&[(key, "IfNotPresent")]);
            assert_eq!(
                Policy::of(Some(&annotations), None).apply,
                ApplyPolicy::IfNotPresent
            );
            assert_eq!(
                Policy::of(None, Some(&map(&[(key, "ignore")]))).apply,
                ApplyPolicy::Skip,
                "values match case-insensitively"
            );
        }
        let merge = map(&[("kustomize.toolkit.fluxcd.io/ssa", "Merge")]);
        assert_eq!(Policy::of(Some(&merge), None), Policy::default());
    }

    #[test]
    fn reconcile_disabled_skips_apply_and_prune_and_force_is_per_object() {
        let disabled = map(&[("kustomize.toolkit.fluxcd.io/reconcile", "disabled")]);
        let policy = Policy::of(Some(&disabled), None);
        assert_eq!(policy.apply, ApplyPolicy::Skip);
        assert!(policy.keep_on_prune && policy.left_alone());
        let prune = map(&[("kustomize.toolkit.fluxcd.io/prune", "disabled")]);
        let policy = Policy::of(Some(&prune), None);
        assert!(policy.keep_on_prune && !policy.left_alone());
        let force =
            serde_json::json!({"metadata": {"annotations": {"kedge.dev/force": "enabled"}}});
        assert!(Policy::of_manifest(&force).force);
    }
}
