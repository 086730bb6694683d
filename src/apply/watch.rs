//! [`Manager::drift_watch`]: the changes made to our objects by anyone
//! else, and their deletions, as a stream per owner; and [`debounce`] to
//! batch them.
//!
//! # Design
//! One metadata-only watch per kind for the whole [`Manager`] (all owners,
//! all namespaces), selecting objects that carry [`NAME_LABEL`]: a kind is
//! watched from the first owner that follows it until the last one stops.
//! Each event is judged by the kind's [`DriftTracker`] (what counts as
//! drift is in `drift.rs`) and sent to the followers whose owner the
//! object's labels name. Memory grows with the number of objects (a
//! fingerprint each), not with the number of owners; the API server serves
//! one watch per kind, not one per kind per kustomization.
//!
//! An owner that starts following a kind before its first list completes
//! learns then which of its inventory's objects are gone (deleted while no
//! watch ran: kedge was stopped, say); one that starts later hears of
//! deletions as they happen.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::stream::{self, Stream, StreamExt};
use kube::api::{DynamicObject, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Api;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::discovery::{DiscoveryError, Kind};
use super::drift::{DriftTracker, Drifted, Fingerprint, ObjectKey, OwnerKey};
use super::ignore::DriftIgnore;
use super::inventory;
use super::objref::ObjRef;
use super::{Manager, Owner, NAME_LABEL};

pub use super::drift::DriftCause;

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

/// The kind watches of one [`Manager`].
#[derive(Default)]
pub(crate) struct DriftHub {
    kinds: Mutex<HashMap<(String, String), Arc<KindWatch>>>,
    next_follower: AtomicU64,
}

/// One kind's watch, its tracker and who follows it.
struct KindWatch {
    kind: Kind,
    state: Mutex<KindState>,
    task: Mutex<Option<AbortHandle>>,
}

struct KindState {
    tracker: DriftTracker,
    followers: Vec<Follower>,
}

struct Follower {
    id: u64,
    owner: OwnerKey,
    events: mpsc::UnboundedSender<DriftEvent>,
    /// The owner's inventory objects of this kind, until checked against a
    /// completed list.
    unchecked: Option<Vec<ObjectKey>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl KindWatch {
    fn event(&self, object: ObjectKey, cause: DriftCause) -> DriftEvent {
        let r = &self.kind.resource;
        DriftEvent {
            object: ObjRef {
                group: r.group.clone(),
                version: r.version.clone(),
                kind: r.kind.clone(),
                namespace: object.0,
                name: object.1,
            },
            cause,
        }
    }

    fn observe(&self, event: watcher::Event<ObjectMeta>) {
        let mut state = locked(&self.state);
        let drifted = state.tracker.observe(event);
        for Drifted {
            owner,
            object,
            cause,
        } in drifted
        {
            for follower in state.followers.iter().filter(|f| f.owner == owner) {
                let _ = follower
                    .events
                    .send(self.event(object.clone(), cause.clone()));
            }
        }
        if state.tracker.listed() {
            let KindState { tracker, followers } = &mut *state;
            for follower in followers.iter_mut() {
                self.check_missing(tracker, follower);
            }
        }
    }

    /// Once the kind is listed: the follower's objects the watch does not
    /// hold are deleted.
    fn check_missing(&self, tracker: &DriftTracker, follower: &mut Follower) {
        let Some(expected) = follower.unchecked.take() else {
            return;
        };
        for object in tracker.missing(&expected) {
            let _ = follower
                .events
                .send(self.event(object, DriftCause::Deleted));
        }
    }

    /// Adds `follower`, whose objects are judged with `ignore`; `seeds`
    /// are the fingerprints of its objects as kedge last applied them,
    /// baselines for objects not seen yet.
    fn follow(
        &self,
        mut follower: Follower,
        ignore: Arc<DriftIgnore>,
        seeds: Vec<(ObjectKey, Fingerprint)>,
    ) {
        let mut state = locked(&self.state);
        state.tracker.set_ignore(&follower.owner, ignore);
        for (object, fingerprint) in seeds {
            state
                .tracker
                .seed(object, follower.owner.clone(), fingerprint);
        }
        if state.tracker.listed() {
            // The watch runs: a deletion from now on arrives as an event
            // (dispatched by the object's labels). Checking the inventory
            // against what it holds would race with the creations of the
            // apply just done.
            follower.unchecked = None;
        }
        state.followers.push(follower);
    }

    /// Removes follower `id`; whether none is left.
    fn unfollow(&self, id: u64) -> bool {
        let mut state = locked(&self.state);
        state.followers.retain(|f| f.id != id);
        state.followers.is_empty()
    }

    fn stop(&self) {
        if let Some(task) = locked(&self.task).take() {
            task.abort();
        }
    }
}

impl DriftHub {
    fn unfollow(&self, id: u64, kinds: &[(String, String)]) {
        let mut watches = locked(&self.kinds);
        for key in kinds {
            let emptied = watches.get(key).is_some_and(|watch| watch.unfollow(id));
            if emptied {
                if let Some(watch) = watches.remove(key) {
                    watch.stop();
                }
            }
        }
    }

    /// How many kinds are watched.
    fn watched_kinds(&self) -> usize {
        locked(&self.kinds).len()
    }
}

/// The drift of one owner's objects; dropping it stops following them.
pub struct DriftStream {
    events: mpsc::UnboundedReceiver<DriftEvent>,
    hub: Arc<DriftHub>,
    id: u64,
    kinds: Vec<(String, String)>,
}

impl Stream for DriftStream {
    type Item = DriftEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<DriftEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for DriftStream {
    fn drop(&mut self) {
        self.hub.unfollow(self.id, &self.kinds);
    }
}

impl Manager {
    /// Follows every kind of `inventory` for objects labelled as `owner`'s
    /// and yields a [`DriftEvent`] for each field another manager took
    /// from us and each deletion (an inventory object absent from the
    /// kind's list included). The stream never ends; watch errors are
    /// logged and the watch retried with backoff.
    ///
    /// # Errors
    /// When a kind of the inventory is not served (discovery refreshed first).
    pub async fn drift_watch(
        &self,
        inventory: &[ObjRef],
        owner: &Owner,
    ) -> Result<DriftStream, WatchError> {
        self.drift_watch_ignoring(inventory, owner, Arc::default())
            .await
    }

    /// [`Manager::drift_watch`], where a field `ignore` names is not drift
    /// (pass the rules the applies of `owner` used).
    pub async fn drift_watch_ignoring(
        &self,
        inventory: &[ObjRef],
        owner: &Owner,
        ignore: Arc<DriftIgnore>,
    ) -> Result<DriftStream, WatchError> {
        let (sender, events) = mpsc::unbounded_channel();
        let mut stream = DriftStream {
            events,
            hub: self.drift.clone(),
            id: self.drift.next_follower.fetch_add(1, Ordering::Relaxed),
            kinds: Vec::new(),
        };
        for sample in inventory::kinds(inventory) {
            let kind =
                self.kinds
                    .resolve(&sample)
                    .await?
                    .ok_or_else(|| WatchError::UnknownKind {
                        api_version: sample.api_version(),
                        kind: sample.kind.clone(),
                    })?;
            let of_kind: Vec<&ObjRef> = inventory
                .iter()
                .filter(|o| o.group == sample.group && o.kind == sample.kind)
                .collect();
            let expected = of_kind
                .iter()
                .map(|o| (o.namespace.clone(), o.name.clone()))
                .collect();
            let seeds = of_kind
                .iter()
                .filter_map(|o| {
                    Some(((o.namespace.clone(), o.name.clone()), self.memo.managed(o)?))
                })
                .collect();
            let key = (kind.resource.group.clone(), kind.resource.kind.clone());
            let mut watches = locked(&self.drift.kinds);
            let watch = watches
                .entry(key.clone())
                .or_insert_with(|| self.start_kind_watch(kind, &owner.field_manager));
            watch.follow(
                Follower {
                    id: stream.id,
                    owner: (owner.kind.clone(), owner.name.clone()),
                    events: sender.clone(),
                    unchecked: Some(expected),
                },
                ignore.clone(),
                seeds,
            );
            stream.kinds.push(key);
        }
        Ok(stream)
    }

    /// How many kinds the drift watches cover (one watch each).
    pub fn drift_watches(&self) -> usize {
        self.drift.watched_kinds()
    }

    fn start_kind_watch(&self, kind: Kind, field_manager: &str) -> Arc<KindWatch> {
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.watch_client.clone(), &kind.resource);
        let r = &kind.resource;
        let of_kind = ObjRef {
            group: r.group.clone(),
            version: r.version.clone(),
            kind: r.kind.clone(),
            namespace: None,
            name: String::new(),
        };
        let watch = Arc::new(KindWatch {
            kind,
            state: Mutex::new(KindState {
                tracker: DriftTracker::new(field_manager, of_kind),
                followers: Vec::new(),
            }),
            task: Mutex::new(None),
        });
        let events = watcher(api, watcher::Config::default().labels(NAME_LABEL))
            .default_backoff()
            .filter_map(|event| async move {
                event
                    .map_err(
                        |err| tracing::warn!(error = %err, "drift watch interrupted, retrying"),
                    )
                    .ok()
            });
        let observer = watch.clone();
        let task = tokio::spawn(async move {
            let mut events = Box::pin(events);
            while let Some(event) = events.next().await {
                observer.observe(metadata_only(event));
            }
        });
        *locked(&watch.task) = Some(task.abort_handle());
        watch
    }
}

fn metadata_only(
    event: watcher::Event<PartialObjectMeta<DynamicObject>>,
) -> watcher::Event<ObjectMeta> {
    match event {
        watcher::Event::Apply(o) => watcher::Event::Apply(o.metadata),
        watcher::Event::Delete(o) => watcher::Event::Delete(o.metadata),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(o) => watcher::Event::InitApply(o.metadata),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
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
