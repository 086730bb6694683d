//! The daemon's edges: systemd notify and watchdog, signals, the control
//! socket and journald.
//!
//! # Current limitations
//! Only what `kedge run` needs so far: logging, SIGTERM/SIGINT, and the
//! source loop. No sd_notify, control socket or config reload yet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

pub mod notify;

use crate::apply::Manager;
use crate::config::Config;
use crate::reconcile::unpack::Unpacker;
use crate::reconcile::{kustomization, runner, scheduler};
use crate::source::Limits;
use crate::state::{self, Store};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store could not be opened or updated.
    #[error(transparent)]
    State(#[from] state::Error),
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
}

/// Logs to stderr (journald picks it up) with `tracing` fields; the level
/// comes from `KEDGE_LOG` (e.g. `debug`, `kedge=debug,info`), else `info`.
/// Under systemd (`JOURNAL_STREAM` set) timestamps are left to journald.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEDGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    // A subscriber already set (tests) is fine.
    drop(result);
}

/// SIGTERM and SIGINT handlers, installed when made so that no signal
/// sent after [`Signals::install`] is lost.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn install() -> Result<Signals, Error> {
        let install = |kind, name| {
            signal(kind).map_err(|source| Error::Signal {
                signal: name,
                source,
            })
        };
        Ok(Signals {
            term: install(SignalKind::terminate(), "SIGTERM")?,
            int: install(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Resolves with the name of the next signal received.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Runs sources and kustomizations of `config` until SIGTERM or SIGINT,
/// then stops every task and closes the state database.
pub async fn run(config: Config) -> Result<(), Error> {
    let store = Store::open(&config.database_path())?;
    forget_removed_sources(&store, &config)?;
    let store = Arc::new(Mutex::new(store));
    let (stop, shutdown) = watch::channel(false);
    let mut signals = Signals::install()?;
    let scheduler =
        scheduler::scheduler(&config, store.clone(), Limits::default(), shutdown.clone());
    let updates = scheduler.subscribe();
    let config = Arc::new(config);
    let runner = if config.kustomizations.is_empty() && !has_recorded_kustomizations(&store)? {
        None
    } else {
        let ctx = kustomization::Context {
            manager: Manager::new(kube_client(&config).await?),
            store: store.clone(),
            unpacker: Arc::new(Unpacker::new(config.agent.state_dir.join("unpacked"))),
        };
        if let Err(err) = kustomization::collect_removed(&ctx, &config).await {
            tracing::error!("cleaning up removed kustomizations: {err}");
        }
        Some(runner::runner(config.clone(), ctx, updates, shutdown))
    };
    tracing::info!(
        sources = config.sources.len(),
        kustomizations = config.kustomizations.len(),
        state_dir = %config.agent.state_dir.display(),
        "kedge started"
    );
    notify::ready(&status_line(&store));
    let watchdog = notify::watchdog_period().unwrap_or(Duration::from_secs(5));
    let received = loop {
        tokio::select! {
            received = signals.recv() => break received,
            _ = tokio::time::sleep(watchdog) => {
                notify::watchdog();
                notify::status(&status_line(&store));
            }
        }
    };
    tracing::info!(signal = received, "stopping");
    notify::stopping();
    let _ = stop.send(true);
    scheduler.join().await;
    if let Some(runner) = runner {
        runner.join().await;
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}

fn status_line(store: &Mutex<Store>) -> String {
    let store = kustomization::lock(store);
    notify::summary(&store).unwrap_or_else(|err| format!("state unreadable: {err}"))
}

fn has_recorded_kustomizations(store: &Mutex<Store>) -> Result<bool, state::Error> {
    Ok(!kustomization::lock(store)
        .kustomization_statuses()?
        .is_empty())
}

/// A client from `[agent] kubeconfig`, else in-cluster, `$KUBECONFIG` or
/// `~/.kube/config`. Nothing is sent to the cluster yet.
async fn kube_client(config: &Config) -> Result<kube::Client, Error> {
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
    kube::Client::try_from(client_config).map_err(|e| failed(e.into()))
}

/// Sources no longer in the config leave `kedge status`.
fn forget_removed_sources(store: &Store, config: &Config) -> Result<(), state::Error> {
    for status in store.source_statuses()? {
        if status.kind == "git" && !config.sources.contains_key(&status.name) {
            tracing::info!(source = %status.name, "source removed from the config; forgetting its status");
            store.remove_source(&status.kind, &status.name)?;
        }
    }
    Ok(())
}
