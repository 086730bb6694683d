//! The signals the daemon acts on: SIGTERM and SIGINT stop it, SIGHUP
//! reloads its config (`systemctl reload kedge`).

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::Error;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Stop(&'static str),
    Reload,
}

/// Signal handlers, installed when made so that no signal sent after
/// [`Signals::install`] is lost.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
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
            hup: install(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// Resolves with the next signal received.
    pub async fn recv(&mut self) -> Received {
        tokio::select! {
            _ = self.term.recv() => Received::Stop("SIGTERM"),
            _ = self.int.recv() => Received::Stop("SIGINT"),
            _ = self.hup.recv() => Received::Reload,
        }
    }
}
