//! Prometheus metrics: Flux's `gotk_*` names where Flux has one, kedge's
//! own otherwise, and the standard process metrics.
//!
//! # Design
//! Counters and histograms are fed by narrow hooks where outcomes happen
//! (a source sync, a kustomization run, an apply, a drift event). Gauges
//! that describe state (readiness, suspension, last success, artifact
//! size) are read from the state database at each scrape, so they say what
//! `kedge status` says and need no hook. [`Metrics`] is a cheap handle;
//! the default one is off and every hook on it does nothing.
//!
//! Objects are labelled `kind` and `name` as kedge names them
//! (`kind="kustomization",name="apps"`, `kind="git",name="fleet"`).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::protocol::report::status_report;
use crate::state::{self, Store};

use super::process::ProcessCollector;

/// The content type of the text [`Metrics::render`] returns.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Object {
    kind: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Condition {
    kind: String,
    name: String,
    r#type: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Applied {
    kustomization: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    alert: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Dropped {
    alert: String,
    reason: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The metrics of one process; clones share them.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Inner>>);

struct Inner {
    registry: Registry,
    reconcile_duration: Family<Object, Histogram>,
    fetch_duration: Family<Object, Histogram>,
    apply_objects: Family<Applied, Counter>,
    drift_corrections: Family<Object, Counter>,
    condition: Family<Condition, Gauge>,
    suspended: Family<Object, Gauge>,
    last_success: Family<Object, FloatGauge>,
    artifact_size: Family<Object, Gauge>,
    alerts_sent: Family<AlertLabel, Counter>,
    alert_failures: Family<AlertLabel, Counter>,
    alerts_dropped: Family<Dropped, Counter>,
    alert_queue: Gauge,
    /// One scrape at a time: each refreshes the state gauges, then encodes.
    scrape: Mutex<()>,
}

/// Failures of a scrape.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("reading the state for metrics: {0}")]
    State(#[from] state::Error),
    #[error("encoding metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

fn duration_histogram() -> Histogram {
    // 50 ms to about 100 s.
    Histogram::new(exponential_buckets(0.05, 2.0, 12))
}

impl Metrics {
    /// Metrics that are kept; `with_process` adds the `process_*` ones (the
    /// daemon's, not a CLI's).
    pub fn enabled(with_process: bool) -> Metrics {
        let mut registry = Registry::default();
        let reconcile_duration =
            Family::<Object, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        registry.register(
            "gotk_reconcile_duration_seconds",
            "The duration in seconds of a reconciliation.",
            reconcile_duration.clone(),
        );
        let condition = Family::<Condition, Gauge>::default();
        registry.register(
            "gotk_reconcile_condition",
            "The current condition status of a resource (1 for the status it has, 0 for the others).",
            condition.clone(),
        );
        let suspended = Family::<Object, Gauge>::default();
        registry.register(
            "gotk_suspend_status",
            "The current suspend status of a resource.",
            suspended.clone(),
        );
        let apply_objects = Family::<Applied, Counter>::default();
        registry.register(
            "kedge_apply_objects",
            "Objects applied by kustomizations, by what the apply did.",
            apply_objects.clone(),
        );
        let drift_corrections = Family::<Object, Counter>::default();
        registry.register(
            "kedge_drift_corrections",
            "Objects changed in the cluster that kedge queued for reverting.",
            drift_corrections.clone(),
        );
        let fetch_duration =
            Family::<Object, Histogram>::new_with_constructor(duration_histogram as fn() -> _);
        registry.register(
            "kedge_source_fetch_duration_seconds",
            "The duration in seconds of a source sync (fetch and artifact).",
            fetch_duration.clone(),
        );
        let artifact_size = Family::<Object, Gauge>::default();
        registry.register(
            "kedge_artifact_size_bytes",
            "The size of a source's current artifact.",
            artifact_size.clone(),
        );
        let last_success = Family::<Object, FloatGauge>::default();
        registry.register(
            "kedge_last_success_timestamp_seconds",
            "When a source last synced or a kustomization last applied successfully.",
            last_success.clone(),
        );
        let alerts_sent = Family::<AlertLabel, Counter>::default();
        registry.register(
            "kedge_alerts_sent",
            "Alerts delivered, by [alert.NAME].",
            alerts_sent.clone(),
        );
        let alert_failures = Family::<AlertLabel, Counter>::default();
        registry.register(
            "kedge_alert_delivery_failures",
            "Failed deliveries of alerts (each is retried).",
            alert_failures.clone(),
        );
        let alerts_dropped = Family::<Dropped, Counter>::default();
        registry.register(
            "kedge_alerts_dropped",
            "Alerts never delivered: rate_limited (a flapping object) or queue_full (oldest dropped).",
            alerts_dropped.clone(),
        );
        let alert_queue = Gauge::default();
        registry.register(
            "kedge_alert_queue_length",
            "Alerts waiting for delivery or a retry.",
            alert_queue.clone(),
        );
        if with_process {
            registry.register_collector(Box::new(ProcessCollector));
        }
        Metrics(Some(Arc::new(Inner {
            registry,
            reconcile_duration,
            fetch_duration,
            apply_objects,
            drift_corrections,
            condition,
            suspended,
            last_success,
            artifact_size,
            alerts_sent,
            alert_failures,
            alerts_dropped,
            alert_queue,
            scrape: Mutex::new(()),
        })))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// A run of `kind/name` (a kustomization, or a source's sync) ended.
    pub fn reconciled(&self, kind: &str, name: &str, took: Duration) {
        if let Some(inner) = &self.0 {
            inner
                .reconcile_duration
                .get_or_create(&object(kind, name))
                .observe(took.as_secs_f64());
        }
    }

    /// A source's sync (fetch and artifact) ended.
    pub fn fetched(&self, kind: &str, name: &str, took: Duration) {
        if let Some(inner) = &self.0 {
            inner
                .fetch_duration
                .get_or_create(&object(kind, name))
                .observe(took.as_secs_f64());
        }
    }

    /// An apply of `kustomization` did `action` (created, configured,
    /// unchanged, pruned) to `count` objects.
    pub fn applied(&self, kustomization: &str, action: &str, count: usize) {
        if let Some(inner) = &self.0 {
            inner
                .apply_objects
                .get_or_create(&Applied {
                    kustomization: kustomization.to_string(),
                    action: action.to_string(),
                })
                .inc_by(count as u64);
        }
    }

    /// A watch saw `count` objects of `kind/name` (a kustomization or a
    /// Helm release) drift; its next run reverts them.
    pub fn drifted(&self, kind: &str, name: &str, count: usize) {
        if let Some(inner) = &self.0 {
            inner
                .drift_corrections
                .get_or_create(&object(kind, name))
                .inc_by(count as u64);
        }
    }

    /// An alert was delivered (`delivered`) or a delivery failed.
    pub fn alert_delivery(&self, alert: &str, delivered: bool) {
        if let Some(inner) = &self.0 {
            let label = AlertLabel {
                alert: alert.to_string(),
            };
            match delivered {
                true => inner.alerts_sent.get_or_create(&label).inc(),
                false => inner.alert_failures.get_or_create(&label).inc(),
            };
        }
    }

    /// An alert was dropped undelivered, for `reason`.
    pub fn alert_dropped(&self, alert: &str, reason: &str) {
        if let Some(inner) = &self.0 {
            inner
                .alerts_dropped
                .get_or_create(&Dropped {
                    alert: alert.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// The Prometheus text (format 0.0.4) of every metric, the state gauges
    /// read from `store` (only the objects of `config`, when given). Off:
    /// empty.
    pub fn render(&self, store: &Store, config: Option<&Config>) -> Result<String, RenderError> {
        let Some(inner) = &self.0 else {
            return Ok(String::new());
        };
        let _one_at_a_time = inner
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        inner.refresh_state(store, config)?;
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &inner.registry)?;
        Ok(text)
    }
}

impl Inner {
    fn refresh_state(&self, store: &Store, config: Option<&Config>) -> Result<(), state::Error> {
        let report = status_report(Some(store), config)?;
        self.condition.clear();
        self.suspended.clear();
        for row in report
            .sources
            .iter()
            .chain(&report.kustomizations)
            .chain(&report.helm_releases)
        {
            let current = match (row.ready, row.since) {
                (true, _) => "True",
                (false, Some(_)) => "False",
                (false, None) => "Unknown",
            };
            for status in ["True", "False", "Unknown"] {
                self.condition
                    .get_or_create(&Condition {
                        kind: row.kind.clone(),
                        name: row.name.clone(),
                        r#type: "Ready".into(),
                        status: status.into(),
                    })
                    .set(i64::from(status == current));
            }
            self.suspended
                .get_or_create(&object(&row.kind, &row.name))
                .set(i64::from(row.suspended));
        }
        let listed = |kind: &str, name: &str| {
            report
                .sources
                .iter()
                .chain(&report.kustomizations)
                .chain(&report.helm_releases)
                .any(|row| row.kind == kind && row.name == name)
        };
        self.last_success.clear();
        self.artifact_size.clear();
        for source in store.source_statuses()? {
            if !listed(&source.kind, &source.name) {
                continue;
            }
            let id = object(&source.kind, &source.name);
            if let Some(at) = source.last_success_at {
                self.last_success.get_or_create(&id).set(at as f64 / 1000.0);
            }
            let size = source
                .artifact_path
                .and_then(|path| std::fs::metadata(path).ok());
            if let Some(size) = size {
                self.artifact_size
                    .get_or_create(&id)
                    .set(i64::try_from(size.len()).unwrap_or(i64::MAX));
            }
        }
        // A database of an older kedge opened read-only has no queue.
        self.alert_queue.set(store.queued_alerts().unwrap_or(0));
        let kustomizations = store
            .kustomization_statuses()?
            .into_iter()
            .map(|k| ("kustomization", k.name, k.last_success_at));
        let releases = store
            .helm_release_statuses()
            .unwrap_or_default()
            .into_iter()
            .map(|r| ("helm_release", r.name, r.last_success_at));
        for (kind, name, last_success) in kustomizations.chain(releases) {
            if let (Some(at), true) = (last_success, listed(kind, &name)) {
                self.last_success
                    .get_or_create(&object(kind, &name))
                    .set(at as f64 / 1000.0);
            }
        }
        Ok(())
    }
}

fn object(kind: &str, name: &str) -> Object {
    Object {
        kind: kind.to_string(),
        name: name.to_string(),
    }
}
