//! The daemon's edges: systemd notify and watchdog, signals, the control
//! socket, config reload and journald.
//!
//! # Design
//! [`run`] opens the state, binds the control socket (mode 0660), starts
//! the [`units`] and only then sends `READY=1`. Its main loop owns the
//! units and serialises everything that changes them: signals (SIGTERM,
//! SIGINT stop; SIGHUP reloads), changes of the config file, and control
//! requests. The watchdog is pinged by the scheduler's own loop (a
//! [`Heartbeat`]), so a stuck scheduler gets the daemon restarted.
//!
//! # Test hooks
//! `KEDGE_TEST_STALL_LOOP_WHEN=<path>`: the scheduler loop hangs at its
//! next heartbeat once `<path>` exists, so tests can see the watchdog
//! pings stop. Compiled in only with the `test-hooks` feature, which the
//! tests enable (Cargo.toml); release builds and the .deb ignore it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{broadcast, mpsc, watch};

pub mod bundle_watch;
pub mod config_from;
pub mod config_watch;
mod control;
pub mod logging;
pub mod notify;
pub mod reload;
mod signals;
pub mod socket;
pub mod units;

pub use logging::init_logging;
pub use signals::{Received, Signals};

use crate::apply::Manager;
use crate::config::Config;
use crate::observe::{self, Alerts, Metrics, Observer};
use crate::reconcile::kustomization;
use crate::reconcile::scheduler::Heartbeat;
use crate::reconcile::SourceUpdate;
use crate::state::{self, Store, CONFIG_FROM_REFUSED, CONFIG_REFUSED};

/// How often the daemon checks that its state database is still the file
/// on disk, and whether the `STATUS=` line says something new.
const STATE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// How often the scheduler beats when systemd's watchdog is off.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(5);

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store could not be opened or updated.
    #[error(transparent)]
    State(#[from] state::Error),
    /// The state directory exists but kedge cannot write in it.
    #[error("state directory {} is not writable: {source}", path.display())]
    StateDirNotWritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes client could be made from the configured kubeconfig.
    #[error("kubeconfig {}: {source}", path.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "(in-cluster, $KUBECONFIG or ~/.kube/config)".into()))]
    Kubeconfig {
        path: Option<std::path::PathBuf>,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A signal handler could not be installed.
    #[error("installing the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The control socket could not be set up.
    #[error(transparent)]
    Socket(#[from] socket::SocketError),
    /// `[agent] metrics` or a receiver could not listen.
    #[error(transparent)]
    Endpoint(#[from] observe::Error),
}

/// Runs the sources and kustomizations of `config` (read from
/// `config_path`, which is then watched) until SIGTERM or SIGINT, then
/// stops every task and closes the state database.
pub async fn run(config_path: &Path, config: Config) -> Result<(), Error> {
    let store = open_store(&config)?;
    let store = Arc::new(Mutex::new(store));
    let (mut files, config) = config_from::ConfigFiles::start(config_path, config, &store);
    let mut signals = Signals::install()?;
    let socket_path = config.agent.socket.clone();
    let listener = socket::bind(&socket_path)?;
    let (stop_socket, socket_shutdown) = watch::channel(false);
    let (calls, mut incoming) = mpsc::channel(64);
    let metrics = Metrics::enabled(true);
    let observer = Observer {
        alerts: Alerts::new(&config, metrics.clone()),
        metrics,
    };
    let mut edges = observe::Edges::start(
        &config,
        calls.clone(),
        observer.alerts.clone(),
        store.clone(),
    )
    .await?;
    let server = tokio::spawn(socket::serve(
        listener,
        socket_path.clone(),
        calls,
        socket_shutdown,
    ));
    let mut watched = vec![config_path];
    watched.extend(config.agent.kubeconfig.as_deref());
    let mut file_watch = match config_watch::ConfigWatch::start(&watched) {
        Ok(watch) => Some(watch),
        Err(err) => {
            tracing::warn!("{err}; the config reloads on SIGHUP only");
            None
        }
    };
    let source_updates = broadcast::channel(64).0;
    let mut config_updates = source_updates.subscribe();
    let mut units = units::Units::start(
        config_path.to_path_buf(),
        config,
        store.clone(),
        heartbeat_factory(&store),
        observer,
        source_updates,
    )
    .await?;
    if let Ok(true) = kustomization::lock(&store).clear_agent_problem(CONFIG_REFUSED) {
        tracing::info!("started with a valid config; the refused one is forgotten");
    }
    tracing::info!(
        sources = units.config().sources.len(),
        kustomizations = units.config().kustomizations.len(),
        state_dir = %units.config().agent.state_dir.display(),
        socket = %socket_path.display(),
        "kedge started"
    );
    notify::ready(&status_line(&store));
    // A save between the first read and the watch's start is not missed.
    if files.load().map_or(true, |now| &now != units.file_config()) {
        reload::reload(&mut files, reload::Cause::FileChanged, &mut units, &store).await;
        edges.follow(units.config()).await;
    }
    // Read at start: a changed bundle_dir takes effect on restart.
    let mut bundles = units
        .config()
        .agent
        .bundle_dir
        .as_deref()
        .map(bundle_watch::spawn);
    let mut state_checks = tokio::time::interval(STATE_CHECK_EVERY);
    let mut status = StatusFollower::new(&store);
    let stopped: Result<&str, state::Error> = loop {
        // Kustomizations declared in a source not read yet look removed.
        let removal_due = units
            .removal_due()
            .filter(|_| files.complete(units.file_config()));
        tokio::select! {
            received = signals.recv() => match received {
                Received::Stop(name) => break Ok(name),
                Received::Reload => {
                    reload::reload(&mut files, reload::Cause::Sighup, &mut units, &store).await;
                    edges.follow(units.config()).await;
                }
            },
            _ = changed(&mut file_watch) => {
                reload::reload(&mut files, reload::Cause::FileChanged, &mut units, &store).await;
                edges.follow(units.config()).await;
            }
            Some(update) = next_update(&mut config_updates) => {
                config_from::follow(&update, &mut files, &mut units, &store).await;
                edges.follow(units.config()).await;
            }
            Some(call) = incoming.recv() => control::handle(call, &mut units, &store).await,
            found = next_bundles(&mut bundles) => import_in_order(&units, &store, found),
            _ = at(removal_due) => units.confirm_removals(units::Confirm::AfterGrace).await,
            _ = state_checks.tick() => {
                if let Err(err) = kustomization::lock(&store).check_file() {
                    break Err(err);
                }
                status.follow(&store);
            }
        }
    };
    match &stopped {
        Ok(signal) => tracing::info!(signal, "stopping"),
        Err(err) => tracing::error!(
            "{err}; stopping, so that a restart opens the database on disk (inventories are rebuilt from the objects' kedge.dev labels)"
        ),
    }
    notify::stopping();
    units.stop().await;
    let _ = stop_socket.send(true);
    let _ = server.await;
    edges.stop().await;
    drop(store);
    tracing::info!("stopped");
    stopped.map(drop).map_err(Error::State)
}

/// The next bundle files dropped into `[agent] bundle_dir`; never without one.
async fn next_bundles(watch: &mut Option<mpsc::Receiver<Vec<PathBuf>>>) -> Vec<PathBuf> {
    match watch {
        Some(found) => match found.recv().await {
            Some(files) => files,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// Imports `files` one after the other on a task of their own (each logs
/// and records its outcome).
fn import_in_order(units: &units::Units, store: &Arc<Mutex<Store>>, files: Vec<PathBuf>) {
    let imports: Vec<_> = files
        .into_iter()
        .map(|file| control::bundle_import(units, store, file, false))
        .collect();
    tokio::spawn(async move {
        for import in imports {
            let _ = import.await;
        }
    });
}

/// The next source update; `None` when updates were missed (the next
/// fetch of a source announces its artifact again) or none can come.
async fn next_update(updates: &mut broadcast::Receiver<SourceUpdate>) -> Option<SourceUpdate> {
    match updates.recv().await {
        Ok(update) => Some(update),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            tracing::warn!("{missed} source updates missed while reading the config");
            None
        }
        Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
    }
}

/// Resolves at `deadline`, never without one.
async fn at(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Opens the state database; when SQLite cannot, says why in the words of
/// the operating system (SQLite only says "unable to open database file").
fn open_store(config: &Config) -> Result<Store, Error> {
    Store::open(&config.database_path()).map_err(|err| {
        let dir = &config.agent.state_dir;
        match writable(dir) {
            Err(source) => Error::StateDirNotWritable {
                path: dir.clone(),
                source,
            },
            Ok(()) => err.into(),
        }
    })
}

fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".kedge-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}

async fn changed(watch: &mut Option<config_watch::ConfigWatch>) {
    match watch {
        Some(watch) => watch.changed().await,
        None => std::future::pending().await,
    }
}

/// The scheduler's heartbeat: `WATCHDOG=1` and a fresh `STATUS=` line
/// every half `WatchdogSec` (or [`DEFAULT_HEARTBEAT`]). Reading the status
/// takes the state lock, so a deadlocked store stops the pings too.
fn heartbeat_factory(store: &Arc<Mutex<Store>>) -> units::HeartbeatFactory {
    let store = store.clone();
    let period = notify::watchdog_period().unwrap_or(DEFAULT_HEARTBEAT);
    let stall_when = stall_hook();
    Box::new(move || {
        let store = store.clone();
        let stall_when = stall_when.clone();
        Heartbeat {
            period,
            beat: Box::new(move || {
                let store = store.clone();
                let stall_when = stall_when.clone();
                async move {
                    if stall_when.as_deref().is_some_and(Path::exists) {
                        tracing::warn!("stall test hook: the scheduler loop stalls");
                        std::future::pending::<()>().await;
                    }
                    notify::watchdog();
                    retry_unsaved(&store);
                    notify::status(&status_line(&store));
                }
                .boxed()
            }),
        }
    })
}

/// The file whose existence stalls the scheduler loop (see the module doc).
#[cfg(feature = "test-hooks")]
fn stall_hook() -> Option<PathBuf> {
    std::env::var_os("KEDGE_TEST_STALL_LOOP_WHEN").map(PathBuf::from)
}

#[cfg(not(feature = "test-hooks"))]
fn stall_hook() -> Option<PathBuf> {
    None
}

/// Sends `STATUS=` when what it says (an outcome, a refused config)
/// changed since it was last sent; the heartbeat refreshes its ages.
struct StatusFollower {
    sent: String,
}

impl StatusFollower {
    fn new(store: &Mutex<Store>) -> StatusFollower {
        StatusFollower {
            sent: notify::without_ages(&status_line(store)),
        }
    }

    fn follow(&mut self, store: &Mutex<Store>) {
        let line = status_line(store);
        let facts = notify::without_ages(&line);
        if facts != self.sent {
            notify::status(&line);
            self.sent = facts;
        }
    }
}

/// Writes outcomes held in memory since a write failed (a full disk).
fn retry_unsaved(store: &Mutex<Store>) {
    if let Ok(true) = kustomization::lock(store).retry_unsaved() {
        tracing::info!("the outcomes held in memory are written to the state database again");
    }
}

/// The `STATUS=` line: the state's summary, and a refused config or
/// outcomes that could not be saved first.
pub(crate) fn status_line(store: &Mutex<Store>) -> String {
    let store = kustomization::lock(store);
    let summary = notify::summary(&store).unwrap_or_else(|err| format!("state unreadable: {err}"));
    if store.unsaved_problem().is_some() {
        return format!("state not saved (see kedge status) · {summary}");
    }
    match store.agent_problems() {
        Ok(problems)
            if problems
                .iter()
                .any(|p| p.key == CONFIG_REFUSED || p.key == CONFIG_FROM_REFUSED) =>
        {
            format!("config refused (see kedge status) · {summary}")
        }
        _ => summary,
    }
}

/// The contents of `[agent] kubeconfig` (`None` without one, or when it
/// cannot be read), to see when it changes.
pub(crate) fn kubeconfig_contents(config: &Config) -> Option<Vec<u8>> {
    std::fs::read(config.agent.kubeconfig.as_deref()?).ok()
}

/// The cluster's [`Manager`] from `[agent] kubeconfig`, else in-cluster,
/// `$KUBECONFIG` or `~/.kube/config`, with a deadline on every request and
/// errors that name the API server's URL. Nothing is sent to the cluster yet.
pub(crate) async fn cluster_manager(config: &Config) -> Result<Manager, Error> {
    let path = config.agent.kubeconfig.clone();
    let failed = |source: Box<dyn std::error::Error + Send + Sync>| Error::Kubeconfig {
        path: path.clone(),
        source,
    };
    let client_config = match &path {
        Some(file) => {
            let kubeconfig =
                kube::config::Kubeconfig::read_from(file).map_err(|e| failed(e.into()))?;
            kube::Config::from_custom_kubeconfig(
                kubeconfig,
                &kube::config::KubeConfigOptions::default(),
            )
            .await
            .map_err(|e| failed(e.into()))?
        }
        None => kube::Config::infer().await.map_err(|e| failed(e.into()))?,
    };
    Manager::with_deadlines(client_config).map_err(|e| failed(e.into()))
}
