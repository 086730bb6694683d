//! Alerts (`[alert.NAME]`): an outcome that changes an object's
//! readiness, revision or reason is queued in the state database for each
//! alert whose `events` name the object, then delivered to its provider.
//!
//! # Guarantees
//! - A no-op run (same readiness, reason and revision) sends nothing.
//! - Alerts survive a restart and a network outage: they wait in SQLite
//!   and are retried with backoff from [`FIRST_RETRY`] to [`LAST_RETRY`]
//!   until delivered. At most [`MAX_QUEUED`] wait; past that the oldest
//!   are dropped and counted (`kedge_alerts_dropped_total{reason="queue_full"}`).
//! - A flapping object cannot flood a channel: per alert and object, a
//!   burst of [`BURST`], then one per [`REFILL_EVERY`]; the rest are
//!   dropped and counted (`reason="rate_limited"`).
//! - Addresses and tokens are read from their files at each delivery and
//!   never logged (errors are logged without the URL).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use tokio::sync::{watch, Notify};

use super::forge::{self, Unposted};
use super::providers::{self, flux_kind, AlertEvent, InvolvedObject, ProviderRequest};
use super::rate::RateLimit;
use super::Metrics;
use crate::config::forge::{is_plain_http_elsewhere, CLEAR_TEXT_TOKEN};
use crate::config::{Alert, AlertAddress, AlertProvider, Config};
use crate::state::{self, QueuedAlert, Severity, Store};

/// The most alerts waiting in the queue.
pub const MAX_QUEUED: usize = 1000;
/// Alerts per alert and object at once before the rate limit.
pub const BURST: u32 = 5;
/// One more alert per alert and object this often.
pub const REFILL_EVERY: Duration = Duration::from_secs(60);
/// The first retry of a failed delivery; it doubles up to [`LAST_RETRY`].
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
pub const LAST_RETRY: Duration = Duration::from_secs(300);
/// The longest one delivery may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deliveries read from the queue at a time.
const BATCH: usize = 16;

/// An object's state before and after an outcome, as far as alerts care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub ready: bool,
    pub reason: String,
    pub revision: Option<String>,
}

/// The recorded condition of an object before an outcome is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before(Option<Condition>);

/// One recorded outcome of `kind/name`.
struct Outcome<'a> {
    kind: &'a str,
    name: &'a str,
    now: Condition,
    message: &'a str,
}

/// The condition `store` records for `kind/name`: a kustomization's
/// attempted revision (the one a failure is about; after a success, the
/// applied one), a release's chart version, a source's artifact revision.
fn condition(store: &Store, kind: &str, name: &str) -> Option<Condition> {
    if kind == "kustomization" {
        let status = store.kustomization_status(name).ok()??;
        return Some(Condition {
            ready: status.ready,
            reason: status.reason,
            revision: status
                .last_attempted_revision
                .or(status.last_applied_revision),
        });
    }
    if kind == "helm_release" {
        let status = store.helm_release_status(name).ok()??;
        return Some(Condition {
            ready: status.ready,
            reason: status.reason,
            revision: status.last_applied_revision,
        });
    }
    let status = store.source_status(kind, name).ok()??;
    Some(Condition {
        ready: status.ready,
        reason: status.reason,
        revision: status.revision,
    })
}

/// The alerts of a daemon; clones share them. The default one has none
/// and does nothing.
#[derive(Clone, Default)]
pub struct Alerts(Option<Arc<Inner>>);

struct Inner {
    alerts: Mutex<Arc<BTreeMap<String, Alert>>>,
    limits: Mutex<HashMap<(String, String), RateLimit>>,
    wake: Notify,
    metrics: Metrics,
    instance: String,
}

impl Alerts {
    /// The alerts of `config`, counted in `metrics`.
    pub fn new(config: &Config, metrics: Metrics) -> Alerts {
        Alerts(Some(Arc::new(Inner {
            alerts: Mutex::new(Arc::new(config.alerts.clone())),
            limits: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            metrics,
            instance: host_name(),
        })))
    }

    /// After a reload: deliver to the alerts of `config` from now on.
    pub fn follow(&self, config: &Config) {
        if let Some(inner) = &self.0 {
            *lock(&inner.alerts) = Arc::new(config.alerts.clone());
        }
    }

    /// What `store` records for `kind/name` before an outcome is written
    /// (nothing is read when no alert is configured).
    pub fn before(&self, store: &Store, kind: &str, name: &str) -> Before {
        match &self.0 {
            Some(inner) if !lock(&inner.alerts).is_empty() => Before(condition(store, kind, name)),
            _ => Before(None),
        }
    }

    /// Queues an alert for each `[alert]` that wants the outcome just
    /// written for `kind/name`, when it changed the object's readiness,
    /// reason or revision since `before`. Called with the store locked.
    pub fn recorded(&self, store: &Store, before: Before, kind: &str, name: &str, message: &str) {
        let Some(inner) = &self.0 else {
            return;
        };
        let alerts = lock(&inner.alerts).clone();
        if alerts.is_empty() {
            return;
        }
        let Some(now) = condition(store, kind, name) else {
            return;
        };
        if before.0.as_ref() == Some(&now) {
            return;
        }
        let severity = if now.ready {
            Severity::Info
        } else {
            Severity::Error
        };
        let outcome = Outcome {
            kind,
            name,
            now,
            message,
        };
        inner.queue(store, alerts.values(), &outcome, severity);
    }

    /// Queues a pending commit status for each forge alert that wants
    /// `kind/name`, which has just applied a new `revision` and waits for
    /// its objects' health; the outcome that follows replaces it. The
    /// store is locked only when a forge alert is configured.
    pub fn progressing(
        &self,
        store: &Mutex<Store>,
        kind: &str,
        name: &str,
        revision: &str,
        message: &str,
    ) {
        let Some(inner) = &self.0 else {
            return;
        };
        let alerts = lock(&inner.alerts).clone();
        if !alerts.values().any(|a| a.provider.is_forge()) {
            return;
        }
        let store = lock(store);
        let known = condition(&store, kind, name).and_then(|c| c.revision);
        if known.as_deref() == Some(revision) {
            // Not a new commit: its status is set already, and the outcome
            // may not change it again.
            return;
        }
        let outcome = Outcome {
            kind,
            name,
            now: Condition {
                ready: false,
                reason: "Progressing".to_string(),
                revision: Some(revision.to_string()),
            },
            message,
        };
        let forges = alerts.values().filter(|a| a.provider.is_forge());
        inner.queue(&store, forges, &outcome, Severity::Info);
    }

    /// Delivers queued alerts until `shutdown`.
    pub async fn deliver(self, store: Arc<Mutex<Store>>, mut shutdown: watch::Receiver<bool>) {
        let Some(inner) = self.0 else {
            return;
        };
        // Made when the first alert is due: a node with no alert to send
        // never needs it (nor the trust store it loads).
        let mut client: Option<reqwest::Client> = None;
        loop {
            let due = lock(&store).due_alerts(state::now_millis(), BATCH);
            match due {
                Ok(due) if due.is_empty() => {}
                Ok(due) => {
                    let Some(client) = cached_client(&mut client) else {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(60)) => {}
                            _ = shutdown.wait_for(|stop| *stop) => return,
                        }
                        continue;
                    };
                    for queued in due {
                        tokio::select! {
                            () = deliver_one(&inner, &client, &store, queued) => {}
                            _ = shutdown.wait_for(|stop| *stop) => return,
                        }
                    }
                }
                Err(err) => tracing::error!("reading the alert queue: {err}"),
            }
            let next = lock(&store).next_alert_due().ok().flatten();
            let wait = match next {
                Some(at) => {
                    Duration::from_millis((at - state::now_millis()).clamp(0, 60_000) as u64)
                }
                None => Duration::from_secs(60),
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = inner.wake.notified() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

impl Inner {
    /// Queues `outcome` for each of `alerts` that takes it, after the rate
    /// limit of the alert and object; wakes the delivery.
    fn queue<'a>(
        &self,
        store: &Store,
        alerts: impl Iterator<Item = &'a Alert>,
        outcome: &Outcome,
        severity: Severity,
    ) {
        let object = format!("{}/{}", outcome.kind, outcome.name);
        let mut queued = false;
        for alert in alerts.filter(|a| wants(a, &object, severity, outcome.message)) {
            let allowed = lock(&self.limits)
                .entry((alert.name.clone(), object.clone()))
                .or_insert_with(|| RateLimit::new(BURST, REFILL_EVERY))
                .take();
            if !allowed {
                tracing::warn!(alert = %alert.name, object = %object, "alert dropped: rate limited");
                self.metrics.alert_dropped(&alert.name, "rate_limited");
                continue;
            }
            let event = event(alert, outcome, severity, &self.instance);
            let Ok(json) = serde_json::to_string(&event) else {
                continue;
            };
            if alert.provider.is_forge() {
                drop_superseded(store, &alert.name, &event);
            }
            match store.queue_alert(&alert.name, &json, state::now_millis(), MAX_QUEUED) {
                Ok(dropped) => {
                    queued = true;
                    for name in dropped {
                        tracing::warn!(alert = %name, "alert dropped: the queue holds {MAX_QUEUED}");
                        self.metrics.alert_dropped(&name, "queue_full");
                    }
                }
                Err(err) => tracing::error!(alert = %alert.name, "queueing an alert: {err}"),
            }
        }
        if queued {
            self.wake.notify_one();
        }
    }
}

/// Removes the statuses still queued for forge alert `alert` about the
/// object and commit of `event`, which replaces them: delivered after it
/// (a retry), an older one would show as the commit's latest.
fn drop_superseded(store: &Store, alert: &str, event: &AlertEvent) {
    let Ok(queued) = store.due_alerts(i64::MAX, MAX_QUEUED) else {
        return;
    };
    let same_commit = |other: &AlertEvent| {
        other.involved_object == event.involved_object
            && other.metadata.get("revision") == event.metadata.get("revision")
    };
    for row in queued.iter().filter(|row| row.alert == alert) {
        let superseded =
            serde_json::from_str::<AlertEvent>(&row.event).is_ok_and(|other| same_commit(&other));
        if superseded {
            if let Err(err) = store.remove_alert(row.id) {
                tracing::error!(alert, "removing a superseded commit status: {err}");
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `alert` takes an outcome of `object` (`kind/name`).
fn wants(alert: &Alert, object: &str, severity: Severity, message: &str) -> bool {
    let (kind, _) = object.split_once('/').unwrap_or((object, ""));
    let named = alert.events.iter().any(|pattern| {
        pattern == "*" || pattern == object || pattern.strip_suffix("/*") == Some(kind)
    });
    let severe_enough = alert.severity == Severity::Info || severity == Severity::Error;
    let excluded = alert
        .exclude
        .iter()
        .any(|pattern| Regex::new(pattern).is_ok_and(|re| re.is_match(message)));
    named && severe_enough && !excluded
}

fn event(alert: &Alert, outcome: &Outcome, severity: Severity, instance: &str) -> AlertEvent {
    let mut metadata = BTreeMap::new();
    if let Some(revision) = &outcome.now.revision {
        metadata.insert("revision".to_string(), revision.clone());
    }
    if let Some(summary) = &alert.summary {
        metadata.insert("summary".to_string(), summary.clone());
    }
    AlertEvent {
        involved_object: InvolvedObject {
            kind: flux_kind(outcome.kind).to_string(),
            name: outcome.name.to_string(),
        },
        severity: severity.as_str().to_string(),
        timestamp: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        message: outcome.message.to_string(),
        reason: outcome.now.reason.clone(),
        metadata,
        reporting_controller: "kedge".to_string(),
        reporting_instance: instance.to_string(),
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// The delivery client, made once; `None` (logged) while it cannot be made.
fn cached_client(cached: &mut Option<reqwest::Client>) -> Option<reqwest::Client> {
    if cached.is_none() {
        match http_client(None) {
            Ok(client) => *cached = Some(client),
            Err(err) => tracing::error!("alerts are not delivered yet: {err}"),
        }
    }
    cached.clone()
}

/// A delivery client, trusting `ca` besides the system's roots.
fn http_client(ca: Option<reqwest::Certificate>) -> Result<reqwest::Client, reqwest::Error> {
    crate::source::install_tls_provider();
    let builder = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .connect_timeout(DELIVERY_TIMEOUT)
        // GitHub's API refuses requests without one.
        .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")));
    match ca {
        Some(ca) => builder.add_root_certificate(ca),
        None => builder,
    }
    .build()
}

/// The client for `alert`: `shared`, or one trusting its `ca_file`, read
/// now (a renewed CA is used at the next delivery).
fn client_for(alert: &Alert, shared: &reqwest::Client) -> Result<reqwest::Client, DeliveryError> {
    let Some(path) = &alert.ca_file else {
        return Ok(shared.clone());
    };
    let pem = read_secret(path)?;
    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|source| {
        DeliveryError::Certificate {
            path: path.clone(),
            source,
        }
    })?;
    http_client(Some(ca)).map_err(DeliveryError::Http)
}

/// A file's text, trimmed: an address, a token or a CA.
fn read_secret(path: &std::path::Path) -> Result<String, DeliveryError> {
    std::fs::read_to_string(path)
        .map(|text| text.trim().to_string())
        .map_err(|source| DeliveryError::Read {
            path: path.to_path_buf(),
            source,
        })
}

/// Why a delivery failed, without the address (it may hold a token).
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("reading {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ca_file {path}: not a PEM certificate: {source}")]
    Certificate {
        path: std::path::PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("{0}")]
    Address(String),
    #[error("{0}")]
    Http(reqwest::Error),
    #[error("the provider answered {0}")]
    Status(reqwest::StatusCode),
}

async fn deliver_one(
    inner: &Inner,
    client: &reqwest::Client,
    store: &Mutex<Store>,
    queued: QueuedAlert,
) {
    let alert = lock(&inner.alerts).get(&queued.alert).cloned();
    let (Some(alert), Ok(event)) = (alert, serde_json::from_str::<AlertEvent>(&queued.event))
    else {
        // The alert left the config, or the row is unreadable: nothing can deliver it.
        let _ = lock(store).remove_alert(queued.id);
        return;
    };
    let result = match client_for(&alert, client) {
        Ok(client) => send(&client, &alert, &event).await,
        Err(err) => Err(err),
    };
    let delivered = result.is_ok();
    inner.metrics.alert_delivery(&alert.name, delivered);
    let written = match result {
        Ok(()) => {
            tracing::info!(alert = %alert.name, object = %event.object(), reason = %event.reason, "alert delivered");
            lock(store).remove_alert(queued.id)
        }
        Err(err) => {
            let delay = retry_delay(queued.attempts);
            tracing::warn!(alert = %alert.name, object = %event.object(), "alert not delivered: {err}; retrying in {}s", delay.as_secs());
            lock(store).retry_alert(queued.id, state::now_millis() + delay.as_millis() as i64)
        }
    };
    if let Err(err) = written {
        tracing::error!(alert = %alert.name, "updating the alert queue: {err}");
    }
}

fn retry_delay(attempts: i64) -> Duration {
    let exponent = attempts.clamp(0, 16) as u32;
    FIRST_RETRY.saturating_mul(1 << exponent).min(LAST_RETRY)
}

async fn send(
    client: &reqwest::Client,
    alert: &Alert,
    event: &AlertEvent,
) -> Result<(), DeliveryError> {
    let address = match &alert.address {
        Some(AlertAddress::Inline(address)) => address.clone(),
        Some(AlertAddress::File(path)) => read_secret(path)?,
        None => providers::TELEGRAM_API.to_string(),
    };
    let token = alert.token_file.as_deref().map(read_secret).transpose()?;
    let request = if alert.provider.is_forge() {
        let token = token.as_deref().unwrap_or_default();
        match forge::request(alert.provider, &address, token, event) {
            Ok(request) => request,
            Err(Unposted::Address(reason)) => return Err(DeliveryError::Address(reason)),
            Err(unposted) => {
                tracing::warn!(alert = %alert.name, object = %event.object(), "no commit status: {unposted}");
                None
            }
        }
    } else {
        providers::request(alert, &address, token.as_deref(), event)
    };
    let Some(request) = request else {
        return Ok(());
    };
    let ProviderRequest {
        method,
        url,
        headers,
        body,
    } = request;
    // An address_file is read only now: its URL is checked here.
    let sends_token = token.is_some() && alert.provider != AlertProvider::GenericHmac;
    if sends_token && reqwest::Url::parse(&url).is_ok_and(|url| is_plain_http_elsewhere(&url)) {
        return Err(DeliveryError::Address(format!(
            "the address is {CLEAR_TEXT_TOKEN}"
        )));
    }
    let method = if method == "PUT" {
        reqwest::Method::PUT
    } else {
        reqwest::Method::POST
    };
    let mut builder = client
        .request(method, url)
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        builder = builder.header(name, value);
    }
    let response = builder
        .send()
        .await
        .map_err(|err| DeliveryError::Http(err.without_url()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(DeliveryError::Status(response.status()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AlertProvider;

    fn alert(events: &[&str], severity: Severity, exclude: &[&str]) -> Alert {
        Alert {
            name: "ops".into(),
            provider: AlertProvider::Generic,
            address: Some(AlertAddress::Inline("http://127.0.0.1:9/".into())),
            token_file: None,
            ca_file: None,
            channel: None,
            username: None,
            severity,
            events: events.iter().map(|e| e.to_string()).collect(),
            exclude: exclude.iter().map(|e| e.to_string()).collect(),
            summary: None,
        }
    }

    #[test]
    fn patterns_severity_and_exclusions_pick_the_outcomes() {
        let all_kustomizations = alert(&["kustomization/*", "git/fleet"], Severity::Info, &[]);
        assert!(wants(
            &all_kustomizations,
            "kustomization/apps",
            Severity::Info,
            "ok"
        ));
        assert!(wants(
            &all_kustomizations,
            "git/fleet",
            Severity::Error,
            "down"
        ));
        assert!(!wants(
            &all_kustomizations,
            "git/other",
            Severity::Error,
            "down"
        ));
        assert!(!wants(
            &all_kustomizations,
            "helm_release/apps",
            Severity::Info,
            "ok"
        ));
        let errors = alert(&["*"], Severity::Error, &["^Dependency not ready"]);
        assert!(!wants(
            &errors,
            "kustomization/apps",
            Severity::Info,
            "applied"
        ));
        assert!(wants(
            &errors,
            "kustomization/apps",
            Severity::Error,
            "build failed"
        ));
        assert!(!wants(
            &errors,
            "kustomization/apps",
            Severity::Error,
            "Dependency not ready: infra"
        ));
    }

    #[test]
    fn only_changes_are_queued_and_a_flapping_object_is_rate_limited() -> Result<(), state::Error> {
        let store = Store::open_in_memory()?;
        let Ok(mut config) = Config::parse(std::path::Path::new("k.toml"), "") else {
            panic!("an empty config is valid");
        };
        config
            .alerts
            .insert("ops".into(), alert(&["*"], Severity::Info, &[]));
        let alerts = Alerts::new(&config, Metrics::default());
        let record = |ready: bool| -> Result<(), state::Error> {
            let before = alerts.before(&store, "git", "fleet");
            let outcome = match ready {
                true => state::SourceOutcome::Ready {
                    revision: "main@sha1:abc",
                    digest: "sha256:0",
                    path: std::path::Path::new("/a.tar.gz"),
                    inputs: "",
                    new_artifact: false,
                },
                false => state::SourceOutcome::Failed {
                    reason: "GitOperationFailed",
                    message: "down",
                },
            };
            store.record_source_outcome(
                "git",
                "fleet",
                "/srv/fleet",
                state::now_millis(),
                outcome,
            )?;
            alerts.recorded(&store, before, "git", "fleet", "m");
            Ok(())
        };
        record(true)?;
        assert_eq!(store.queued_alerts()?, 1, "the first outcome is news");
        record(true)?;
        assert_eq!(store.queued_alerts()?, 1, "a no-op run sends nothing");
        let mut ready = true;
        for _ in 0..20 {
            ready = !ready;
            record(ready)?;
        }
        assert_eq!(store.queued_alerts()?, i64::from(BURST));
        Ok(())
    }

    #[test]
    fn a_newer_commit_status_replaces_the_one_queued_for_the_same_commit(
    ) -> Result<(), state::Error> {
        let shared = Mutex::new(Store::open_in_memory()?);
        let Ok(mut config) = Config::parse(std::path::Path::new("k.toml"), "") else {
            panic!("an empty config is valid");
        };
        let mut forge = alert(&["kustomization/*"], Severity::Info, &[]);
        forge.provider = AlertProvider::Gitea;
        config.alerts.insert("ops".into(), forge);
        let alerts = Alerts::new(&config, Metrics::default());
        let record = |ready: bool, revision: &str| -> Result<(), state::Error> {
            let store = lock(&shared);
            let before = alerts.before(&store, "kustomization", "apps");
            let outcome = state::KustomizationOutcome {
                ready,
                reason: if ready {
                    "ReconciliationSucceeded"
                } else {
                    "HealthCheckFailed"
                },
                message: "m",
                attempted_revision: Some(revision),
                applied_revision: ready.then_some(revision),
                duration_ms: 1,
                deletion_policy: "delete",
            };
            store.record_kustomization_outcome(
                "apps",
                "git/fleet",
                state::now_millis(),
                outcome,
            )?;
            alerts.recorded(&store, before, "kustomization", "apps", "m");
            Ok(())
        };
        alerts.progressing(&shared, "kustomization", "apps", "main@sha1:a", "waiting");
        assert_eq!(lock(&shared).queued_alerts()?, 1, "pending on commit a");
        record(true, "main@sha1:a")?;
        assert_eq!(
            lock(&shared).queued_alerts()?,
            1,
            "success replaced pending"
        );
        alerts.progressing(&shared, "kustomization", "apps", "main@sha1:a", "waiting");
        assert_eq!(lock(&shared).queued_alerts()?, 1, "commit a is no news");
        alerts.progressing(&shared, "kustomization", "apps", "main@sha1:b", "waiting");
        record(false, "main@sha1:b")?;
        let queued = lock(&shared).due_alerts(i64::MAX, 10)?;
        let revisions: Vec<String> = queued
            .iter()
            .filter_map(|row| serde_json::from_str::<AlertEvent>(&row.event).ok())
            .map(|event| format!("{} {}", event.metadata["revision"], event.reason))
            .collect();
        assert_eq!(
            revisions,
            [
                "main@sha1:a ReconciliationSucceeded",
                "main@sha1:b HealthCheckFailed"
            ]
        );
        Ok(())
    }

    #[test]
    fn retries_back_off_to_the_last_delay() {
        assert_eq!(retry_delay(0), FIRST_RETRY);
        assert_eq!(retry_delay(1), FIRST_RETRY * 2);
        assert_eq!(retry_delay(40), LAST_RETRY);
    }
}
