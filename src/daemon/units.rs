//! The running units of the daemon: the source scheduler and the
//! kustomization runner, started from a config and restarted when a reload
//! or a suspension changes what they run.
//!
//! # Design
//! The config the units run is the file's config with the suspensions made
//! from the CLI laid over it ([`effective`]), so `kedge suspend` is a config
//! change like any other. A change is applied as a diff: unchanged config
//! restarts nothing; a change of sources restarts only the scheduler; a
//! change of kustomizations only the runner. The runner listens to a relay
//! of the scheduler's updates that outlives any one scheduler. State is
//! kept throughout: a restarted unit resumes from its last recorded outcome
//! and artifact.
//!
//! A kustomization that leaves the config is the one destructive thing an
//! edit can do, so its objects are not deleted at once: it is marked
//! [`REMOVAL_PENDING`](crate::state::REMOVAL_PENDING) and removed only once
//! the file has stayed unchanged for `[agent] removal_grace_period`, unless
//! SIGHUP or a reconcile request for it confirms the removal sooner. A
//! file caught half-written by a save thus deletes nothing. Removals run
//! as tasks of their own (the control socket keeps answering) and are
//! cancelled when the daemon stops: none starts after shutdown has begun.
//!
//! # Current limitations
//! The restart is per kind, not per source or kustomization: changing one
//! kustomization restarts (and so reconciles again) every kustomization,
//! and changing one source fetches every source again.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{diff, Config, ConfigDiff, HelmRelease, Kustomization, Source, SourceRef};
use crate::helm::Helper;
use crate::observe::{Metrics, Observer};
use crate::reconcile::helmrelease;
use crate::reconcile::kustomization::{self, lock, Context};
use crate::reconcile::scheduler::{scheduler_with_heartbeat, Heartbeat};
use crate::reconcile::unpack::Unpacker;
use crate::reconcile::{runner, Request, Runner, Scheduler, SourceTriggers, SourceUpdate, Trigger};
use crate::source::Limits;
use crate::state::{self, Store};

use super::Error;

/// How a release waiting for removal is named among the kustomizations.
pub const RELEASE_PREFIX: &str = "helm_release/";

/// Makes the scheduler's heartbeat, once per scheduler started.
pub type HeartbeatFactory = Box<dyn Fn() -> Heartbeat + Send>;

struct Running<T> {
    unit: T,
    stop: watch::Sender<bool>,
}

/// The scheduler, the runner (once there is a kustomization) and the
/// config they run.
pub struct Units {
    file_config: Config,
    config: Arc<Config>,
    store: Arc<Mutex<Store>>,
    heartbeat: HeartbeatFactory,
    scheduler: Option<Running<Scheduler>>,
    runner: Option<Running<Runner>>,
    /// Every new artifact of whichever scheduler runs, for the runner.
    updates: broadcast::Sender<SourceUpdate>,
    /// Triggers from the reconcilers to whichever scheduler runs.
    source_triggers: SourceTriggers,
    ctx: Option<Context>,
    /// The kubeconfig file as `ctx`'s cluster connection read it.
    kubeconfig: Option<Vec<u8>>,
    /// The config file, re-read before a removal is acted on.
    config_path: PathBuf,
    pending: Option<PendingRemovals>,
    removals: JoinSet<()>,
    /// When these units first started (milliseconds since the epoch).
    started_at: i64,
    /// Whether the state database held nothing when they started.
    state_was_empty: bool,
    observer: Observer,
}

/// Kustomizations removed from the config, waiting for the file to stay
/// unchanged for the grace period.
#[derive(Debug)]
struct PendingRemovals {
    names: BTreeSet<String>,
    /// The config file's digest when the removal was seen.
    file_digest: Option<String>,
    due: Instant,
}

/// Whether a pending removal waits for the grace period or goes ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// The grace period is over: act if the file did not change meanwhile.
    AfterGrace,
    /// SIGHUP: the operator confirms.
    Now,
}

impl Units {
    /// Starts the units of `file_config` (read from `config_path`);
    /// kustomizations that left it while the daemon was stopped become
    /// pending removals. Every new artifact is sent on `updates`.
    pub async fn start(
        config_path: PathBuf,
        file_config: Config,
        store: Arc<Mutex<Store>>,
        heartbeat: HeartbeatFactory,
        observer: Observer,
        updates: broadcast::Sender<SourceUpdate>,
    ) -> Result<Units, Error> {
        let config = Arc::new(effective(&file_config, &store)?);
        let state_was_empty = lock(&store).is_empty()?;
        if state_was_empty && !config.kustomizations.is_empty() {
            log_empty_database(&config);
        }
        let mut units = Units {
            file_config,
            config,
            store,
            heartbeat,
            scheduler: None,
            runner: None,
            updates,
            source_triggers: SourceTriggers::default(),
            ctx: None,
            kubeconfig: None,
            config_path,
            pending: None,
            removals: JoinSet::new(),
            started_at: state::now_millis(),
            state_was_empty,
            observer,
        };
        units.forget_removed_sources()?;
        // Subscribed before the scheduler starts: the runner starts later
        // (after a first cluster connection) and must not miss the first
        // artifacts, or a kustomization that ran before them would wait a
        // whole retry interval.
        let updates = units.updates.subscribe();
        units.start_scheduler();
        if units.needs_runner(&units.config)? {
            let ctx = units.context().await?;
            units.start_runner(ctx, updates);
        }
        units.note_removals()?;
        Ok(units)
    }

    /// What the units count for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.observer.metrics
    }

    /// The config as read from the file (without CLI suspensions).
    /// Sync requests for whichever scheduler runs.
    pub fn source_triggers(&self) -> SourceTriggers {
        self.source_triggers.clone()
    }

    pub fn file_config(&self) -> &Config {
        &self.file_config
    }

    /// The config the units run.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Applies a new config from the file (see the module's design); the
    /// caller has checked that its `[agent]` table is unchanged.
    pub async fn apply(&mut self, file_config: Config) -> Result<ConfigDiff, Error> {
        let new = Arc::new(effective(&file_config, &self.store)?);
        let changes = diff(&self.config, &new);
        // The one step that can fail (a first cluster connection) comes
        // before anything is stopped, so a failure changes nothing.
        let ctx = if changes.runner_changed() && self.needs_runner(&new)? {
            Some(self.context().await?)
        } else {
            None
        };
        self.file_config = file_config;
        // Before a new scheduler starts, as in `start`.
        let updates = self.updates.subscribe();
        if changes.runner_changed() {
            self.stop_runner().await;
        }
        if !changes.sources.is_empty() {
            self.stop_scheduler().await;
            self.config = new;
            if let Err(err) = self.forget_removed_sources() {
                tracing::error!("forgetting removed sources: {err}");
            }
            self.start_scheduler();
        } else {
            self.config = new;
        }
        if let Some(ctx) = ctx {
            self.start_runner(ctx, updates);
        }
        self.note_removals()?;
        Ok(changes)
    }

    /// When the pending removals are due, if there are any.
    pub fn removal_due(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.due)
    }

    /// Whether kustomization `name` left the config and waits for removal.
    pub fn is_pending_removal(&self, name: &str) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.names.contains(name))
    }

    /// Acts on the pending removals: at once for [`Confirm::Now`]; after
    /// the grace period only if the config file still reads as it did
    /// when the removal was seen (else the wait starts again).
    pub async fn confirm_removals(&mut self, confirm: Confirm) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if confirm == Confirm::AfterGrace {
            let digest = Config::file_digest(&self.config_path).ok();
            if digest.is_none() || digest != pending.file_digest {
                tracing::info!("the config changed during the removal grace period; waiting again");
                pending.file_digest = digest;
                pending.due = Instant::now() + self.config.agent.removal_grace_period;
                return;
            }
        }
        let names: Vec<String> = pending.names.iter().cloned().collect();
        for name in names {
            drop(self.remove(&name).await);
        }
    }

    /// Deletes the objects of pending removal `name` now (a reconcile
    /// request for it confirms it); the receiver gets the outcome.
    pub async fn remove(&mut self, name: &str) -> oneshot::Receiver<Result<String, String>> {
        let (reply, outcome) = oneshot::channel();
        let ctx = match self.context().await {
            Ok(ctx) => ctx,
            Err(err) => {
                let message = format!("removing kustomization {name}: {err}");
                tracing::error!(kustomization = %name, "{message}");
                let _ = reply.send(Err(message));
                return outcome;
            }
        };
        if let Some(pending) = self.pending.as_mut() {
            pending.names.remove(name);
            if pending.names.is_empty() {
                self.pending = None;
            }
        }
        let name = name.to_string();
        if let Some(release) = name.strip_prefix(RELEASE_PREFIX) {
            let rc = self.release_context(ctx);
            let release = release.to_string();
            self.removals.spawn(async move {
                let result = helmrelease::remove(&rc, &release).await;
                if let Err(err) = &result {
                    tracing::warn!(helmrelease = %release, "{err}");
                }
                let _ = reply.send(result.map_err(|err| err.to_string()));
            });
            return outcome;
        }
        self.removals.spawn(async move {
            let result = kustomization::remove(&ctx, &name).await;
            match &result {
                Ok(message) => tracing::info!(kustomization = %name, "{message}"),
                Err(err) => tracing::warn!(kustomization = %name, "{err}"),
            }
            let _ = reply.send(result.map_err(|err| err.to_string()));
        });
        outcome
    }

    pub fn release_context(&self, ctx: Context) -> helmrelease::ReleaseContext {
        let agent = &self.config.agent;
        helmrelease::ReleaseContext {
            ctx,
            helper: Helper::at(&agent.helm_helper).map_err(|_| agent.helm_helper.clone()),
            kubeconfig: agent.kubeconfig.clone(),
        }
    }

    /// Marks every recorded kustomization missing from the config as a
    /// pending removal; the grace period starts when the set or the file
    /// changes.
    fn note_removals(&mut self) -> Result<(), Error> {
        let removed_releases: Vec<String> = lock(&self.store)
            .helm_release_statuses()?
            .into_iter()
            .filter(|row| !self.config.helm_releases.contains_key(&row.name))
            .map(|row| format!("{RELEASE_PREFIX}{}", row.name))
            .collect();
        let removed: BTreeSet<String> = lock(&self.store)
            .recorded_kustomizations()?
            .into_iter()
            .filter(|name| !self.config.kustomizations.contains_key(name))
            .chain(removed_releases)
            .collect();
        if removed.is_empty() {
            self.pending = None;
            return Ok(());
        }
        let grace = self.config.agent.removal_grace_period;
        let digest = Config::file_digest(&self.config_path).ok();
        let known = self.pending.take().filter(|p| p.file_digest == digest);
        let due = known
            .as_ref()
            .map_or_else(|| Instant::now() + grace, |p| p.due);
        for name in &removed {
            if known.as_ref().is_some_and(|p| p.names.contains(name)) {
                continue;
            }
            let grace = humantime::format_duration(grace);
            if let Some(release) = name.strip_prefix(RELEASE_PREFIX) {
                let message = format!(
                    "removed from the config; it is uninstalled once the config stays unchanged for {grace} (now: systemctl reload kedge, or kedge reconcile helmrelease {release})"
                );
                tracing::warn!(helmrelease = %release, reason = state::REMOVAL_PENDING, "{message}");
                lock(&self.store).mark_release_removal_pending(
                    release,
                    state::now_millis(),
                    &message,
                )?;
                continue;
            }
            let message = format!(
                "removed from the config; its objects are deleted once the config stays unchanged for {grace} (now: systemctl reload kedge, or kedge reconcile kustomization {name})"
            );
            tracing::warn!(kustomization = %name, reason = state::REMOVAL_PENDING, "{message}");
            lock(&self.store).mark_removal_pending(name, state::now_millis(), &message)?;
        }
        self.pending = Some(PendingRemovals {
            names: removed,
            file_digest: digest,
            due,
        });
        Ok(())
    }

    /// Applies a change of the suspensions recorded in the state.
    pub async fn refresh_suspensions(&mut self) -> Result<ConfigDiff, Error> {
        self.apply(self.file_config.clone()).await
    }

    /// Asks the scheduler to fetch `source` now.
    pub fn trigger_source(&self, source: &SourceRef) -> Result<&Source, String> {
        let configured = self
            .config
            .source(source)
            .ok_or_else(|| format!("no source {source} in the config"))?;
        if configured.suspend() {
            return Err(format!(
                "{source} is suspended; `kedge resume {source}` first"
            ));
        }
        let scheduler = self
            .scheduler
            .as_ref()
            .ok_or("the scheduler is not running")?;
        scheduler
            .unit
            .triggers()
            .try_send(Trigger::Source(source.clone()))
            .map_err(|err| format!("the scheduler did not take the request: {err}"))?;
        Ok(configured)
    }

    /// The kustomization `name`, if configured and not suspended.
    pub fn kustomization(&self, name: &str) -> Result<&Kustomization, String> {
        let k = self
            .config
            .kustomizations
            .get(name)
            .ok_or_else(|| format!("no kustomization {name} in the config"))?;
        if k.suspend {
            return Err(format!(
                "kustomization {name} is suspended; `kedge resume {name}` first"
            ));
        }
        Ok(k)
    }

    /// The release `name`, if configured and not suspended.
    pub fn helm_release(&self, name: &str) -> Result<&HelmRelease, String> {
        let r = self
            .config
            .helm_releases
            .get(name)
            .ok_or_else(|| format!("no helm_release/{name} in the config"))?;
        if r.suspend {
            return Err(format!(
                "helm_release/{name} is suspended; `kedge resume helm_release/{name}` first"
            ));
        }
        Ok(r)
    }

    /// A sender of reconcile requests to the runner.
    pub fn runner_requests(&self) -> Option<mpsc::Sender<Request>> {
        self.runner.as_ref().map(|r| r.unit.requests())
    }

    /// A sender of triggers to the scheduler.
    pub fn scheduler_triggers(&self) -> Option<mpsc::Sender<Trigger>> {
        self.scheduler.as_ref().map(|s| s.unit.triggers())
    }

    /// A reconcile context for building a kustomization outside the runner
    /// (unpacked artifacts are shared and only read, so it is the runner's).
    pub fn request_context(&self) -> Option<Context> {
        self.ctx.clone()
    }

    /// Stops every unit and waits for it; removals in flight are cancelled
    /// (their inventory stays, so the next start takes them up again).
    pub async fn stop(&mut self) {
        self.pending = None;
        self.removals.abort_all();
        while self.removals.join_next().await.is_some() {}
        self.stop_runner().await;
        self.stop_scheduler().await;
    }

    fn start_scheduler(&mut self) {
        let (stop, shutdown) = watch::channel(false);
        let unit = scheduler_with_heartbeat(
            &self.config,
            self.store.clone(),
            Limits::default(),
            shutdown,
            Some((self.heartbeat)()),
            self.observer.clone(),
        );
        tokio::spawn(relay(unit.subscribe(), self.updates.clone()));
        self.source_triggers.connect(&unit);
        self.scheduler = Some(Running { unit, stop });
    }

    fn start_runner(&mut self, ctx: Context, updates: broadcast::Receiver<SourceUpdate>) {
        let (stop, shutdown) = watch::channel(false);
        let unit = runner(self.config.clone(), ctx, updates, shutdown);
        self.runner = Some(Running { unit, stop });
    }

    async fn stop_scheduler(&mut self) {
        if let Some(running) = self.scheduler.take() {
            let _ = running.stop.send(true);
            running.unit.join().await;
        }
    }

    async fn stop_runner(&mut self) {
        if let Some(running) = self.runner.take() {
            let _ = running.stop.send(true);
            running.unit.join().await;
        }
    }

    /// A runner is needed for kustomizations, and for ones recorded but
    /// removed (their objects must be deleted); not otherwise, so a
    /// sources-only daemon needs no cluster.
    fn needs_runner(&self, config: &Config) -> Result<bool, Error> {
        let store = lock(&self.store);
        Ok(!config.kustomizations.is_empty()
            || !config.helm_releases.is_empty()
            || !store.recorded_kustomizations()?.is_empty()
            || !store.helm_release_statuses()?.is_empty())
    }

    async fn context(&mut self) -> Result<Context, Error> {
        if let Some(ctx) = &self.ctx {
            return Ok(ctx.clone());
        }
        self.kubeconfig = super::kubeconfig_contents(&self.config);
        let ctx = Context {
            manager: super::cluster_manager(&self.config).await?,
            store: self.store.clone(),
            unpacker: Arc::new(Unpacker::new(self.config.agent.state_dir.join("unpacked"))),
            source_triggers: self.source_triggers.clone(),
            labelled: Arc::default(),
            first_fetches: Arc::default(),
            started_at: self.started_at,
            state_was_empty: self.state_was_empty,
            observer: self.observer.clone(),
        };
        self.ctx = Some(ctx.clone());
        Ok(ctx)
    }

    /// When the kubeconfig file changed since the cluster connection was
    /// made (a k3s certificate rotation rewrites it in place), makes a new
    /// one and restarts the runner on it. A kubeconfig that does not load
    /// keeps the old connection.
    pub async fn reconnect_if_kubeconfig_changed(&mut self) -> Result<bool, Error> {
        let contents = super::kubeconfig_contents(&self.config);
        let Some(old) = self.ctx.clone() else {
            return Ok(false);
        };
        if contents == self.kubeconfig {
            return Ok(false);
        }
        let ctx = Context {
            manager: super::cluster_manager(&self.config).await?,
            ..old
        };
        self.kubeconfig = contents;
        self.ctx = Some(ctx.clone());
        if self.runner.is_some() {
            let updates = self.updates.subscribe();
            self.stop_runner().await;
            self.start_runner(ctx, updates);
        }
        Ok(true)
    }

    /// Sources no longer in the config leave `kedge status`.
    fn forget_removed_sources(&self) -> Result<(), state::Error> {
        let store = lock(&self.store);
        for status in store.source_statuses()? {
            let configured = SourceRef::from_parts(&status.kind, &status.name)
                .is_some_and(|source| self.config.sources.contains_key(&source));
            if !configured {
                tracing::info!(source = %format_args!("{}/{}", status.kind, status.name), "source removed from the config; forgetting its status");
                store.remove_source(&status.kind, &status.name)?;
            }
        }
        Ok(())
    }
}

/// Says why kustomizations will adopt labelled objects: a new database
/// beside other state (a Git cache, artifacts) is a loss, not a first start.
fn log_empty_database(config: &Config) {
    let message = "each kustomization adopts the objects labelled as its own in the cluster before it applies";
    let database = config.database_path();
    if state_dir_has_more_than_the_database(config) {
        tracing::warn!(database = %database.display(), "the state database was lost (it is empty, the rest of the state is not): {message}");
    } else {
        tracing::info!(database = %database.display(), "a new state database: {message}");
    }
}

fn state_dir_has_more_than_the_database(config: &Config) -> bool {
    let database = config.database_path();
    std::fs::read_dir(&config.agent.state_dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            let name = entry.file_name();
            !database
                .file_name()
                .is_some_and(|db| name.to_string_lossy().starts_with(&*db.to_string_lossy()))
        })
    })
}

/// Forwards one scheduler's updates until it stops.
async fn relay(mut from: broadcast::Receiver<SourceUpdate>, to: broadcast::Sender<SourceUpdate>) {
    loop {
        match from.recv().await {
            // No runner (no kustomization) is fine.
            Ok(update) => drop(to.send(update)),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    "{missed} source updates missed; kustomizations catch up on their interval"
                );
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// `file_config` with the suspensions recorded in `store` applied.
pub fn effective(file_config: &Config, store: &Mutex<Store>) -> Result<Config, state::Error> {
    let mut config = file_config.clone();
    for (kind, name) in lock(store).suspensions()? {
        if kind == "kustomization" {
            if let Some(k) = config.kustomizations.get_mut(&name) {
                k.suspend = true;
            }
        } else if kind == helmrelease::KIND {
            if let Some(r) = config.helm_releases.get_mut(&name) {
                r.suspend = true;
            }
        } else if let Some(source) =
            SourceRef::from_parts(&kind, &name).and_then(|source| config.sources.get_mut(&source))
        {
            source.settings_mut().set_suspend(true);
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn suspensions_from_the_cli_are_laid_over_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let store = Mutex::new(Store::open_in_memory()?);
        lock(&store).suspend("git", "fleet")?;
        lock(&store).suspend("git", "gone")?;
        let file = Config::parse(
            Path::new("k.toml"),
            "[git.fleet]\nurl = \"/srv/fleet\"\n[git.other]\nurl = \"/srv/other\"\n",
        )?;
        let config = effective(&file, &store)?;
        assert!(config.git("fleet").is_some_and(|s| s.suspend));
        assert!(config.git("other").is_some_and(|s| !s.suspend));
        assert_eq!(config.sources.len(), 2);
        Ok(())
    }
}
