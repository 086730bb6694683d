//! Runs every kustomization and Helm release: on its interval, at once when
//! its source (or chart) has a new artifact, when a dependency becomes
//! ready, when a watch sees drift, or on request.
//!
//! # Design
//! One tokio task per kustomization and per release, woken through its own
//! [`Notify`] (keyed by [`unit_key`]). A kustomization's task runs
//! [`kustomization::reconcile`], then (re)starts a drift watch on the
//! inventory it returned, then sleeps until the requeue delay or a wake; a
//! release's task runs [`helmrelease::reconcile`] the same way: one loop,
//! `run_unit`, over what differs between the two (`Unit`). A router task
//! turns source updates and requests into wakes.
//!
//! # Guarantees
//! - One reconcile of a kustomization at a time; wakes that arrive during a
//!   run, or within [`MIN_GAP`] of its start, collapse into one more run;
//!   wakes from before a run are served by it.
//! - A failed run is retried with backoff from seconds up to the
//!   `retry_interval` (as sources are), and at once when the API server
//!   it could not reach answers again.
//! - Drift is debounced ([`DRIFT_QUIET`]) so a burst of edits is reverted
//!   by one apply.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::{AbortHandle, JoinSet};

use super::helmrelease::{self, ReleaseContext};
use super::kustomization::{self, Action, Context, OWNER_KIND};
use super::overlay::drift_ignore;
use super::scheduler::{next_delay, SourceUpdate};
use crate::apply::{debounce, DriftIgnore, Manager, ObjRef, Owner};
use crate::config::{Config, Dependency, DriftMode, HelmRelease, Kustomization, SourceRef};
use crate::helm::Helper;

/// How long a watch must be quiet before the drift it saw is reverted.
pub const DRIFT_QUIET: Duration = Duration::from_millis(100);
/// The least time between the starts of two runs of one kustomization:
/// whatever wakes it (drift, requests, new artifacts), it cannot spin.
pub const MIN_GAP: Duration = Duration::from_secs(1);
/// How often a kustomization whose run failed on an unreachable API server
/// asks whether it is back.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A request to reconcile a kustomization or a release now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// [`unit_key`]: a kustomization's name, or `helm_release/NAME`.
    pub unit: String,
}

/// How the runner names what it runs: a kustomization by its name (as
/// `depends_on` and the CLI always have), a release as `helm_release/NAME`.
pub fn unit_key(kind: &str, name: &str) -> String {
    match kind {
        "kustomization" => name.to_string(),
        _ => format!("{kind}/{name}"),
    }
}

type Wakers = Arc<BTreeMap<String, Arc<Notify>>>;

/// The running kustomization tasks.
pub struct Runner {
    requests: mpsc::Sender<Request>,
    tasks: JoinSet<()>,
}

impl Runner {
    /// A sender of immediate reconcile requests.
    pub fn requests(&self) -> mpsc::Sender<Request> {
        self.requests.clone()
    }

    /// Waits until every task has stopped (after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Starts one task per kustomization and release of `config`. They stop
/// when `shutdown` becomes `true`.
pub fn runner(
    config: Arc<Config>,
    ctx: Context,
    updates: broadcast::Receiver<SourceUpdate>,
    shutdown: watch::Receiver<bool>,
) -> Runner {
    let release_keys = config
        .helm_releases
        .keys()
        .map(|name| unit_key(helmrelease::KIND, name));
    let wakers: BTreeMap<String, Arc<Notify>> = config
        .kustomizations
        .keys()
        .cloned()
        .chain(release_keys)
        .map(|key| (key, Arc::new(Notify::new())))
        .collect();
    let wakers = Arc::new(wakers);
    let mut tasks = JoinSet::new();
    for k in config.kustomizations.values() {
        let unit = KustomizationUnit {
            k: k.clone(),
            config: config.clone(),
            ctx: ctx.clone(),
        };
        tasks.spawn(run_unit(unit, wakers.clone(), shutdown.clone()));
    }
    if !config.helm_releases.is_empty() {
        let rc = ReleaseContext {
            ctx: ctx.clone(),
            helper: Helper::at(&config.agent.helm_helper)
                .map_err(|_| config.agent.helm_helper.clone()),
            kubeconfig: config.agent.kubeconfig.clone(),
        };
        for release in config.helm_releases.values() {
            let unit = ReleaseUnit {
                release: release.clone(),
                config: config.clone(),
                rc: rc.clone(),
            };
            tasks.spawn(run_unit(unit, wakers.clone(), shutdown.clone()));
        }
    }
    let (requests, receiver) = mpsc::channel(32);
    tasks.spawn(route(config, wakers, updates, receiver, shutdown));
    Runner { requests, tasks }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Wakes kustomizations: those of a source with a new artifact, and those
/// named by a request.
async fn route(
    config: Arc<Config>,
    wakers: Wakers,
    mut updates: broadcast::Receiver<SourceUpdate>,
    mut requests: mpsc::Receiver<Request>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(update) => {
                    for k in config.kustomizations.values().filter(|k| k.source == update.source) {
                        wake(&wakers, &k.name);
                    }
                    for r in config.helm_releases.values().filter(|r| r.chart == update.source) {
                        wake(&wakers, &unit_key(helmrelease::KIND, &r.name));
                    }
                }
                // Missed updates: wake everyone, a reconcile is idempotent.
                Err(broadcast::error::RecvError::Lagged(_)) => wakers.values().for_each(|w| w.notify_one()),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            request = requests.recv() => match request {
                Some(request) => {
                    if !wake(&wakers, &request.unit) {
                        tracing::warn!(unit = %request.unit, "reconcile requested for something not configured");
                    }
                }
                None => return,
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

fn wake(wakers: &BTreeMap<String, Arc<Notify>>, name: &str) -> bool {
    match wakers.get(name) {
        Some(waker) => {
            waker.notify_one();
            true
        }
        None => false,
    }
}

/// What one task of the runner runs: a kustomization or a Helm release.
trait Unit: Send + Sync + 'static {
    /// Its [`unit_key`].
    fn key(&self) -> String;
    fn name(&self) -> &str;
    /// The owner kind of its objects (`kedge.dev/kind`).
    fn owner_kind(&self) -> &'static str;
    fn config(&self) -> &Config;
    fn ctx(&self) -> &Context;
    /// The source (or chart) whose first fetch its first run waits for.
    fn source(&self) -> &SourceRef;
    fn suspended(&self) -> bool;
    /// What its dependents name in `depends_on`.
    fn dependency(&self) -> Dependency;
    /// What its drift watch ignores; `None`: no drift watch.
    fn drift_ignore(&self) -> Option<DriftIgnore>;
    /// One run; `drifted` when its watch saw drift since the last one.
    fn reconcile(&self, drifted: bool) -> impl Future<Output = Action> + Send;
}

struct KustomizationUnit {
    k: Kustomization,
    config: Arc<Config>,
    ctx: Context,
}

impl Unit for KustomizationUnit {
    fn key(&self) -> String {
        self.k.name.clone()
    }
    fn name(&self) -> &str {
        &self.k.name
    }
    fn owner_kind(&self) -> &'static str {
        OWNER_KIND
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn ctx(&self) -> &Context {
        &self.ctx
    }
    fn source(&self) -> &SourceRef {
        &self.k.source
    }
    fn suspended(&self) -> bool {
        self.k.suspend
    }
    fn dependency(&self) -> Dependency {
        Dependency::Kustomization(self.k.name.clone())
    }
    fn drift_ignore(&self) -> Option<DriftIgnore> {
        if self.k.drift.mode == DriftMode::Off {
            return None;
        }
        drift_ignore(&self.k.drift.ignore)
            .map_err(|err| {
                tracing::warn!(kustomization = %self.k.name, "drift watch not started: drift.ignore: {err}");
            })
            .ok()
    }
    // A kustomization's run compares with the cluster anyway: it needs
    // no word of drift.
    async fn reconcile(&self, _drifted: bool) -> Action {
        kustomization::reconcile(&self.ctx, &self.config, &self.k).await
    }
}

struct ReleaseUnit {
    release: HelmRelease,
    config: Arc<Config>,
    rc: ReleaseContext,
}

impl Unit for ReleaseUnit {
    fn key(&self) -> String {
        unit_key(helmrelease::KIND, &self.release.name)
    }
    fn name(&self) -> &str {
        &self.release.name
    }
    fn owner_kind(&self) -> &'static str {
        helmrelease::OWNER_KIND
    }
    fn config(&self) -> &Config {
        &self.config
    }
    fn ctx(&self) -> &Context {
        &self.rc.ctx
    }
    fn source(&self) -> &SourceRef {
        &self.release.chart
    }
    fn suspended(&self) -> bool {
        self.release.suspend
    }
    fn dependency(&self) -> Dependency {
        Dependency::HelmRelease(self.release.name.clone())
    }
    // Rules that do not compile fail each run, which then watches nothing.
    fn drift_ignore(&self) -> Option<DriftIgnore> {
        helmrelease::drift_ignore(&self.release).ok()
    }
    async fn reconcile(&self, drifted: bool) -> Action {
        helmrelease::reconcile(&self.rc, &self.config, &self.release, drifted).await
    }
}

/// Runs `unit` until shutdown: a run, its drift watch (re)started on the
/// inventory the run returned, then a rest until the requeue delay or a wake.
async fn run_unit(unit: impl Unit, wakers: Wakers, mut shutdown: watch::Receiver<bool>) {
    let key = unit.key();
    let Some(own_wake) = wakers.get(&key).cloned() else {
        return;
    };
    let ignore = unit.drift_ignore().map(Arc::new);
    let mut drift = DriftWatch::new(unit.owner_kind());
    let mut pace = Pace::default();
    tokio::select! {
        _ = kustomization::first_fetch(unit.ctx(), unit.config(), unit.source()) => {}
        _ = stopped(&mut shutdown) => return,
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A wake that came before this run (a new artifact during the
        // first fetch, say) is served by it: the run reads the latest state.
        let _ = own_wake.notified().now_or_never();
        let drifted = drift.take_seen();
        let started = tokio::time::Instant::now();
        let action = tokio::select! {
            action = unit.reconcile(drifted) => action,
            _ = stopped(&mut shutdown) => break,
        };
        let ended = tokio::time::Instant::now();
        let failed = pace.ran(action.ready, unit.suspended());
        if action.ready {
            wake_dependents(unit.config(), &wakers, &unit.dependency());
        }
        if !unit.suspended() {
            match &ignore {
                Some(ignore) => tokio::select! {
                    () = drift.follow(unit.ctx(), unit.name(), &action.inventory, ignore.clone(), own_wake.clone()) => {}
                    _ = stopped(&mut shutdown) => break,
                },
                None => drift.stop(),
            }
        }
        let next = Next {
            started,
            ended,
            requeue_after: action.requeue_after,
            failed,
        };
        if !pace
            .rest(&key, next, &own_wake, &unit.ctx().manager, &mut shutdown)
            .await
        {
            break;
        }
    }
    drift.stop();
}

/// Wakes the kustomizations and releases that wait for `ready`.
fn wake_dependents(config: &Config, wakers: &Wakers, ready: &Dependency) {
    if let Dependency::Kustomization(name) = ready {
        for dependent in config
            .kustomizations
            .values()
            .filter(|d| d.depends_on.contains(name))
        {
            wake(wakers, &dependent.name);
        }
    }
    for dependent in config
        .helm_releases
        .values()
        .filter(|r| r.depends_on.contains(ready))
    {
        wake(wakers, &unit_key(helmrelease::KIND, &dependent.name));
    }
}

/// When a run started and ended, when it asked to run again, and whether
/// it failed.
struct Next {
    started: tokio::time::Instant,
    ended: tokio::time::Instant,
    requeue_after: Duration,
    failed: bool,
}

/// The pace of one task's runs: backoff after failures, at least
/// [`MIN_GAP`] apart, sooner on a wake or when the API server it could not
/// reach answers again.
#[derive(Default)]
struct Pace {
    failures: u32,
    server_down: bool,
}

impl Pace {
    /// Counts a run's outcome; returns whether it failed.
    fn ran(&mut self, ready: bool, suspended: bool) -> bool {
        let failed = !ready && !suspended;
        self.failures = if failed {
            self.failures.saturating_add(1)
        } else {
            0
        };
        self.server_down &= failed;
        failed
    }

    /// Waits until the next run of `unit` is due; `false` when shutdown
    /// came first.
    async fn rest(
        &mut self,
        unit: &str,
        next: Next,
        wake: &Notify,
        manager: &Manager,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        // Wakes until then collapse into the one run after it.
        tokio::select! {
            _ = tokio::time::sleep_until(next.started + MIN_GAP) => {}
            _ = stopped(shutdown) => return false,
        }
        let delay = next_delay(next.requeue_after, self.failures);
        tokio::select! {
            _ = tokio::time::sleep_until(next.ended + delay) => {}
            _ = wake.notified() => {}
            () = server_back(manager, next.failed, &mut self.server_down) => {
                tracing::info!(unit, "the API server answers again; retrying now");
            }
            _ = stopped(shutdown) => return false,
        }
        true
    }
}

/// After a failed run, resolves once the API server answers again having
/// not answered (`down` remembers that across runs), probing every
/// [`PROBE_EVERY`]; never when the run did not fail or the server answered
/// all along (the failure was something else).
async fn server_back(manager: &Manager, failed: bool, down: &mut bool) {
    if !failed {
        return std::future::pending().await;
    }
    loop {
        let reachable = manager.reachable().await;
        if reachable && *down {
            *down = false;
            return;
        }
        if reachable {
            return std::future::pending().await;
        }
        *down = true;
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The drift watch of one kustomization or release, restarted when its
/// inventory changes; for a kustomization none in drift mode `off`. Drift
/// wakes the owner, whose run reverts it or reports it.
struct DriftWatch {
    /// The owner kind of the objects watched (`kedge.dev/kind`).
    owner_kind: &'static str,
    watching: Vec<ObjRef>,
    task: Option<AbortHandle>,
    /// Set when the watch saw drift, until the next run takes it.
    seen: Arc<std::sync::atomic::AtomicBool>,
}

impl DriftWatch {
    fn new(owner_kind: &'static str) -> DriftWatch {
        DriftWatch {
            owner_kind,
            watching: Vec::new(),
            task: None,
            seen: Arc::default(),
        }
    }

    /// Whether drift was seen since the last call.
    fn take_seen(&self) -> bool {
        self.seen.swap(false, std::sync::atomic::Ordering::SeqCst)
    }

    async fn follow(
        &mut self,
        ctx: &Context,
        name: &str,
        inventory: &[ObjRef],
        ignore: Arc<DriftIgnore>,
        wake: Arc<Notify>,
    ) {
        if self.task.is_some() && self.watching == inventory {
            return;
        }
        self.watching = inventory.to_vec();
        if inventory.is_empty() {
            self.stop();
            return;
        }
        let owner = Owner::new(name, self.owner_kind);
        // The new follower registers before the old one leaves, so a kind
        // both follow keeps its watch (and its fingerprints) running.
        let followed = ctx
            .manager
            .drift_watch_ignoring(inventory, &owner, ignore)
            .await;
        self.stop();
        match followed {
            Ok(events) => {
                let name = name.to_string();
                let seen = self.seen.clone();
                let owner_kind = self.owner_kind;
                let metrics = ctx.observer.metrics.clone();
                let handle = tokio::spawn(async move {
                    let mut batches = Box::pin(debounce(events, DRIFT_QUIET));
                    while let Some(batch) = batches.next().await {
                        let objects: Vec<String> =
                            batch.iter().map(|e| e.object.to_string()).collect();
                        let kind = if owner_kind == OWNER_KIND {
                            "kustomization"
                        } else {
                            "helm_release"
                        };
                        metrics.drifted(kind, &name, objects.len());
                        let objects = objects.join(", ");
                        if owner_kind == OWNER_KIND {
                            tracing::info!(kustomization = %name, reason = "DriftDetected", "drift on {objects}");
                        } else {
                            tracing::info!(helmrelease = %name, reason = "DriftDetected", "drift on {objects}");
                        }
                        seen.store(true, std::sync::atomic::Ordering::SeqCst);
                        wake.notify_one();
                    }
                });
                self.task = Some(handle.abort_handle());
            }
            Err(err) => tracing::warn!(owner = %name, "drift watch not started: {err}"),
        }
    }

    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
