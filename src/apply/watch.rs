//! [`Manager::drift_watch`]: a stream of changes made to our objects by
//! anyone else, and deletions, from watches on the inventory's kinds; and
//! [`debounce`] to batch them.
//!
//! # Design
//! One `kube::runtime::watcher` per kind, filtered by the owner's labels.
//! A change counts as drift when a field kedge set leaves kedge's own
//! `managedFields` entry without kedge applying: another manager changed
//! it (the API server moves its ownership) or removed it. Fields kedge
//! never set are not drift, whoever adds them (an extra ConfigMap key, a
//! controller's annotation). Status subresource writes are ignored.
//!
//! The first sight of an object is compared with the object as this
//! process's last apply of it returned it (kept in the apply memo), so an
//! edit between the apply and the watch's first list is drift too. An
//! inventory object missing from the first list counts as deleted.
//!
//! # Caveats
//! An object this process has not applied yet (none is watched before its
//! first reconcile) has nothing to compare with: its first sight is the
//! baseline.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures::stream::{self, BoxStream, Stream, StreamExt};
use kube::api::DynamicObject;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::time::Instant;

use super::discovery::{DiscoveryError, Kind};
use super::inventory;
use super::managed::{sighting, Sighting};
use super::objref::ObjRef;
use super::{Manager, Owner};

/// Why an object drifted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriftCause {
    /// Field managers other than ours wrote the object.
    ChangedBy(Vec<String>),
    /// The object was deleted.
    Deleted,
}

/// One of our objects drifted from what we applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEvent {
    pub object: ObjRef,
    pub cause: DriftCause,
}

/// Why a drift watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// Discovery could not be read.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The cluster does not serve a kind of the inventory.
    #[error("cannot watch {kind} of apiVersion {api_version}: not served by the cluster")]
    UnknownKind { api_version: String, kind: String },
}

impl Manager {
    /// Watches every kind of `inventory` for objects labelled as `owner`'s
    /// and yields a [`DriftEvent`] for each change by another field manager
    /// and each deletion. The stream never ends; watch errors are logged and
    /// the watch retried with backoff.
    ///
    /// # Errors
    /// When a kind of the inventory is not served (discovery refreshed first).
    pub async fn drift_watch(
        &self,
        inventory: &[ObjRef],
        owner: &Owner,
    ) -> Result<impl Stream<Item = DriftEvent> + Send + 'static, WatchError> {
        let mut streams: Vec<BoxStream<'static, DriftEvent>> = Vec::new();
        for sample in inventory::kinds(inventory) {
            let kind =
                self.kinds
                    .resolve(&sample)
                    .await?
                    .ok_or_else(|| WatchError::UnknownKind {
                        api_version: sample.api_version(),
                        kind: sample.kind.clone(),
                    })?;
            let expected = inventory
                .iter()
                .filter(|o| o.group == sample.group && o.kind == sample.kind)
                .map(|o| {
                    let applied = self.memo.applied_sighting(o).unwrap_or_default();
                    ((o.namespace.clone(), o.name.clone()), applied)
                });
            let tracker = DriftTracker::new(kind, &owner.field_manager, expected);
            streams.push(self.watch_kind(tracker, owner).boxed());
        }
        Ok(stream::select_all(streams))
    }

    fn watch_kind(
        &self,
        mut tracker: DriftTracker,
        owner: &Owner,
    ) -> impl Stream<Item = DriftEvent> + Send + 'static {
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &tracker.kind.resource);
        let config = watcher::Config::default().labels(&owner.label_selector());
        watcher(api, config)
            .default_backoff()
            .filter_map(|event| async move {
                event
                    .map_err(
                        |err| tracing::warn!(error = %err, "drift watch interrupted, retrying"),
                    )
                    .ok()
            })
            .flat_map(move |event| stream::iter(tracker.observe(event)))
    }
}

/// Per-kind memory of each object's managedFields, turning watch events
/// into drift events.
struct DriftTracker {
    kind: Kind,
    field_manager: String,
    seen: HashMap<(Option<String>, String), Sighting>,
    listing: Option<HashSet<(Option<String>, String)>>,
}

impl DriftTracker {
    /// `expected`: the inventory's objects of this kind, each with how our
    /// last apply left it (unknown: the default, nothing to lose). One
    /// missing from the first list was deleted before the watch started.
    fn new(
        kind: Kind,
        field_manager: &str,
        expected: impl IntoIterator<Item = ((Option<String>, String), Sighting)>,
    ) -> DriftTracker {
        DriftTracker {
            kind,
            field_manager: field_manager.to_string(),
            seen: expected.into_iter().collect(),
            listing: None,
        }
    }

    fn observe(&mut self, event: watcher::Event<DynamicObject>) -> Vec<DriftEvent> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(object) => {
                if let Some(listing) = &mut self.listing {
                    listing.insert(key(&object));
                }
                self.changed(&object).into_iter().collect()
            }
            watcher::Event::InitDone => self.gone_while_relisting(),
            watcher::Event::Apply(object) => self.changed(&object).into_iter().collect(),
            watcher::Event::Delete(object) => {
                self.seen.remove(&key(&object));
                vec![self.event(key(&object), DriftCause::Deleted)]
            }
        }
    }

    /// Objects seen before a re-list and absent from it were deleted
    /// while the watch was down.
    fn gone_while_relisting(&mut self) -> Vec<DriftEvent> {
        let Some(listed) = self.listing.take() else {
            return Vec::new();
        };
        let gone: Vec<_> = self
            .seen
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        gone.into_iter()
            .map(|k| {
                self.seen.remove(&k);
                self.event(k, DriftCause::Deleted)
            })
            .collect()
    }

    fn changed(&mut self, object: &DynamicObject) -> Option<DriftEvent> {
        let now = sighting(object, &self.field_manager);
        let before = self
            .seen
            .insert(key(object), now.clone())
            .unwrap_or_default();
        // Our own apply changes our entry's time: what it dropped is ours to drop.
        let taken: Vec<&String> = if now.applied_at == before.applied_at {
            before.ours.difference(&now.ours).collect()
        } else {
            Vec::new()
        };
        if taken.is_empty() {
            return None;
        }
        let mut by: Vec<String> = now
            .foreign
            .difference(&before.foreign)
            .map(|(manager, _, _)| manager.clone())
            .collect();
        by.sort();
        by.dedup();
        Some(self.event(key(object), DriftCause::ChangedBy(by)))
    }

    fn event(&self, (namespace, name): (Option<String>, String), cause: DriftCause) -> DriftEvent {
        let r = &self.kind.resource;
        DriftEvent {
            object: ObjRef {
                group: r.group.clone(),
                version: r.version.clone(),
                kind: r.kind.clone(),
                namespace,
                name,
            },
            cause,
        }
    }
}

fn key(object: &DynamicObject) -> (Option<String>, String) {
    (
        object.metadata.namespace.clone(),
        object.metadata.name.clone().unwrap_or_default(),
    )
}

/// Batches a stream: a batch closes once `quiet` passes without a new item
/// (or, under a constant stream, after ten times `quiet`), so a burst of
/// drift becomes one re-apply.
pub fn debounce<S, T>(items: S, quiet: Duration) -> impl Stream<Item = Vec<T>> + Send
where
    S: Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let items = Box::pin(items.fuse());
    stream::unfold(items, move |mut items| async move {
        let first = items.next().await?;
        let mut batch = vec![first];
        let deadline = Instant::now() + quiet * 10;
        loop {
            let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, items.next()).await {
                Ok(Some(item)) => batch.push(item),
                Ok(None) | Err(_) => return Some((batch, items)),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::discovery::ApiResource;
    use serde_json::json;

    fn tracker() -> DriftTracker {
        let resource = ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            plural: "configmaps".into(),
        };
        DriftTracker::new(
            Kind {
                resource,
                namespaced: true,
                listable: true,
            },
            "kedge",
            [(
                (Some("n".to_string()), "c".to_string()),
                Sighting::default(),
            )],
        )
    }

    /// A ConfigMap managed by `managers`: (manager, operation, time, fieldsV1).
    fn cm(managers: &[(&str, &str, &str, serde_json::Value)]) -> DynamicObject {
        let fields: Vec<_> = managers
            .iter()
            .map(|(m, op, time, fields)| {
                json!({"manager": m, "operation": op, "time": time,
                       "fieldsType": "FieldsV1", "fieldsV1": fields})
            })
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "managedFields": fields}
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

    #[test]
    fn an_inventory_object_missing_from_the_first_list_was_deleted() {
        let mut t = tracker();
        t.observe(watcher::Event::Init);
        let events = t.observe(watcher::Event::InitDone);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].object.to_string(), "ConfigMap/n/c");
        assert_eq!(events[0].cause, DriftCause::Deleted);
    }

    #[test]
    fn without_an_apply_to_compare_with_the_first_sight_is_the_baseline() {
        let mut t = tracker();
        let seen = cm(&[ours(&["a"], T1), edit(&["b"])]);
        assert!(t
            .observe(watcher::Event::InitApply(seen.clone()))
            .is_empty());
        assert!(t.observe(watcher::Event::Apply(seen)).is_empty());
    }

    #[test]
    fn the_first_sight_is_compared_with_our_last_apply() {
        let applied = sighting(&cm(&[ours(&["a", "b"], T1)]), "kedge");
        let tracker_after_apply = || {
            let mut t = tracker();
            t.seen
                .insert((Some("n".to_string()), "c".to_string()), applied.clone());
            t
        };
        let taken = cm(&[ours(&["b"], T1), edit(&["a"])]);
        assert_eq!(
            tracker_after_apply()
                .observe(watcher::Event::InitApply(taken))
                .len(),
            1,
            "a field taken before the first list"
        );
        let extra = cm(&[ours(&["a", "b"], T1), edit(&["extra"])]);
        assert!(tracker_after_apply()
            .observe(watcher::Event::InitApply(extra))
            .is_empty());
    }

    #[test]
    fn a_field_taken_from_us_by_another_manager_is_drift() {
        let mut t = tracker();
        assert!(t
            .observe(watcher::Event::Apply(cm(&[ours(&["a", "b"], T1)])))
            .is_empty());
        let events = t.observe(watcher::Event::Apply(cm(&[ours(&["b"], T1), edit(&["a"])])));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].object.to_string(), "ConfigMap/n/c");
        assert_eq!(
            events[0].cause,
            DriftCause::ChangedBy(vec!["kubectl-edit".into()])
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
        let fields = status_write
            .metadata
            .managed_fields
            .get_or_insert_with(Vec::new);
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

        t.observe(watcher::Event::Apply(cm(&[ours(&["a"], T1)])));
        t.observe(watcher::Event::Init);
        let events = t.observe(watcher::Event::InitDone);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].cause, DriftCause::Deleted);
    }

    #[tokio::test]
    async fn debounce_batches_a_burst_and_keeps_later_items_apart() {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut batches = Box::pin(debounce(rx, Duration::from_millis(50)));
        for i in 0..3 {
            tx.unbounded_send(i).unwrap();
        }
        assert_eq!(batches.next().await, Some(vec![0, 1, 2]));
        tx.unbounded_send(3).unwrap();
        drop(tx);
        assert_eq!(batches.next().await, Some(vec![3]));
        assert_eq!(batches.next().await, None);
    }
}
