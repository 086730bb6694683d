//! Watching a fleet from outside the node: Prometheus metrics and webhook
//! receivers, each served over HTTP by [`http`].
//!
//! # Design
//! Nothing here decides anything: [`metrics`] is fed by hooks where the
//! reconcilers record outcomes and reads the state database at each
//! scrape; [`receiver`] turns a verified push event into the same request
//! `kedge reconcile source` sends over the control socket. Both are off
//! unless configured and cost nothing then. [`alert`] queues the outcomes
//! that change an object in the state database and delivers them to chat
//! and webhook providers ([`providers`]) and, as commit statuses, to
//! forges ([`forge`]).

pub mod alert;
pub mod endpoint;
pub mod forge;
pub mod http;
pub mod metrics;
mod process;
pub mod providers;
mod rate;
pub mod receiver;

pub use alert::Alerts;
pub use metrics::Metrics;

/// What the reconcilers report to: metrics and alerts. The default one
/// reports nowhere.
#[derive(Clone, Default)]
pub struct Observer {
    pub metrics: Metrics,
    pub alerts: Alerts,
}

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, Receiver};
use crate::protocol::Call;
use crate::state::Store;

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

/// The daemon's outward edges: `/metrics`, the receivers and the
/// delivery of alerts.
pub struct Edges {
    calls: mpsc::Sender<Call>,
    alerts: Alerts,
    delivery: Running,
    metrics: Option<Running>,
    receivers: BTreeMap<String, (Receiver, Running)>,
}

/// One listener's server task and its stop switch.
struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    fn spawn(listener: TcpListener, max_body: usize, handler: http::Handler) -> Running {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(http::serve(listener, max_body, handler, stopped));
        Running { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Edges {
    /// Listens on `[agent] metrics`, if set, and on every receiver's
    /// address, and delivers `alerts` queued in `store`. Requests reach the
    /// daemon's main loop through `calls`.
    pub async fn start(
        config: &Config,
        calls: mpsc::Sender<Call>,
        alerts: Alerts,
        store: Arc<Mutex<Store>>,
    ) -> Result<Edges, Error> {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(alerts.clone().deliver(store, stopped));
        let mut endpoints = Edges {
            calls,
            alerts,
            delivery: Running { stop, task },
            metrics: None,
            receivers: BTreeMap::new(),
        };
        if let Some(address) = config.agent.metrics {
            let listener = http::bind(address, "agent.metrics").await?;
            tracing::info!(address = %address, "serving metrics at /metrics");
            let handler = endpoint::metrics_handler(endpoints.calls.clone());
            endpoints.metrics = Some(Running::spawn(listener, endpoint::MAX_BODY, handler));
        }
        for receiver in config.receivers.values() {
            endpoints.start_receiver(receiver.clone()).await?;
        }
        Ok(endpoints)
    }

    /// After a reload: alerts go to those of `config`; receivers removed
    /// or changed in `config` stop,
    /// new or changed ones start. One that cannot listen is logged and
    /// left out; the others keep serving.
    pub async fn follow(&mut self, config: &Config) {
        self.alerts.follow(config);
        let stale: Vec<String> = self
            .receivers
            .iter()
            .filter(|(name, (running, _))| config.receivers.get(*name) != Some(running))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some((_, running)) = self.receivers.remove(&name) {
                running.stop().await;
                tracing::info!(receiver = %name, "receiver stopped");
            }
        }
        for (name, receiver) in &config.receivers {
            if self.receivers.contains_key(name) {
                continue;
            }
            if let Err(err) = self.start_receiver(receiver.clone()).await {
                tracing::error!(receiver = %name, "{err}");
            }
        }
    }

    async fn start_receiver(&mut self, receiver: Receiver) -> Result<(), Error> {
        let key = format!("receiver.{}", receiver.name);
        let listener = http::bind(receiver.listen, &key).await?;
        tracing::info!(receiver = %receiver.name, address = %receiver.listen, kind = receiver.kind.as_str(), "receiving webhooks");
        let handler = receiver::handler(receiver.clone(), self.calls.clone());
        let running = Running::spawn(listener, receiver::MAX_BODY, handler);
        self.receivers
            .insert(receiver.name.clone(), (receiver, running));
        Ok(())
    }

    /// Stops every endpoint and waits for it.
    pub async fn stop(self) {
        self.delivery.stop().await;
        if let Some(metrics) = self.metrics {
            metrics.stop().await;
        }
        for (_, (_, running)) in self.receivers {
            running.stop().await;
        }
    }
}
