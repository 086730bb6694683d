//! The daemon's edges: systemd notify and watchdog, signals, the control
//! socket and journald.
//!
//! # Current limitations
//! Only what `kedge run` needs so far: logging, SIGTERM/SIGINT, and the
//! source loop. No sd_notify, control socket or config reload yet.

use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::Config;
use crate::reconcile::scheduler;
use crate::source::Limits;
use crate::state::{self, Store};

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The state store could not be opened or updated.
    #[error(transparent)]
    State(#[from] state::Error),
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
        builder.try_init()
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

/// Runs the source loop of `config` until SIGTERM or SIGINT, then stops
/// every task and closes the state database.
pub async fn run(config: Config) -> Result<(), Error> {
    let store = Store::open(&config.database_path())?;
    forget_removed_sources(&store, &config)?;
    let store = Arc::new(Mutex::new(store));
    let (stop, shutdown) = watch::channel(false);
    let mut signals = Signals::install()?;
    let scheduler = scheduler::scheduler(&config, store.clone(), Limits::default(), shutdown);
    tracing::info!(
        sources = config.sources.len(),
        state_dir = %config.agent.state_dir.display(),
        "kedge started"
    );
    let received = signals.recv().await;
    tracing::info!(signal = received, "stopping");
    let _ = stop.send(true);
    scheduler.join().await;
    drop(store);
    tracing::info!("stopped");
    Ok(())
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
