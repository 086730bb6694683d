//! Watching a fleet from outside the node: Prometheus metrics and webhook
//! receivers, each served over HTTP by [`http`].
//!
//! # Design
//! Nothing here decides anything: [`metrics`] is fed by hooks where the
//! reconcilers record outcomes and reads the state database at each
//! scrape; [`receiver`] turns a verified push event into the same request
//! `kedge reconcile source` sends over the control socket. Both are off
//! unless configured and cost nothing then.

pub mod endpoint;
pub mod http;
pub mod metrics;
mod process;

pub use metrics::Metrics;

use std::net::SocketAddr;

/// Failures of starting an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: cannot listen on {address}: {source}")]
    Bind {
        what: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The HTTP endpoints of a running daemon.
pub struct Endpoints {
    tasks: tokio::task::JoinSet<()>,
}

impl Endpoints {
    /// Listens on `[agent] metrics`, if set, and serves it until `shutdown`.
    /// Requests reach the daemon's main loop through `calls`.
    pub async fn start(
        config: &crate::config::Config,
        calls: tokio::sync::mpsc::Sender<crate::daemon::socket::Call>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Endpoints, Error> {
        let mut tasks = tokio::task::JoinSet::new();
        if let Some(address) = config.agent.metrics {
            let listener = http::bind(address, "agent.metrics").await?;
            tracing::info!(address = %address, "serving metrics at /metrics");
            tasks.spawn(http::serve(
                listener,
                endpoint::MAX_BODY,
                endpoint::metrics_handler(calls),
                shutdown,
            ));
        }
        Ok(Endpoints { tasks })
    }

    /// Waits until every endpoint has stopped (after shutdown).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}
