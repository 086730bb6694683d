//! What counts as drift, per object, from the metadata a watch sees: pure
//! functions and a compact memory, unit-tested without a cluster. The
//! watches themselves are in `watch.rs`.
//!
//! # Design
//! A change counts as drift when a field kedge set leaves kedge's own
//! `managedFields` entry without kedge applying: another manager changed
//! it (the API server moves its ownership) or removed it. Fields kedge
//! never set are not drift, whoever adds them (an extra ConfigMap key, a
//! controller's annotation). Status subresource writes are ignored. The
//! first sight of an object is its baseline.
//!
//! Per object only a [`Fingerprint`] is kept: hashes of kedge's field
//! paths, of the other managers' entries and of kedge's last apply time —
//! a few words per field, never the object. Paths an owner's ignore rules
//! name (`ignore.rs`) are left out of its objects' fingerprints.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kube::api::ObjectMeta;
use kube::runtime::watcher;

use super::ignore::{names_field, DriftIgnore};
use super::objref::ObjRef;
use super::policy::{ApplyPolicy, Policy};
use super::{KIND_LABEL, NAME_LABEL};

/// Why an object drifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftCause {
    /// Field managers other than ours wrote the object.
    ChangedBy(Vec<String>),
    /// The object was deleted.
    Deleted,
}

/// Who applied an object, by its labels: owner kind and name.
pub(crate) type OwnerKey = (String, String);
/// An object of one kind: namespace and name.
pub(crate) type ObjectKey = (Option<String>, String);

/// One drift seen: whose object, which, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drifted {
    pub owner: OwnerKey,
    pub object: ObjectKey,
    pub cause: DriftCause,
}

/// What one sighting of an object says about who manages it, hashed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Fingerprint {
    /// When kedge last applied, per its own entry.
    applied_at: u64,
    /// kedge's field paths (`f:data/f:key`), sorted.
    ours: Box<[u64]>,
    /// Other managers' entries on the object itself (manager, operation, time), sorted.
    foreign: Box<[u64]>,
}

struct Tracked {
    owner: OwnerKey,
    fingerprint: Fingerprint,
    /// Its policy says kedge leaves it (`policy.rs`): held, never judged.
    left_alone: bool,
}

/// The objects of one kind that carry kedge's labels, turning watch events
/// into drift.
pub(crate) struct DriftTracker {
    field_manager: String,
    /// The kind's group, version and kind, to match ignore rules.
    kind: ObjRef,
    /// Each owner's ignore rules.
    ignores: HashMap<OwnerKey, Arc<DriftIgnore>>,
    objects: HashMap<ObjectKey, Tracked>,
    /// Keys listed since the last `Init`, while a (re)list runs.
    listing: Option<HashSet<ObjectKey>>,
    listed_once: bool,
}

impl DriftTracker {
    /// A tracker of the objects of `kind`'s group, version and kind.
    pub fn new(field_manager: &str, kind: ObjRef) -> DriftTracker {
        DriftTracker {
            field_manager: field_manager.to_string(),
            kind,
            ignores: HashMap::new(),
            objects: HashMap::new(),
            listing: None,
            listed_once: false,
        }
    }

    /// Judges `owner`'s objects with `ignore`. New rules forget the
    /// owner's fingerprints (taken under the old ones): the next sight of
    /// each object is its baseline.
    pub fn set_ignore(&mut self, owner: &OwnerKey, ignore: Arc<DriftIgnore>) {
        let same = self.ignores.get(owner).is_some_and(|old| **old == *ignore);
        if same {
            return;
        }
        let had_rules = self.ignores.get(owner).is_some_and(|old| !old.is_empty());
        if had_rules || !ignore.is_empty() {
            self.objects.retain(|_, tracked| &tracked.owner != owner);
        }
        self.ignores.insert(owner.clone(), ignore);
    }

    /// Whether a first list has completed: absence then means deleted.
    pub fn listed(&self) -> bool {
        self.listed_once
    }

    /// Takes `fingerprint` (kedge's last apply of the object) as the
    /// baseline of an object not seen yet, so that its first sight is
    /// compared with what kedge applied.
    pub fn seed(&mut self, object: ObjectKey, owner: OwnerKey, fingerprint: Fingerprint) {
        self.objects.entry(object).or_insert(Tracked {
            owner,
            fingerprint,
            left_alone: false,
        });
    }

    /// Of `expected`, the objects this kind's watch does not hold.
    pub fn missing<'a>(&self, expected: impl IntoIterator<Item = &'a ObjectKey>) -> Vec<ObjectKey> {
        expected
            .into_iter()
            .filter(|k| !self.objects.contains_key(*k))
            .cloned()
            .collect()
    }

    /// How many objects are tracked.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn observe(&mut self, event: watcher::Event<ObjectMeta>) -> Vec<Drifted> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(meta) => {
                if let (Some(listing), Some(key)) = (&mut self.listing, key(&meta)) {
                    listing.insert(key);
                }
                self.changed(&meta).into_iter().collect()
            }
            watcher::Event::InitDone => {
                self.listed_once = true;
                self.gone_while_relisting()
            }
            watcher::Event::Apply(meta) => self.changed(&meta).into_iter().collect(),
            watcher::Event::Delete(meta) => {
                let Some(key) = key(&meta) else {
                    return Vec::new();
                };
                if policy(&meta).apply == ApplyPolicy::Skip {
                    // Never applied: its deletion changes nothing kedge does.
                    self.objects.remove(&key);
                    return Vec::new();
                }
                let owner = self
                    .objects
                    .remove(&key)
                    .map(|t| t.owner)
                    .or_else(|| owner(&meta));
                owner
                    .map(|owner| Drifted {
                        owner,
                        object: key,
                        cause: DriftCause::Deleted,
                    })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// Objects held before a re-list and absent from it were deleted while
    /// the watch was down.
    fn gone_while_relisting(&mut self) -> Vec<Drifted> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<ObjectKey> = self
            .objects
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|key| {
                let tracked = self.objects.remove(&key)?;
                Some(Drifted {
                    owner: tracked.owner,
                    object: key,
                    cause: DriftCause::Deleted,
                })
            })
            .collect()
    }

    fn changed(&mut self, meta: &ObjectMeta) -> Option<Drifted> {
        let (key, owner) = (key(meta)?, owner(meta)?);
        if policy(meta).left_alone() {
            // kedge does not apply it (again): no change of it is drift.
            self.objects.insert(
                key,
                Tracked {
                    owner,
                    fingerprint: Fingerprint::default(),
                    left_alone: true,
                },
            );
            return None;
        }
        let object = ObjRef {
            namespace: key.0.clone(),
            name: key.1.clone(),
            ..self.kind.clone()
        };
        let ignored = self
            .ignores
            .get(&owner)
            .map(|ignore| ignore.pointers(&object))
            .unwrap_or_default();
        let (now, managers) = fingerprint(meta, &self.field_manager, &ignored);
        let before = self.objects.insert(
            key.clone(),
            Tracked {
                owner: owner.clone(),
                fingerprint: now.clone(),
                left_alone: false,
            },
        )?;
        if before.left_alone {
            // No longer left alone: this sight is the baseline.
            return None;
        }
        let before = before.fingerprint;
        // Our own apply changes our entry's time: what it dropped is ours to drop.
        let taken = now.applied_at == before.applied_at
            && before
                .ours
                .iter()
                .any(|p| now.ours.binary_search(p).is_err());
        if !taken {
            return None;
        }
        let mut by: Vec<String> = managers
            .into_iter()
            .filter(|(hash, _)| before.foreign.binary_search(hash).is_err())
            .map(|(_, manager)| manager)
            .collect();
        by.sort();
        by.dedup();
        Some(Drifted {
            owner,
            object: key,
            cause: DriftCause::ChangedBy(by),
        })
    }
}

fn policy(meta: &ObjectMeta) -> Policy {
    Policy::of(meta.annotations.as_ref(), meta.labels.as_ref())
}

fn key(meta: &ObjectMeta) -> Option<ObjectKey> {
    Some((meta.namespace.clone(), meta.name.clone()?))
}

fn owner(meta: &ObjectMeta) -> Option<OwnerKey> {
    let labels = meta.labels.as_ref()?;
    Some((
        labels.get(KIND_LABEL)?.clone(),
        labels.get(NAME_LABEL)?.clone(),
    ))
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Who manages `meta`'s object, as a [`Fingerprint`], leaving out the
/// `ignored` pointers' fields.
pub(crate) fn fingerprint_of(meta: &ObjectMeta, ours: &str, ignored: &[&[String]]) -> Fingerprint {
    fingerprint(meta, ours, ignored).0
}

/// The fingerprint of `meta`'s managedFields on the object itself (not a
/// subresource such as status), with the other managers' entries by hash.
fn fingerprint(
    meta: &ObjectMeta,
    ours: &str,
    ignored: &[&[String]],
) -> (Fingerprint, Vec<(u64, String)>) {
    let mut applied_at = String::new();
    let mut paths = Vec::new();
    let mut foreign = Vec::new();
    let fields = meta.managed_fields.as_deref().unwrap_or_default();
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
                field_paths(&v1.0, 0, ignored, &mut paths);
            }
            applied_at = applied_at.max(time);
        } else if manager != "before-first-apply" {
            let operation = f.operation.as_deref().unwrap_or_default();
            foreign.push((hash_of((&manager, operation, &time)), manager));
        }
    }
    paths.sort_unstable();
    paths.dedup();
    let mut foreign_hashes: Vec<u64> = foreign.iter().map(|(h, _)| *h).collect();
    foreign_hashes.sort_unstable();
    let fingerprint = Fingerprint {
        applied_at: hash_of(&applied_at),
        ours: paths.into_boxed_slice(),
        foreign: foreign_hashes.into_boxed_slice(),
    };
    (fingerprint, foreign)
}

/// The hash of every path of a `fieldsV1` trie (`f:data`, `f:data/f:key`,
/// …), each hashed with its parent's hash; `ignored` holds what is left
/// of the ignored pointers at this depth, and a path one of them names is
/// left out with everything below it.
fn field_paths(trie: &serde_json::Value, parent: u64, ignored: &[&[String]], paths: &mut Vec<u64>) {
    let Some(children) = trie.as_object() else {
        return;
    };
    for (name, child) in children.iter().filter(|(name, _)| name.as_str() != ".") {
        let below: Vec<&[String]> = ignored
            .iter()
            .filter(|p| p.first().is_some_and(|s| names_field(s, name)))
            .map(|p| &p[1..])
            .collect();
        if below.iter().any(|rest| rest.is_empty()) {
            continue;
        }
        let path = hash_of((parent, name));
        field_paths(child, path, &below, paths);
        paths.push(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tracker() -> DriftTracker {
        DriftTracker::new("kedge", ObjRef::from_id("_v1_ConfigMap__x").unwrap())
    }

    /// A ConfigMap's metadata, labelled as `apps`', managed by `managers`:
    /// (manager, operation, time, fieldsV1).
    fn cm(managers: &[(&str, &str, &str, serde_json::Value)]) -> ObjectMeta {
        let fields: Vec<_> = managers
            .iter()
            .map(|(m, op, time, fields)| {
                json!({"manager": m, "operation": op, "time": time,
                       "fieldsType": "FieldsV1", "fieldsV1": fields})
            })
            .collect();
        serde_json::from_value(json!({
            "name": "c", "namespace": "n", "managedFields": fields,
            "labels": {"kedge.dev/name": "apps", "kedge.dev/kind": "Kustomization"}
        }))
        .unwrap()
    }

    const T1: &str = "2026-01-01T00:00:01Z";
    const T2: &str = "2026-01-01T00:00:02Z";

    fn data(keys: &[&str]) -> serde_json::Value {
        let keys: serde_json::Map<String, serde_json::Value> =
            keys.iter().map(|k| (format!("f:{k}"), json!({}))).collect();
        json!({ "f:data": keys })
    }

    fn ours(
        keys: &[&str],
        time: &'static str,
    ) -> (&'static str, &'static str, &'static str, serde_json::Value) {
        ("kedge", "Apply", time, data(keys))
    }

    fn edit(keys: &[&str]) -> (&'static str, &'static str, &'static str, serde_json::Value) {
        ("kubectl-edit", "Update", T2, data(keys))
    }

    fn object() -> ObjectKey {
        (Some("n".into()), "c".into())
    }

    fn apps() -> OwnerKey {
        ("Kustomization".into(), "apps".into())
    }

    #[test]
    fn an_expected_object_missing_after_the_first_list_was_deleted() {
        let mut t = tracker();
        assert!(!t.listed());
        t.observe(watcher::Event::Init);
        t.observe(watcher::Event::InitDone);
        assert!(t.listed());
        assert_eq!(t.missing(&[object()]), vec![object()]);
        t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T1)])));
        assert!(t.missing(&[object()]).is_empty());
    }

    #[test]
    fn the_first_sight_is_the_baseline() {
        let mut t = tracker();
        let seen = cm(&[ours(&["a"], T1), edit(&["b"])]);
        assert!(t
            .observe(watcher::Event::InitApply(seen.clone()))
            .is_empty());
        assert!(t.observe(watcher::Event::Apply(seen)).is_empty());
    }

    #[test]
    fn a_field_taken_from_us_by_another_manager_is_drift_of_its_owner() {
        let mut t = tracker();
        assert!(t
            .observe(watcher::Event::Apply(cm(&[ours(&["a", "b"], T1)])))
            .is_empty());
        let events = t.observe(watcher::Event::Apply(cm(&[ours(&["b"], T1), edit(&["a"])])));
        assert_eq!(
            events,
            vec![Drifted {
                owner: apps(),
                object: object(),
                cause: DriftCause::ChangedBy(vec!["kubectl-edit".into()]),
            }]
        );
    }

    #[test]
    fn a_first_sight_is_compared_with_our_last_apply_when_seeded() {
        let mut t = tracker();
        let applied = fingerprint_of(&cm(&[ours(&["a", "b"], T1)]), "kedge", &[]);
        t.seed(object(), apps(), applied);
        let events = t.observe(watcher::Event::InitApply(cm(&[
            ours(&["b"], T1),
            edit(&["a"]),
        ])));
        assert_eq!(events.len(), 1, "the edit before the first list is drift");
    }

    #[test]
    fn a_field_an_ignore_rule_names_is_not_drift_when_taken_but_others_are() {
        use crate::apply::ignore::{IgnoreRule, ObjectSelector};
        let mut t = tracker();
        let rule = IgnoreRule {
            paths: vec!["/data/a".into()],
            target: ObjectSelector {
                kind: Some("ConfigMap".into()),
                ..ObjectSelector::default()
            },
        };
        t.set_ignore(&apps(), Arc::new(DriftIgnore::new(&[rule]).unwrap()));
        t.observe(watcher::Event::Apply(cm(&[ours(&["a", "b"], T1)])));
        assert!(
            t.observe(watcher::Event::Apply(cm(&[ours(&["b"], T1), edit(&["a"])])))
                .is_empty(),
            "a is ignored"
        );
        let events = t.observe(watcher::Event::Apply(cm(&[
            ours(&[], T1),
            edit(&["a", "b"]),
        ])));
        assert_eq!(events.len(), 1, "b is not");
    }

    #[test]
    fn an_object_kedge_leaves_alone_is_held_but_never_drift() {
        let mut t = tracker();
        let left = |managers: &[(&str, &str, &str, serde_json::Value)]| {
            let mut meta = cm(managers);
            meta.annotations = Some(
                [(
                    "kustomize.toolkit.fluxcd.io/ssa".to_string(),
                    "IfNotPresent".to_string(),
                )]
                .into(),
            );
            meta
        };
        t.observe(watcher::Event::Apply(left(&[ours(&["a"], T1)])));
        assert!(t.missing(&[object()]).is_empty(), "held: not missing");
        assert!(t
            .observe(watcher::Event::Apply(left(&[ours(&[], T1), edit(&["a"])])))
            .is_empty());
        assert_eq!(
            t.observe(watcher::Event::Delete(left(&[]))).len(),
            1,
            "an IfNotPresent object deleted is re-created"
        );
    }

    #[test]
    fn a_field_we_never_set_is_not_drift_whoever_adds_it() {
        let mut t = tracker();
        t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T1)])));
        assert!(t
            .observe(watcher::Event::Apply(cm(&[
                ours(&["a"], T1),
                edit(&["extra"])
            ])))
            .is_empty());
    }

    #[test]
    fn our_own_applies_and_status_writes_are_not_drift() {
        let mut t = tracker();
        t.observe(watcher::Event::Apply(cm(&[ours(&["a", "old"], T1)])));
        assert!(
            t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T2)])))
                .is_empty(),
            "a new revision that drops a field is our own change"
        );
        let mut status_write = cm(&[ours(&["a"], T2)]);
        let fields = status_write.managed_fields.get_or_insert_with(Vec::new);
        let mut status = fields[0].clone();
        status.manager = Some("kube-controller-manager".into());
        status.subresource = Some("status".into());
        fields.push(status);
        assert!(t.observe(watcher::Event::Apply(status_write)).is_empty());
    }

    #[test]
    fn a_taken_field_is_reported_once() {
        let mut t = tracker();
        t.observe(watcher::Event::Apply(cm(&[ours(&["a", "b"], T1)])));
        let edited = cm(&[ours(&["b"], T1), edit(&["a"])]);
        assert_eq!(t.observe(watcher::Event::Apply(edited.clone())).len(), 1);
        assert!(t.observe(watcher::Event::Apply(edited)).is_empty());
    }

    #[test]
    fn a_deletion_is_drift_and_so_is_an_object_missing_from_a_relist() {
        let mut t = tracker();
        t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T1)])));
        let events = t.observe(watcher::Event::Delete(cm(&[])));
        assert_eq!(events[0].cause, DriftCause::Deleted);
        assert_eq!(events[0].owner, apps());

        t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T1)])));
        t.observe(watcher::Event::Init);
        let events = t.observe(watcher::Event::InitDone);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].cause, DriftCause::Deleted);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn an_object_without_both_owner_labels_is_not_tracked() {
        let mut t = tracker();
        let mut unlabelled = cm(&[ours(&["a"], T1)]);
        unlabelled.labels = None;
        assert!(t.observe(watcher::Event::Apply(unlabelled)).is_empty());
        assert_eq!(t.len(), 0);
    }
}
