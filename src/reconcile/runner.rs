//! Runs every kustomization and Helm release: on its interval, at once when
//! its source (or chart) has a new artifact, when a dependency becomes
//! ready, when a watch sees drift, or on request.
//!
//! # Design
//! One tokio task per kustomization and per release, woken through its own
//! [`Notify`] (keyed by [`unit_key`]). A kustomization's task runs
//! [`kustomization::reconcile`], then (re)starts a drift watch on the
//! inventory it returned, then sleeps until the requeue delay or a wake; a
//! release's task runs [`helmrelease::reconcile`] the same way. A router
//! task turns source updates and requests into wakes.
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
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::{AbortHandle, JoinSet};

use super::helmrelease::{self, ReleaseContext};
use super::kustomization::{self, Context, OWNER_KIND};
use super::overlay::drift_ignore;
use super::scheduler::{next_delay, SourceUpdate};
use crate::apply::{debounce, DriftIgnore, Manager, ObjRef, Owner};
use crate::config::{Config, Dependency, DriftMode, Kustomization};
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

/// Starts one task per kustomization of `config`. They stop when
/// `shutdown` becomes `true`.
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
    for name in config.kustomizations.keys() {
        tasks.spawn(run_kustomization(
            name.clone(),
            config.clone(),
            ctx.clone(),
            wakers.clone(),
            shutdown.clone(),
        ));
    }
    if !config.helm_releases.is_empty() {
        let rc = ReleaseContext {
            ctx: ctx.clone(),
            helper: Helper::at(&config.agent.helm_helper)
                .map_err(|_| config.agent.helm_helper.clone()),
            kubeconfig: config.agent.kubeconfig.clone(),
        };
        for name in config.helm_releases.keys() {
            tasks.spawn(run_release(
                name.clone(),
                config.clone(),
                rc.clone(),
                wakers.clone(),
                shutdown.clone(),
            ));
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

async fn run_kustomization(
    name: String,
    config: Arc<Config>,
    ctx: Context,
    wakers: Wakers,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(k) = config.kustomizations.get(&name) else {
        return;
    };
    let Some(own_wake) = wakers.get(&name).cloned() else {
        return;
    };
    let mut drift = DriftWatch::new(OWNER_KIND);
    let mut pace = Pace::default();
    tokio::select! {
        _ = kustomization::first_fetch(&ctx, &config, &k.source) => {}
        _ = stopped(&mut shutdown) => return,
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        // A wake that came before this run (a new artifact during the
        // first fetch, say) is served by it: the run reads the latest state.
        let _ = own_wake.notified().now_or_never();
        let started = tokio::time::Instant::now();
        let action = tokio::select! {
            action = kustomization::reconcile(&ctx, &config, k) => action,
            _ = stopped(&mut shutdown) => break,
        };
        let ended = tokio::time::Instant::now();
        let failed = pace.ran(action.ready, k.suspend);
        if action.ready {
            wake_dependents(&config, &wakers, &Dependency::Kustomization(name.clone()));
        }
        if !k.suspend {
            tokio::select! {
                () = drift.follow_kustomization(&ctx, k, &action.inventory, own_wake.clone()) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        let next = Next {
            started,
            ended,
            requeue_after: action.requeue_after,
            failed,
        };
        if !pace
            .rest(&name, next, &own_wake, &ctx.manager, &mut shutdown)
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

async fn run_release(
    name: String,
    config: Arc<Config>,
    rc: ReleaseContext,
    wakers: Wakers,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(release) = config.helm_releases.get(&name) else {
        return;
    };
    let Some(own_wake) = wakers.get(&unit_key(helmrelease::KIND, &name)).cloned() else {
        return;
    };
    let mut pace = Pace::default();
    let mut drift = DriftWatch::new(helmrelease::OWNER_KIND);
    tokio::select! {
        _ = kustomization::first_fetch(&rc.ctx, &config, &release.chart) => {}
        _ = stopped(&mut shutdown) => return,
    }
    loop {
        if *shutdown.borrow() {
            break;
        }
        let _ = own_wake.notified().now_or_never();
        let drifted = drift.take_seen();
        let started = tokio::time::Instant::now();
        let action = tokio::select! {
            action = helmrelease::reconcile(&rc, &config, release, drifted) => action,
            _ = stopped(&mut shutdown) => break,
        };
        let ended = tokio::time::Instant::now();
        let failed = pace.ran(action.ready, release.suspend);
        if action.ready {
            wake_dependents(&config, &wakers, &Dependency::HelmRelease(name.clone()));
        }
        if !release.suspend {
            // Rules that do not compile fail the run, which then watches nothing.
            let ignore = helmrelease::drift_ignore(release).unwrap_or_default();
            tokio::select! {
                () = drift.follow(&rc.ctx, &name, &action.inventory, ignore, own_wake.clone()) => {}
                _ = stopped(&mut shutdown) => break,
            }
        }
        let next = Next {
            started,
            ended,
            requeue_after: action.requeue_after,
            failed,
        };
        let unit = unit_key(helmrelease::KIND, &name);
        if !pace
            .rest(&unit, next, &own_wake, &rc.ctx.manager, &mut shutdown)
            .await
        {
            break;
        }
    }
    drift.stop();
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

    /// A kustomization's watch: its mode and ignore rules.
    async fn follow_kustomization(
        &mut self,
        ctx: &Context,
        k: &Kustomization,
        inventory: &[ObjRef],
        wake: Arc<Notify>,
    ) {
        if k.drift.mode == DriftMode::Off {
            self.watching = inventory.to_vec();
            self.stop();
            return;
        }
        match drift_ignore(&k.drift.ignore) {
            Ok(ignore) => self.follow(ctx, &k.name, inventory, ignore, wake).await,
            Err(err) => {
                tracing::warn!(kustomization = %k.name, "drift watch not started: drift.ignore: {err}");
            }
        }
    }

    async fn follow(
        &mut self,
        ctx: &Context,
        name: &str,
        inventory: &[ObjRef],
        ignore: DriftIgnore,
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
            .drift_watch_ignoring(inventory, &owner, Arc::new(ignore))
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
