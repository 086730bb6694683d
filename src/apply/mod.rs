//! Talks to the cluster: discovery, server-side apply, dry-run diff,
//! inventory, prune, health and drift watches. Knows nothing of Git or of
//! kustomizations: it takes manifests (`serde_json::Value`, as the
//! kustomize engine returns them) and an [`Owner`], and answers with a
//! [`ChangeSet`].
//!
//! # Design
//! One [`Manager`] per cluster holds the client and the discovery cache;
//! its verbs live one per file, like Flux's `ssa.ResourceManager`:
//!
//! | verb | file | what |
//! |---|---|---|
//! | [`Manager::apply`] | `ssa.rs` | validate by server dry-run, then server-side apply stage by stage |
//! | [`Manager::dry_run_diff`] | `dry_run.rs` | what an apply would change, without changing it |
//! | [`Manager::prune`] | `prune.rs` | delete stale objects that are still ours |
//! | [`Manager::wait`] | `health.rs` | wait until objects are Current (kstatus rules in `status.rs`) |
//! | [`Manager::drift_watch`] | `watch.rs` | a stream of changes to our objects by anyone else (one watch per kind for all owners; `drift.rs` judges) |
//! | [`Manager::owned`] | `owned.rs` | every object labelled by an owner kind, without an inventory |
//!
//! The decisions are pure functions over data, unit-tested without a
//! cluster: [`order::order`] and [`order::stages`] (one [`order::APPLY_ORDER`]
//! table), [`inventory::diff`] / [`inventory::merge`], [`status::evaluate`].
//!
//! # How a reconciler uses it
//! ```text
//! let manager = Manager::new(client);                  // once per daemon, cloned freely
//! let owner = Owner::new("apps", "Kustomization");     // kustomization name and kind
//! let plan = manager.plan(objects, &owner).await?;     // nothing written yet
//! let old = inventory::merge(old, &plan.objects());     // store it BEFORE applying (write-ahead)
//! let changes = manager.apply_plan(plan, &ApplyOptions::default()).await?;
//! //   on Err: record the failure; do NOT prune; the widened inventory stays
//! let new = inventory::from_changeset(&changes);
//! let stale = inventory::diff(&old, &new);
//! let pruned = manager.prune(&stale, &owner, &PruneOptions::default()).await;
//! let keep = inventory::merge(new, &pruned.survivors()); // store per revision (ObjRef::to_id)
//! manager.wait(&keep, timeout).await?;                  // when `wait` / health checks
//! // drift: (re)start after each successful apply, feed batches to the scheduler
//! let batches = debounce(manager.drift_watch(&keep, &owner).await?, Duration::from_millis(50));
//! ```
//! A kustomization removed from the config: `manager.prune(&its_inventory,
//! &owner, ..)` unless its deletion policy says orphan.
//!
//! # Current limitations
//! - Objects are applied with `force` (conflicts with other managers are
//!   taken over, like Flux); there is no per-object opt-out yet.
//! - Health is polled (every 250 ms), not watched.

// Errors carry the ObjRef they are about, which makes them larger than
// clippy likes; they are built once per failed object, never in a hot loop.
#![allow(clippy::result_large_err)]

pub mod changeset;
pub mod discovery;
mod drift;
pub mod dry_run;
pub mod health;
pub mod ignore;
pub mod inventory;
mod manifest;
mod memo;
pub mod objref;
pub mod order;
pub mod owned;
pub mod policy;
pub mod prune;
pub mod ssa;
pub mod status;
pub mod watch;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::DynamicObject;
use kube::{Api, Client};

pub use changeset::{Action, Change, ChangeSet};
pub use discovery::{DiscoveryError, Kind, KindCache};
pub use dry_run::{DiffKind, ObjectDiff};
pub use health::HealthError;
pub use ignore::{DriftIgnore, IgnoreError, IgnoreRule, ObjectSelector};
pub use objref::{ObjRef, ObjRefError};
pub use order::{order, APPLY_ORDER};
pub use owned::Owned;
pub use policy::{ApplyPolicy, Policy};
pub use prune::{PruneOptions, PruneResult, SkipReason};
pub use ssa::{ApplyError, ApplyOptions, ObjectFailure, Plan};
pub use status::{evaluate, Status};
pub use watch::{debounce, DriftCause, DriftEvent, DriftStream, WatchError};

/// Label naming the owner (the kustomization's name) on every applied object.
pub const NAME_LABEL: &str = "kedge.dev/name";
/// Label naming the owner's kind (`Kustomization`) on every applied object.
pub const KIND_LABEL: &str = "kedge.dev/kind";

/// Who applies: the field manager for server-side apply, and the name and
/// kind written as labels ([`NAME_LABEL`], [`KIND_LABEL`]) on every object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub field_manager: String,
    pub name: String,
    pub kind: String,
}

impl Owner {
    /// An owner with kedge's field manager, `kedge`.
    pub fn new(name: &str, kind: &str) -> Owner {
        Owner {
            field_manager: "kedge".to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
        }
    }

    /// The labels every object of this owner carries.
    pub fn labels(&self) -> [(&'static str, &str); 2] {
        [(NAME_LABEL, &self.name), (KIND_LABEL, &self.kind)]
    }

    /// `kedge.dev/name=<name>,kedge.dev/kind=<kind>`, to list or watch our objects.
    pub fn label_selector(&self) -> String {
        format!("{NAME_LABEL}={},{KIND_LABEL}={}", self.name, self.kind)
    }

    /// Whether an object with these labels is ours.
    pub fn owns(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let labels = labels.cloned().unwrap_or_default();
        self.labels()
            .iter()
            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// How long connecting to the API server may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the API server may stay silent while a request waits for its
/// response (or sending a request may stall): every request but a watch
/// has this deadline, so a frozen server fails a request instead of
/// holding it forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// The client and the discovery cache. Cheap to clone; clones share the cache.
#[derive(Clone)]
pub struct Manager {
    client: Client,
    /// For watches, whose responses are silent for minutes by design
    /// (kube's watcher has an idle timeout of its own).
    watch_client: Client,
    kinds: Arc<KindCache>,
    memo: Arc<memo::Memo>,
    drift: Arc<watch::DriftHub>,
    /// Requests in flight for the whole Manager (see [`MAX_IN_FLIGHT`]).
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Sets being applied at once (see [`MAX_SETS_IN_FLIGHT`]).
    sets: Arc<tokio::sync::Semaphore>,
}

/// Requests in flight at once for the whole agent, whatever the number of
/// kustomizations reconciling: the client keeps one pooled connection (and
/// its TLS buffers) per request in flight, so this also bounds connections.
/// Without it, 200 kustomizations starting together held some 2,700
/// connections to the API server and 200 MiB.
pub const MAX_IN_FLIGHT: usize = 32;

/// Sets (kustomizations) built, planned and applied at once for the whole
/// agent: each holds its manifests, plan and responses in memory until it
/// is applied, so 200 kustomizations starting together would hold 200 sets
/// (and leave the allocator fragmented at that peak) while they queue for
/// [`MAX_IN_FLIGHT`]. A few sets keep the request pool busy.
pub const MAX_SETS_IN_FLIGHT: usize = 4;

/// A turn to build and apply one set: see [`Manager::set_turn`].
pub struct SetTurn {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Manager {
    /// A manager whose requests and watches go through `client` as it is.
    pub fn new(client: Client) -> Manager {
        Manager::with_clients(client.clone(), client, "the API server")
    }

    /// A manager for the cluster of `config` whose every request has a
    /// deadline ([`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`]) and whose errors
    /// name the API server by its URL; nothing is sent to the cluster yet.
    pub fn with_deadlines(mut config: kube::Config) -> Result<Manager, kube::Error> {
        let server = config.cluster_url.to_string();
        config.connect_timeout = Some(CONNECT_TIMEOUT);
        config.write_timeout = Some(REQUEST_TIMEOUT);
        let watch_client = Client::try_from(config.clone())?;
        config.read_timeout = Some(REQUEST_TIMEOUT);
        // The deadline counts from each request, not from when its pooled
        // connection went idle.
        config.reset_reader_on_write = true;
        Ok(Manager::with_clients(
            Client::try_from(config)?,
            watch_client,
            &server,
        ))
    }

    fn with_clients(client: Client, watch_client: Client, server: &str) -> Manager {
        Manager {
            kinds: Arc::new(KindCache::new(client.clone(), server)),
            memo: Arc::new(memo::Memo::default()),
            drift: Arc::default(),
            in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)),
            sets: Arc::new(tokio::sync::Semaphore::new(MAX_SETS_IN_FLIGHT)),
            client,
            watch_client,
        }
    }

    /// Whether the API server answers (its version) within [`CONNECT_TIMEOUT`].
    pub async fn reachable(&self) -> bool {
        matches!(
            tokio::time::timeout(CONNECT_TIMEOUT, self.client.apiserver_version()).await,
            Ok(Ok(_))
        )
    }

    /// Waits for a turn to build and apply a set, one of
    /// [`MAX_SETS_IN_FLIGHT`] (first come, first served); the turn ends
    /// when the returned value is dropped.
    pub async fn set_turn(&self) -> SetTurn {
        // Never closed, so a permit always comes.
        SetTurn {
            _permit: self.sets.clone().acquire_owned().await.ok(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn kinds(&self) -> &KindCache {
        &self.kinds
    }

    /// [`bounded`] for one call, within the Manager-wide [`MAX_IN_FLIGHT`].
    async fn bounded<F: std::future::Future>(
        &self,
        futures: Vec<F>,
        limit: usize,
    ) -> Vec<F::Output> {
        let limited = futures
            .into_iter()
            .map(|future| {
                let in_flight = self.in_flight.clone();
                async move {
                    // Never closed, so a permit always comes.
                    let _permit = in_flight.acquire_owned().await.ok();
                    future.await
                }
            })
            .collect();
        bounded(limited, limit).await
    }

    /// The API for one object of `kind`, in its namespace when it has one.
    fn api(&self, kind: &Kind, object: &ObjRef) -> Api<DynamicObject> {
        match (&object.namespace, kind.namespaced) {
            (Some(ns), true) => Api::namespaced_with(self.client.clone(), ns, &kind.resource),
            _ => Api::all_with(self.client.clone(), &kind.resource),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_keeps_input_order_whatever_the_finishing_order() {
        let delays = [30u64, 0, 20, 10];
        let futures = delays
            .iter()
            .map(|d| async move {
                tokio::time::sleep(std::time::Duration::from_millis(*d)).await;
                *d
            })
            .collect();
        assert_eq!(bounded(futures, 2).await, delays);
    }

    #[tokio::test]
    async fn a_set_waits_for_its_turn_while_all_turns_are_taken() {
        use futures::FutureExt;
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let manager = Manager::new(Client::try_from(config).expect("client"));
        let mut turns = Vec::new();
        for _ in 0..MAX_SETS_IN_FLIGHT {
            turns.push(manager.set_turn().await);
        }
        assert!(manager.set_turn().now_or_never().is_none());
        turns.pop();
        assert!(manager.set_turn().now_or_never().is_some());
    }

    #[test]
    fn an_owner_owns_objects_with_both_of_its_labels_only() {
        let owner = Owner::new("apps", "Kustomization");
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>()
        };
        let ours = labels(&[
            (NAME_LABEL, "apps"),
            (KIND_LABEL, "Kustomization"),
            ("x", "y"),
        ]);
        let other_name = labels(&[(NAME_LABEL, "infra"), (KIND_LABEL, "Kustomization")]);
        let name_only = labels(&[(NAME_LABEL, "apps")]);
        assert!(owner.owns(Some(&ours)));
        assert!(!owner.owns(Some(&other_name)));
        assert!(!owner.owns(Some(&name_only)));
        assert!(!owner.owns(None));
    }

    #[test]
    fn the_label_selector_names_both_labels() {
        assert_eq!(
            Owner::new("apps", "Kustomization").label_selector(),
            "kedge.dev/name=apps,kedge.dev/kind=Kustomization"
        );
    }
}

/// Runs `futures` with at most `limit` in flight; results in input order.
/// Unordered inside, so one slow request does not hold the window (as
/// `buffered` would). The futures are made before streaming them: a stream
/// that maps with a closure borrowing its input makes the caller's future
/// not `Send` (rust-lang/rust#102211).
async fn bounded<F: std::future::Future>(futures: Vec<F>, limit: usize) -> Vec<F::Output> {
    use futures::stream::{self, StreamExt};
    let indexed = futures
        .into_iter()
        .enumerate()
        .map(|(i, f)| async move { (i, f.await) });
    let mut done: Vec<(usize, F::Output)> = stream::iter(indexed)
        .buffer_unordered(limit.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, output)| output).collect()
}

/// The verbs' futures are `Send`, so a reconciler can run them in
/// `tokio::spawn`; this fails to compile when one is not.
#[cfg(test)]
#[allow(dead_code)]
mod send_check {
    use super::*;

    fn is_send<T: Send>(_: T) {}

    async fn verbs_are_send(manager: &Manager, owner: &Owner, refs: &[ObjRef]) {
        is_send(manager.apply(Vec::new(), owner, &ApplyOptions::default()));
        is_send(manager.dry_run_diff(Vec::new(), owner, &DriftIgnore::default()));
        is_send(manager.prune(refs, owner, &PruneOptions::default()));
        is_send(manager.wait(refs, std::time::Duration::ZERO));
        is_send(manager.drift_watch(refs, owner));
        is_send(manager.owned("Kustomization"));
    }
}
