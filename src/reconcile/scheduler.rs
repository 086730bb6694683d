//! Runs every source on its own interval, with jittered exponential backoff
//! after failures, immediate runs on request, and a broadcast of new
//! artifacts for the reconcilers.
//!
//! # Design
//! One tokio task per source. A sync runs on the blocking pool (gix is
//! blocking) under the source's timeout; its outcome is written to the
//! state store exactly once, then the task sleeps until the next interval,
//! a [`Trigger`] or shutdown. A per-source lock keeps a fetch that
//! outlived its timeout from overlapping the next one.
//!
//! A source built from another one ([`Source::upstream`], e.g. a chart
//! from a Helm repository or a Git source) gets that one's current
//! artifact from the state store at each sync, and syncs again as soon as
//! that one announces a new artifact.
//!
//! Each sync first checks the recorded artifact against its sha256 and
//! rebuilds a damaged one from the local repository (no network needed),
//! then fetches; a fetch of the same revision rebuilds one that is still
//! damaged. A damaged artifact that neither could rebuild makes the source
//! not Ready (`ArtifactFailed`).
//!
//! # Guarantees
//! - The last good artifact stays recorded (and on disk) when a later sync
//!   fails.
//! - On shutdown an in-flight fetch is interrupted and given
//!   [`SHUTDOWN_GRACE`] to stop before the task returns.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinSet;

use crate::config::{Config, Source, SourceRef};
use crate::observe::Observer;
use crate::source::{self, bundle, Artifact, ArtifactStore, Limits, Restored, SyncOutcome};
use crate::state::{self, Event, Severity, SourceOutcome, Store};

/// How long an interrupted fetch may take to stop at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The first retry delay after a failure; it doubles with each further
/// failure, up to the source's interval.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);

/// A request to sync a source now, whatever its interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    Source(SourceRef),
}

/// Triggers for whichever scheduler runs now: the daemon replaces the
/// scheduler on a config change, the reconcilers keep this.
#[derive(Debug, Clone, Default)]
pub struct SourceTriggers(Arc<Mutex<Option<mpsc::Sender<Trigger>>>>);

impl SourceTriggers {
    /// Sends later triggers to `scheduler`.
    pub fn connect(&self, scheduler: &Scheduler) {
        *self.sender() = Some(scheduler.triggers());
    }

    /// Asks for a sync of `source` now; `false` when no scheduler took it.
    pub fn request(&self, source: &SourceRef) -> bool {
        self.sender()
            .as_ref()
            .is_some_and(|s| s.try_send(Trigger::Source(source.clone())).is_ok())
    }

    fn sender(&self) -> std::sync::MutexGuard<'_, Option<mpsc::Sender<Trigger>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What the blocking part of one sync did.
struct Synced {
    /// The check (and repair) of the recorded artifact before the fetch.
    restored: source::Result<Option<Restored>>,
    synced: source::Result<SyncOutcome>,
}

/// A source has a new current artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUpdate {
    pub source: SourceRef,
    pub artifact: Artifact,
}

/// What the scheduler shares with every source task.
struct Shared {
    state_dir: PathBuf,
    store: Arc<Mutex<Store>>,
    limits: Limits,
    updates: broadcast::Sender<SourceUpdate>,
    observer: Observer,
}

/// The running scheduler: send triggers, subscribe to updates, wait for it
/// to stop.
pub struct Scheduler {
    triggers: mpsc::Sender<Trigger>,
    updates: broadcast::Sender<SourceUpdate>,
    tasks: JoinSet<()>,
}

impl Scheduler {
    /// A sender for immediate sync requests (for the control socket and the
    /// reconcilers).
    pub fn triggers(&self) -> mpsc::Sender<Trigger> {
        self.triggers.clone()
    }

    /// A receiver of every new artifact from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SourceUpdate> {
        self.updates.subscribe()
    }

    /// Waits until every task has stopped (after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// A beat the trigger loop awaits every `period`: the daemon's proof for
/// systemd's watchdog that the scheduler still turns. A beat that never
/// completes stalls the loop (until shutdown), as a stuck loop would.
pub struct Heartbeat {
    pub period: Duration,
    pub beat: Box<dyn FnMut() -> futures::future::BoxFuture<'static, ()> + Send>,
}

/// Starts one task per source of `config` that is not suspended. They stop
/// when `shutdown` becomes `true`.
pub fn scheduler(
    config: &Config,
    store: Arc<Mutex<Store>>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> Scheduler {
    scheduler_with_heartbeat(config, store, limits, shutdown, None, Observer::default())
}

/// [`scheduler`], whose trigger loop also awaits `heartbeat`, and whose
/// syncs are reported to `observer`.
pub fn scheduler_with_heartbeat(
    config: &Config,
    store: Arc<Mutex<Store>>,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
    heartbeat: Option<Heartbeat>,
    observer: Observer,
) -> Scheduler {
    let (updates, _) = broadcast::channel(64);
    let shared = Arc::new(Shared {
        state_dir: config.agent.state_dir.clone(),
        store,
        limits,
        updates: updates.clone(),
        observer,
    });
    let mut tasks = JoinSet::new();
    let mut wakers = BTreeMap::new();
    for (source_ref, source) in &config.sources {
        if source.suspend() {
            tracing::info!(source = %source_ref, "source is suspended; not scheduled");
            continue;
        }
        let wake = Arc::new(Notify::new());
        wakers.insert(source_ref.clone(), wake.clone());
        tasks.spawn(run_source(
            source.clone(),
            shared.clone(),
            wake,
            shutdown.clone(),
        ));
    }
    let (triggers, receiver) = mpsc::channel(32);
    tasks.spawn(route_triggers(receiver, wakers, heartbeat, shutdown));
    Scheduler {
        triggers,
        updates,
        tasks,
    }
}

/// Resolves once shutdown is requested (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn route_triggers(
    mut triggers: mpsc::Receiver<Trigger>,
    wakers: BTreeMap<SourceRef, Arc<Notify>>,
    mut heartbeat: Option<Heartbeat>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = heartbeat.as_ref().map(|h| {
        let mut ticks = tokio::time::interval(h.period.max(Duration::from_millis(10)));
        // A late beat is not made up by a burst: systemd only needs the next one.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    loop {
        tokio::select! {
            _ = next_tick(&mut ticks) => {
                if let Some(heartbeat) = heartbeat.as_mut() {
                    tokio::select! {
                        _ = (heartbeat.beat)() => {}
                        _ = stopped(&mut shutdown) => return,
                    }
                }
            }
            trigger = triggers.recv() => match trigger {
                Some(Trigger::Source(source)) => match wakers.get(&source) {
                    Some(wake) => wake.notify_one(),
                    None => tracing::warn!(source = %source, "trigger for a source that is not scheduled"),
                },
                None => return,
            },
            _ = stopped(&mut shutdown) => return,
        }
    }
}

async fn next_tick(ticks: &mut Option<tokio::time::Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The delay before the next sync after `failures` consecutive failures
/// (0: the interval), with ±20% jitter on retries so that sources failing
/// together do not retry together.
pub fn next_delay(interval: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return interval;
    }
    let exponent = failures.saturating_sub(1).min(16);
    let backoff = FIRST_RETRY.saturating_mul(1u32 << exponent).min(interval);
    backoff.mul_f64(0.8 + 0.4 * fastrand::f64())
}

async fn run_source(
    source: Source,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let fetch_lock = Arc::new(Mutex::new(()));
    let mut failures: u32 = 0;
    let upstream = source.upstream();
    let mut upstream_updates = upstream.as_ref().map(|_| shared.updates.subscribe());
    loop {
        if *shutdown.borrow() {
            return;
        }
        match sync_once(&source, &shared, &fetch_lock, &mut shutdown).await {
            Some(true) => failures = 0,
            Some(false) => failures = failures.saturating_add(1),
            None => return,
        }
        let delay = next_delay(source.interval(), failures);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = wake.notified() => tracing::debug!(source = %source.source_ref(), "sync requested"),
            _ = upstream_changed(&mut upstream_updates, upstream.as_ref()) => {
                tracing::debug!(source = %source.source_ref(), "upstream has a new artifact");
            }
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Resolves when `upstream` announces a new artifact (or announcements
/// were missed); never without an upstream.
async fn upstream_changed(
    updates: &mut Option<broadcast::Receiver<SourceUpdate>>,
    upstream: Option<&SourceRef>,
) {
    let (Some(updates), Some(upstream)) = (updates.as_mut(), upstream) else {
        return std::future::pending().await;
    };
    loop {
        match updates.recv().await {
            Ok(update) if &update.source == upstream => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return,
            Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
        }
    }
}

/// One sync, recorded. `Some(success)`, or `None` when shutdown came first.
async fn sync_once(
    source: &Source,
    shared: &Arc<Shared>,
    fetch_lock: &Arc<Mutex<()>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<bool> {
    let previous = previous_status(shared, source);
    let upstream = source.upstream().and_then(|upstream| {
        let status = read_status(shared, &upstream)?;
        source::sync::recorded_artifact(&status)
    });
    let imported = imported_artifact(shared, source);
    let interrupt = Arc::new(AtomicBool::new(false));
    let mut task = tokio::task::spawn_blocking({
        let (source, shared, lock, interrupt) = (
            source.clone(),
            shared.clone(),
            fetch_lock.clone(),
            interrupt.clone(),
        );
        move || {
            // A fetch that outlived its timeout may still hold the repository: never queue behind it.
            let _serialised = match lock.try_lock() {
                Ok(guard) => guard,
                Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => {
                    return failed_sync(stalled(
                        &source,
                        "the previous fetch, which timed out, has not stopped yet".to_string(),
                    ))
                }
            };
            let restored = match &previous {
                Some(previous) => {
                    source::restore(&source, &shared.state_dir, previous, shared.limits)
                }
                None => Ok(None),
            };
            let synced = source::sync(
                &source,
                &shared.state_dir,
                previous.as_ref(),
                upstream.as_ref(),
                imported.as_ref(),
                shared.limits,
                &interrupt,
            );
            Synced { restored, synced }
        }
    });
    let timeout = tokio::time::sleep(source.timeout());
    let started = tokio::time::Instant::now();
    let result = tokio::select! {
        joined = &mut task => match joined {
            Ok(result) => result,
            Err(err) => failed_sync(stalled(source, format!("the fetch task failed: {err}"))),
        },
        _ = timeout => {
            interrupt.store(true, Ordering::Relaxed);
            failed_sync(source::Error::Timeout {
                kind: source.kind(),
                source_name: source.name().to_string(),
                url: source::display_url(source),
                seconds: source.timeout().as_secs(),
            })
        }
        _ = stopped(shutdown) => {
            interrupt.store(true, Ordering::Relaxed);
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
            return None;
        }
    };
    let success = result.synced.is_ok();
    let (kind, name, took) = (source.kind().as_str(), source.name(), started.elapsed());
    shared.observer.metrics.fetched(kind, name, took);
    shared.observer.metrics.reconciled(kind, name, took);
    if let Err(err) = record(source, shared, result) {
        tracing::error!(source = %source.source_ref(), error = %err, "recording source outcome");
    }
    Some(success)
}

fn stalled(source: &Source, message: String) -> source::Error {
    source::Error::Stalled {
        kind: source.kind(),
        source_name: source.name().to_string(),
        url: source::display_url(source),
        message,
    }
}

fn failed_sync(err: source::Error) -> Synced {
    Synced {
        restored: Ok(None),
        synced: Err(err),
    }
}

fn previous_status(shared: &Shared, source: &Source) -> Option<state::SourceStatus> {
    read_status(shared, &source.source_ref())
}

/// What the last imported bundle gave `source`, if any.
fn imported_artifact(shared: &Shared, source: &Source) -> Option<bundle::Imported> {
    let store = match shared.store.lock() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    };
    let row = store
        .bundle_artifact(source.kind().as_str(), source.name())
        .map_err(|err| tracing::error!(source = %source.source_ref(), error = %err, "reading bundle state"))
        .ok()??;
    Some(bundle::Imported {
        artifact: Artifact {
            revision: row.revision,
            digest: row.digest,
            path: row.path,
        },
        sequence: u64::try_from(row.sequence).unwrap_or(0),
        imported_at: row.imported_at,
    })
}

fn read_status(shared: &Shared, source: &SourceRef) -> Option<state::SourceStatus> {
    let store = match shared.store.lock() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    };
    match store.source_status(source.kind.as_str(), &source.name) {
        Ok(status) => status,
        Err(err) => {
            tracing::error!(source = %source, error = %err, "reading source state");
            None
        }
    }
}

/// Writes the outcome to the state store, logs it, collects old artifacts
/// and announces a new (or restored) one.
fn record(source: &Source, shared: &Shared, result: Synced) -> Result<(), state::Error> {
    let url = source::display_url(source);
    let kind = source.kind().as_str();
    let now = state::now_millis();
    let store = match shared.store.lock() {
        Ok(store) => store,
        Err(poisoned) => poisoned.into_inner(),
    };
    let alerts = &shared.observer.alerts;
    let before = alerts.before(&store, kind, source.name());
    let unrepaired = match result.restored {
        Ok(Some(restored)) => {
            record_restored(source, shared, &store, &restored)?;
            None
        }
        Ok(None) => None,
        Err(err) => {
            tracing::warn!(source = %source.source_ref(), reason = err.reason(), error = %err, "damaged artifact not restored; a fetch may rebuild it");
            Some(err)
        }
    };
    let message = match result.synced {
        Ok(outcome) => {
            let artifact = outcome.artifact();
            let new_artifact = matches!(outcome, SyncOutcome::NewArtifact { .. });
            store.record_source_outcome(
                kind,
                source.name(),
                &url,
                now,
                SourceOutcome::Ready {
                    revision: &artifact.revision,
                    digest: &artifact.digest,
                    path: &artifact.path,
                    inputs: outcome.inputs(),
                    new_artifact,
                },
            )?;
            if new_artifact {
                announce(source, shared, &store, artifact)?;
            } else {
                tracing::debug!(source = %source.source_ref(), revision = %artifact.revision, "no change");
            }
            stored_message(artifact)
        }
        Err(err) => {
            // A damaged artifact is the worse news: the kustomizations cannot build.
            let (reason, message) = match &unrepaired {
                Some(damaged) => (damaged.reason(), format!("{damaged}; {err}")),
                None => (err.reason(), err.to_string()),
            };
            tracing::warn!(source = %source.source_ref(), reason, error = %message, "sync failed");
            store.record_source_outcome(
                kind,
                source.name(),
                &url,
                now,
                SourceOutcome::Failed {
                    reason,
                    message: &message,
                },
            )?;
            store.record_event(&Event::new(
                kind,
                source.name(),
                Severity::Error,
                reason,
                &message,
            ))?;
            message
        }
    };
    alerts.recorded(&store, before, kind, source.name(), &message);
    Ok(())
}

/// Logs and records a damaged artifact rebuilt from the local repository,
/// and wakes the kustomizations that may have failed on it.
fn record_restored(
    source: &Source,
    shared: &Shared,
    store: &Store,
    restored: &Restored,
) -> Result<(), state::Error> {
    let artifact = &restored.artifact;
    let message = format!(
        "artifact {} {}; rebuilt it from the local repository at {}",
        artifact.path.display(),
        restored.damage,
        artifact.revision
    );
    tracing::warn!(source = %source.source_ref(), reason = "ArtifactRestored", "{message}");
    store.record_event(&Event::new(
        source.kind().as_str(),
        source.name(),
        Severity::Error,
        "ArtifactRestored",
        &message,
    ))?;
    let _ = shared.updates.send(SourceUpdate {
        source: source.source_ref(),
        artifact: artifact.clone(),
    });
    Ok(())
}

/// The event message of a new artifact.
fn stored_message(artifact: &Artifact) -> String {
    format!("stored artifact for revision {}", artifact.revision)
}

fn announce(
    source: &Source,
    shared: &Shared,
    store: &Store,
    artifact: &Artifact,
) -> Result<(), state::Error> {
    tracing::info!(source = %source.source_ref(), revision = %artifact.revision, digest = %artifact.digest, "stored new artifact");
    let message = stored_message(artifact);
    store.record_event(&Event::new(
        source.kind().as_str(),
        source.name(),
        Severity::Info,
        "NewArtifact",
        &message,
    ))?;
    if let Err(err) = ArtifactStore::new(&shared.state_dir).collect_garbage(
        source.kind().as_str(),
        source.name(),
        &artifact.path,
    ) {
        tracing::warn!(source = %source.source_ref(), error = %err, "collecting old artifacts");
    }
    // Nobody listening is fine: reconcilers read the latest artifact from the store when they start.
    let _ = shared.updates.send(SourceUpdate {
        source: source.source_ref(),
        artifact: artifact.clone(),
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_retry_and_stops_at_the_interval() {
        let interval = Duration::from_secs(60);
        assert_eq!(next_delay(interval, 0), interval);
        for (failures, expected) in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (40, 60.0)] {
            let delay = next_delay(interval, failures).as_secs_f64();
            assert!(
                delay >= expected * 0.8 && delay <= expected * 1.2,
                "{failures} failures: {delay}s, expected about {expected}s"
            );
        }
    }
}
