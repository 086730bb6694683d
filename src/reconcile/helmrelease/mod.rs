//! The Helm release reconciler: Flux's HelmRelease, without a CRD.
//!
//! # Design
//! [`reconcile`] is the policy shell, like the kustomization's: suspend,
//! `depends_on`, the chart artifact, the values. Then it asks Helm's
//! storage for the release (`kedge-helm status`), lets the pure planner
//! ([`plan`]) pick the next action, runs it through `kedge-helm`, records
//! a snapshot of what it did, and plans again — until the release is in
//! sync, an action failed, or retries are exhausted.
//!
//! # Guarantees
//! - The desired state is a digest of inputs (chart package, values),
//!   never of rendered output.
//! - Every action leaves an event and a status row; the snapshot of the
//!   last action survives restarts, so retries are bounded across them.
//! - A release renamed or moved (release name, namespaces, chart name) is
//!   uninstalled from where kedge installed it before it is installed anew.
//! - `post_renderers` run in kedge (its kustomize, [`overlay::post_render`])
//!   when the helper sends the rendered manifest back; they are part of
//!   the desired digest, so changing them upgrades the release.
//! - The helper's logs carry kedge's name of the release (`HELMRELEASE=`)
//!   and Helm's (`RELEASE=`).

pub mod plan;
pub mod values;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::kustomization::{self, lock, Action, Context};
use super::overlay;
use crate::apply::{ApplyOptions, DriftIgnore, ObjRef, Owner};
use crate::config::{
    Config, CrdPolicy, DeletionPolicy, Dependency, HelmRelease, ReleaseDriftMode,
    RemediationStrategy,
};
use crate::helm::{self, Helper, Op, Outcome, ReleaseSummary, Request};
use crate::source;
use crate::state::{self, Event, HelmReleaseStatus, Severity};

use plan::{Desired, LastAction, Observed, Plan, ReleaseStatus, Snapshot, UpgradeStrategy};

/// The kind in events, status and the CLI: `helm_release/NAME`.
pub const KIND: &str = crate::config::HelmRelease::KIND;
/// The `kedge.dev/kind` label value of a release's objects.
pub const OWNER_KIND: &str = "HelmRelease";
/// How soon a release waiting for a dependency or its chart looks again.
pub const DEPENDENCY_RETRY: Duration = Duration::from_secs(5);
/// How soon a release whose action failed is tried again (remediation
/// already ran; retries are counted by the planner).
pub const FAILURE_RETRY: Duration = Duration::from_secs(10);
/// The most Helm actions of one reconcile (e.g. unlock, rollback, upgrade,
/// test): a bound, not a target.
const MAX_STEPS: usize = 6;

/// What the release reconciler shares across runs.
#[derive(Clone)]
pub struct ReleaseContext {
    pub ctx: Context,
    /// `Err` when `kedge-helm` is not installed (the config is then
    /// refused, so only a helper removed at run time gets here).
    pub helper: Result<Helper, PathBuf>,
    pub kubeconfig: Option<PathBuf>,
}

/// Why a run stopped before the planner could act.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("waiting for the chart artifact of {chart}")]
    NoChartYet { chart: String },
    #[error("values: {0}")]
    Values(#[from] values::Error),
    #[error(transparent)]
    Helm(#[from] helm::Error),
    #[error(transparent)]
    State(#[from] state::Error),
    #[error("the snapshot of the last action cannot be read: {0}")]
    Snapshot(#[from] serde_json::Error),
    #[error("drift detection: {0}")]
    Drift(String),
    #[error("drift_detection.ignore: {0}")]
    DriftIgnore(#[from] crate::apply::IgnoreError),
}

impl Error {
    /// The Flux condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NoChartYet { .. } => "ArtifactFailed",
            Error::Values(_) => "ValuesFailed",
            Error::Helm(helm::Error::NotInstalled { .. }) => "HelperMissing",
            Error::Helm(_) => "ReconciliationFailed",
            Error::State(_) | Error::Snapshot(_) => "ReconciliationFailed",
            Error::Drift(_) => "DriftCorrectionFailed",
            Error::DriftIgnore(_) => "ReconciliationFailed",
        }
    }
}

/// Reconciles `release` once and records the outcome; `drifted` says a
/// watch saw its objects changed since the last run.
pub async fn reconcile(
    rc: &ReleaseContext,
    config: &Config,
    release: &HelmRelease,
    drifted: bool,
) -> Action {
    let started = Instant::now();
    let mut row = load_row(rc, release);
    if release.suspend {
        finish(
            rc,
            &mut row,
            started,
            false,
            "Suspended",
            "reconciliation is suspended",
        );
        return Action {
            requeue_after: release.interval,
            ready: false,
            inventory: Vec::new(),
        };
    }
    if let Some(waiting) = dependency_not_ready(rc, config, release) {
        finish(rc, &mut row, started, false, "DependencyNotReady", &waiting);
        return Action {
            requeue_after: DEPENDENCY_RETRY,
            ready: false,
            inventory: Vec::new(),
        };
    }
    let run = tokio::time::timeout(
        release.timeout + helm::RESULT_MARGIN,
        converge(rc, release, &mut row, drifted),
    )
    .await;
    let outcome = run.unwrap_or_else(|_| {
        Err(Error::Helm(helm::Error::Timeout {
            op: "reconcile",
            release: release.release_name.clone(),
            seconds: release.timeout.as_secs(),
        }))
    });
    match outcome {
        Ok(Converged::InSync { message, inventory }) => {
            finish(
                rc,
                &mut row,
                started,
                true,
                "ReconciliationSucceeded",
                &message,
            );
            Action {
                requeue_after: release.interval,
                ready: true,
                inventory,
            }
        }
        Ok(Converged::Failed { reason, message }) => {
            finish(rc, &mut row, started, false, reason, &message);
            Action {
                requeue_after: FAILURE_RETRY,
                ready: false,
                inventory: Vec::new(),
            }
        }
        Ok(Converged::Stalled { message }) => {
            finish(rc, &mut row, started, false, "RetriesExceeded", &message);
            Action {
                requeue_after: release.interval,
                ready: false,
                inventory: Vec::new(),
            }
        }
        Err(err) => {
            let retry = match err {
                Error::NoChartYet { .. } => DEPENDENCY_RETRY,
                _ => FAILURE_RETRY,
            };
            finish(rc, &mut row, started, false, err.reason(), &err.to_string());
            Action {
                requeue_after: retry,
                ready: false,
                inventory: Vec::new(),
            }
        }
    }
}

/// How a run ended once the planner was asked.
enum Converged {
    InSync {
        message: String,
        inventory: Vec<ObjRef>,
    },
    Failed {
        reason: &'static str,
        message: String,
    },
    Stalled {
        message: String,
    },
}

/// The chart, the values, then plan → act until in sync or an action fails.
async fn converge(
    rc: &ReleaseContext,
    release: &HelmRelease,
    row: &mut HelmReleaseStatus,
    drifted: bool,
) -> Result<Converged, Error> {
    let helper = helper(rc)?;
    let chart = chart_artifact(rc, release)?;
    row.last_attempted_revision = Some(chart.revision.clone());
    let chart_name = values::chart_name(&chart.path)?;
    let values = values::compose(&rc.ctx.manager, release, &chart.path).await?;
    let desired = desired(release, &chart, &chart_name, &values);
    let moved = moved_from(row, release, &chart_name);
    if let Some(old) = moved {
        uninstall_moved(rc, &helper, release, &old).await?;
        row.snapshot.clear();
    }
    remember_identity(row, release, &chart_name);
    let mut snapshot: Option<Snapshot> = match row.snapshot.as_str() {
        "" => None,
        json => Some(serde_json::from_str(json)?),
    };
    let mut acted_and_failed = false;
    for _ in 0..MAX_STEPS {
        let (observed, manifest) = status(rc, &helper, release).await?;
        let next = plan::plan(
            observed.as_ref().map(observed_of).as_ref(),
            snapshot.as_ref(),
            &desired,
        );
        let Some(op) = operation(&next) else {
            return Ok(match next {
                Plan::Stalled { why } => Converged::Stalled {
                    message: stalled_message(release, &why, snapshot.as_ref()),
                },
                _ => {
                    let summary = observed.unwrap_or_default();
                    row.release_revision = summary.revision;
                    row.last_applied_revision = Some(chart.revision.clone());
                    let inventory = drift(rc, release, &manifest, drifted).await?;
                    Converged::InSync {
                        message: format!(
                            "Helm release {}/{}.v{} is deployed with chart {}@{}",
                            summary.namespace,
                            summary.name,
                            summary.revision,
                            summary.chart_name,
                            summary.chart_version
                        ),
                        inventory,
                    }
                }
            });
        };
        // After a failed install or upgrade (and its remediation), the
        // next attempt waits for the next run: no retry loop in one run.
        if acted_and_failed && matches!(op, Op::Install | Op::Upgrade) {
            return Ok(Converged::Failed {
                reason: "RetryPending",
                message: format!(
                    "the last Helm action failed; {} is retried in {}s",
                    release.name,
                    FAILURE_RETRY.as_secs()
                ),
            });
        }
        let why = match &next {
            Plan::Upgrade { why } => format!(" ({why})"),
            _ => String::new(),
        };
        let result = match act(rc, &helper, release, op, &chart.path, &values).await {
            Err(err @ helm::Error::Stopped { .. }) => return Err(err.into()),
            other => other,
        };
        let ran = match &result {
            Ok(_) => Ran::Succeeded,
            Err(err) if err.is_interrupted() => Ran::Interrupted(err.to_string()),
            Err(err) => Ran::Failed(err.to_string()),
        };
        let after = match &result {
            Ok(outcome) => outcome.release.clone(),
            Err(helm::Error::Failed { outcome, .. }) => outcome.release.clone(),
            Err(_) => status(rc, &helper, release).await.ok().and_then(|(r, _)| r),
        };
        let updated = next_snapshot(snapshot.take(), &desired, op, &ran, after.as_ref());
        row.snapshot = serde_json::to_string(&updated)?;
        row.release_revision = after.as_ref().map_or(0, |r| r.revision);
        save(rc, row);
        snapshot = Some(updated);
        report_action(
            rc,
            release,
            op,
            &why,
            &chart.revision,
            &result,
            after.as_ref(),
        );
        acted_and_failed |= ran != Ran::Succeeded;
    }
    Ok(Converged::Failed {
        reason: "ReconciliationFailed",
        message: format!("no stable state after {MAX_STEPS} Helm actions"),
    })
}

/// A stalled release's status: why, what failed last, and what to do.
fn stalled_message(release: &HelmRelease, why: &str, snapshot: Option<&Snapshot>) -> String {
    let last = snapshot
        .map(|s| s.last_failure.as_str())
        .filter(|failure| !failure.is_empty())
        .map(|failure| format!("; the last failure: {failure}"))
        .unwrap_or_default();
    format!(
        "{why}{last}; change the config or run `kedge reconcile helmrelease {}` to try again",
        release.name
    )
}

/// How a Helm action ended, for the snapshot.
#[derive(Debug, PartialEq, Eq)]
enum Ran {
    Succeeded,
    Failed(String),
    /// The helper ended without a result: what Helm did is unknown.
    Interrupted(String),
}

/// The chart source's current artifact: the chart package.
fn chart_artifact(rc: &ReleaseContext, release: &HelmRelease) -> Result<source::Artifact, Error> {
    let store = lock(&rc.ctx.store);
    source::store::latest_artifact(&store, release.chart.kind.as_str(), &release.chart.name)?
        .ok_or_else(|| Error::NoChartYet {
            chart: release.chart.to_string(),
        })
}

fn desired(
    release: &HelmRelease,
    chart: &source::Artifact,
    chart_name: &str,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Desired {
    let mut digest = Sha256::new();
    for part in [chart_name, &chart.revision, &chart.digest] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    digest.update(
        serde_json::Value::Object(values.clone())
            .to_string()
            .as_bytes(),
    );
    // Only when given, so releases without post-renderers keep the digest
    // they had before post-renderers existed (no upgrade on kedge's update).
    if !release.post_renderers.is_empty() {
        digest.update([0]);
        digest.update(format!("{:?}", release.post_renderers).as_bytes());
    }
    Desired {
        digest: format!("sha256:{:x}", digest.finalize()),
        chart_name: chart_name.to_string(),
        install_retries: release.install.retries,
        upgrade_retries: release.upgrade.retries,
        upgrade_strategy: match release.upgrade.strategy {
            RemediationStrategy::Rollback => UpgradeStrategy::Rollback,
            RemediationStrategy::Uninstall => UpgradeStrategy::Uninstall,
        },
        remediate_last_failure: release.upgrade.remediate_last_failure
            || release.install.remediate_last_failure,
        test: release.test,
    }
}

fn observed_of(release: &ReleaseSummary) -> Observed {
    Observed {
        revision: release.revision,
        status: ReleaseStatus::parse(&release.status),
        chart_name: release.chart_name.clone(),
        chart_version: release.chart_version.clone(),
        config_digest: release.config_digest.clone(),
    }
}

/// The helper operation of a plan; `None` when there is nothing to run.
fn operation(plan: &Plan) -> Option<Op> {
    match plan {
        Plan::Install => Some(Op::Install),
        Plan::Upgrade { .. } => Some(Op::Upgrade),
        Plan::Test => Some(Op::Test),
        Plan::Rollback => Some(Op::Rollback),
        Plan::Uninstall => Some(Op::Uninstall),
        Plan::Unlock => Some(Op::Unlock),
        Plan::InSync | Plan::Stalled { .. } => None,
    }
}

/// The snapshot after running `op`: failures counted per desired state.
fn next_snapshot(
    previous: Option<Snapshot>,
    desired: &Desired,
    op: Op,
    ran: &Ran,
    after: Option<&ReleaseSummary>,
) -> Snapshot {
    let failed = matches!(ran, Ran::Failed(_));
    let mut snapshot = match previous {
        Some(s) if s.desired_digest == desired.digest => s,
        _ => Snapshot {
            desired_digest: desired.digest.clone(),
            ..Snapshot::default()
        },
    };
    let last = match op {
        Op::Install => Some(LastAction::Install),
        Op::Upgrade => Some(LastAction::Upgrade),
        Op::Test => Some(LastAction::Test),
        Op::Rollback => Some(LastAction::Rollback),
        Op::Uninstall => Some(LastAction::Uninstall),
        // Unlocking is not an action on the release's content.
        _ => snapshot.last_action,
    };
    if failed {
        let installing =
            op == Op::Install || (op == Op::Test && after.is_none_or(|r| r.revision <= 1));
        match op {
            Op::Install | Op::Upgrade | Op::Test if installing => snapshot.install_failures += 1,
            Op::Upgrade | Op::Test => snapshot.upgrade_failures += 1,
            _ => {}
        }
    }
    if op == Op::Test && *ran == Ran::Succeeded {
        snapshot.tested_revision = after.map_or(0, |r| r.revision);
    }
    match ran {
        Ran::Failed(message) | Ran::Interrupted(message) => {
            snapshot.last_failure.clone_from(message)
        }
        Ran::Succeeded if matches!(op, Op::Install | Op::Upgrade | Op::Test) => {
            snapshot.last_failure.clear()
        }
        Ran::Succeeded => {}
    }
    snapshot.last_action = last;
    snapshot.failed = failed && op != Op::Unlock;
    // An unlocked release was left pending by an action that never ended.
    snapshot.interrupted = op == Op::Unlock || matches!(ran, Ran::Interrupted(_));
    snapshot.revision = after.map_or(0, |r| r.revision);
    snapshot.config_digest = after.map(|r| r.config_digest.clone()).unwrap_or_default();
    snapshot
}

/// The release in Helm's storage (`None` if there is none) and, with drift
/// detection on, its stored manifest (else empty): one helper run.
async fn status(
    rc: &ReleaseContext,
    helper: &Helper,
    release: &HelmRelease,
) -> Result<(Option<ReleaseSummary>, String), Error> {
    let mut request = request(rc, release, Op::Status, None, serde_json::Map::new());
    request.with_manifest = release.drift != ReleaseDriftMode::Disabled;
    let outcome = helper.run(&request, std::future::pending()).await?;
    Ok((outcome.release, outcome.manifest))
}

async fn act(
    rc: &ReleaseContext,
    helper: &Helper,
    release: &HelmRelease,
    op: Op,
    chart: &Path,
    values: &serde_json::Map<String, serde_json::Value>,
) -> Result<Outcome, helm::Error> {
    let chart = matches!(op, Op::Install | Op::Upgrade).then_some(chart);
    let request = request(rc, release, op, chart, values.clone());
    tracing::info!(helmrelease = %release.name, "helm {}", op.as_str());
    run(helper, release, &request).await
}

/// Runs `request`, answering the helper's post-render requests with the
/// release's post-renderers.
async fn run(
    helper: &Helper,
    release: &HelmRelease,
    request: &Request,
) -> Result<Outcome, helm::Error> {
    let post_render = |manifest: &str| overlay::post_render(&release.post_renderers, manifest);
    helper
        .run_post_rendering(request, &post_render, std::future::pending())
        .await
}

fn request(
    rc: &ReleaseContext,
    release: &HelmRelease,
    op: Op,
    chart: Option<&Path>,
    values: serde_json::Map<String, serde_json::Value>,
) -> Request {
    let crds = match op {
        Op::Install => Some(crd_policy(release.install.crds)),
        Op::Upgrade => Some(crd_policy(release.upgrade.crds)),
        _ => None,
    };
    Request {
        kubeconfig: rc.kubeconfig.clone(),
        storage_namespace: Some(release.storage_namespace.clone()),
        chart: chart.map(Path::to_path_buf),
        values,
        timeout_seconds: release.timeout.as_secs(),
        wait: release.wait,
        wait_for_jobs: release.wait,
        max_history: release.max_history,
        crds,
        create_namespace: release.install.create_namespace,
        cleanup_on_fail: release.upgrade.cleanup_on_fail,
        force: release.upgrade.force,
        description: format!("kedge {} of helm_release/{}", op.as_str(), release.name),
        labels: owner(release)
            .labels()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        post_render: chart.is_some() && !release.post_renderers.is_empty(),
        log_name: release.name.clone(),
        ..Request::new(op, &release.release_name, &release.target_namespace)
    }
}

fn owner(release: &HelmRelease) -> Owner {
    Owner::new(&release.name, OWNER_KIND)
}

/// With drift detection on: the release's objects, as Helm stored them, for
/// the runner to watch; after a watch saw them change, reports the drift
/// and (mode `enabled`) applies them again, as field manager kedge.
async fn drift(
    rc: &ReleaseContext,
    release: &HelmRelease,
    manifest: &str,
    drifted: bool,
) -> Result<Vec<ObjRef>, Error> {
    if release.drift == ReleaseDriftMode::Disabled {
        return Ok(Vec::new());
    }
    let objects = manifest_objects(rc, release, manifest).await?;
    let inventory: Vec<ObjRef> = objects
        .iter()
        .enumerate()
        .filter_map(|(index, object)| ObjRef::from_manifest(index, object).ok())
        .collect();
    if !drifted {
        return Ok(inventory);
    }
    if release.drift == ReleaseDriftMode::Warn {
        let message = "objects of the release were changed in the cluster; drift_detection mode is warn: not corrected";
        tracing::warn!(helmrelease = %release.name, reason = "DriftDetected", "{message}");
        record_event(rc, &release.name, Severity::Error, "DriftDetected", message);
        return Ok(inventory);
    }
    let options = ApplyOptions {
        drift_ignore: std::sync::Arc::new(drift_ignore(release)?),
        ..ApplyOptions::default()
    };
    let changes = rc
        .ctx
        .manager
        .apply(objects, &owner(release), &options)
        .await
        .map_err(|err| Error::Drift(err.to_string()))?;
    let corrected: Vec<String> = changes
        .entries
        .iter()
        .filter(|c| c.action != crate::apply::Action::Unchanged)
        .map(ToString::to_string)
        .collect();
    if !corrected.is_empty() {
        let message = format!("drift corrected: {}", corrected.join(", "));
        tracing::info!(helmrelease = %release.name, reason = "DriftCorrected", "{message}");
        record_event(
            rc,
            &release.name,
            Severity::Info,
            "DriftCorrected",
            &message,
        );
    }
    Ok(inventory)
}

/// A release as `kedge build` shows it and `kedge diff` compares it.
pub struct Rendered {
    /// The chart's revision (its version) it was rendered at.
    pub chart_revision: String,
    /// The release's objects, each in a namespace.
    pub objects: Vec<serde_json::Value>,
    /// Hook manifests (tests included), as Helm renders them.
    pub hooks: Vec<String>,
}

/// Renders `release` as an install or upgrade now would (server-side
/// dry-run, values, post-renderers, kedge's labels), at the chart's
/// current artifact. Nothing is applied or stored.
pub async fn render(rc: &ReleaseContext, release: &HelmRelease) -> Result<Rendered, Error> {
    let helper = helper(rc)?;
    let chart = chart_artifact(rc, release)?;
    let values = values::compose(&rc.ctx.manager, release, &chart.path).await?;
    let (installed, _) = status(rc, &helper, release).await?;
    let is_upgrade = installed.is_some();
    let mut request = request(rc, release, Op::Render, Some(chart.path.as_path()), values);
    request.is_upgrade = is_upgrade;
    request.crds = Some(crd_policy(if is_upgrade {
        release.upgrade.crds
    } else {
        release.install.crds
    }));
    let outcome = run(&helper, release, &request).await?;
    Ok(Rendered {
        chart_revision: chart.revision,
        objects: manifest_objects(rc, release, &outcome.manifest).await?,
        hooks: outcome
            .hooks
            .into_iter()
            .map(|hook| hook.manifest)
            .collect(),
    })
}

/// `drift_detection.ignore`, compiled as a kustomization's rules are.
pub fn drift_ignore(release: &HelmRelease) -> Result<DriftIgnore, Error> {
    Ok(overlay::drift_ignore(&release.drift_ignore)?)
}

/// The objects of a release's `manifest`, namespaced objects without a
/// namespace put in the release's.
async fn manifest_objects(
    rc: &ReleaseContext,
    release: &HelmRelease,
    manifest: &str,
) -> Result<Vec<serde_json::Value>, Error> {
    let mut objects = Vec::new();
    for document in serde_yaml::Deserializer::from_str(manifest) {
        let object = serde_json::Value::deserialize(document)
            .map_err(|err| Error::Drift(format!("the stored manifest: {err}")))?;
        if object.is_object() {
            objects.push(object);
        }
    }
    for (index, object) in objects.iter_mut().enumerate() {
        let Ok(objref) = ObjRef::from_manifest(index, object) else {
            continue;
        };
        let namespaced = !matches!(rc.ctx.manager.kinds().resolve(&objref).await, Ok(Some(kind)) if !kind.namespaced);
        let metadata = object
            .get_mut("metadata")
            .and_then(serde_json::Value::as_object_mut);
        if let (true, Some(metadata)) = (namespaced, metadata) {
            metadata
                .entry("namespace")
                .or_insert_with(|| serde_json::Value::String(release.target_namespace.clone()));
        }
    }
    Ok(objects)
}

fn crd_policy(policy: CrdPolicy) -> helm::CrdPolicy {
    match policy {
        CrdPolicy::Skip => helm::CrdPolicy::Skip,
        CrdPolicy::Create => helm::CrdPolicy::Create,
        CrdPolicy::CreateReplace => helm::CrdPolicy::CreateReplace,
    }
}

/// Logs and records one Helm action, as Flux's events name them.
fn report_action(
    rc: &ReleaseContext,
    release: &HelmRelease,
    op: Op,
    why: &str,
    chart_revision: &str,
    result: &Result<Outcome, helm::Error>,
    after: Option<&ReleaseSummary>,
) {
    let verb = capitalised(op.as_str());
    let revision = after.map_or(0, |r| r.revision);
    let (severity, reason, message) = match result {
        Ok(_) => (
            Severity::Info,
            format!("{verb}Succeeded"),
            format!(
                "Helm {} succeeded for release {}/{}.v{revision} with chart {}@{chart_revision}{why}",
                op.as_str(), release.target_namespace, release.release_name, release.chart
            ),
        ),
        Err(err) => (
            Severity::Error,
            format!("{verb}Failed"),
            format!("Helm {} failed for release {}/{}{why}: {err}", op.as_str(), release.target_namespace, release.release_name),
        ),
    };
    if severity == Severity::Info {
        tracing::info!(helmrelease = %release.name, chart = %release.chart, revision = chart_revision, reason = %reason, "{message}");
    } else {
        tracing::warn!(helmrelease = %release.name, chart = %release.chart, revision = chart_revision, reason = %reason, "{message}");
    }
    record_event(rc, &release.name, severity, &reason, &message);
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn record_event(rc: &ReleaseContext, name: &str, severity: Severity, reason: &str, message: &str) {
    let event = Event::new(KIND, name, severity, reason, message);
    if let Err(err) = lock(&rc.ctx.store).record_event(&event) {
        tracing::error!(helmrelease = %name, "recording event: {err}");
    }
}

/// `Some(why)` when a dependency is not ready.
fn dependency_not_ready(
    rc: &ReleaseContext,
    config: &Config,
    release: &HelmRelease,
) -> Option<String> {
    release.depends_on.iter().find_map(|dependency| {
        let ready = match dependency {
            Dependency::Kustomization(name) => kustomization::is_ready(&rc.ctx, config, name),
            Dependency::HelmRelease(name) => is_ready(rc, config, name),
        };
        (!ready).then(|| format!("dependency '{dependency}' is not ready"))
    })
}

/// Whether release `name` is Ready at its chart's current revision.
pub fn is_ready(rc: &ReleaseContext, config: &Config, name: &str) -> bool {
    let Some(release) = config.helm_releases.get(name) else {
        return false;
    };
    let store = lock(&rc.ctx.store);
    let row = store.helm_release_status(name).ok().flatten();
    row.is_some_and(|r| {
        kustomization::ready_at_latest(&store, &release.chart, r.ready, r.last_applied_revision)
    })
}

/// Where kedge installed the release before, if that is not where the
/// config now puts it.
fn moved_from(
    row: &HelmReleaseStatus,
    release: &HelmRelease,
    chart_name: &str,
) -> Option<HelmReleaseStatus> {
    if row.release_name.is_empty() {
        return None;
    }
    let same = row.release_name == release.release_name
        && row.target_namespace == release.target_namespace
        && row.storage_namespace == release.storage_namespace
        && row.chart_name == chart_name;
    (!same).then(|| row.clone())
}

fn remember_identity(row: &mut HelmReleaseStatus, release: &HelmRelease, chart_name: &str) {
    row.release_name = release.release_name.clone();
    row.target_namespace = release.target_namespace.clone();
    row.storage_namespace = release.storage_namespace.clone();
    row.chart_name = chart_name.to_string();
}

async fn uninstall_moved(
    rc: &ReleaseContext,
    helper: &Helper,
    release: &HelmRelease,
    old: &HelmReleaseStatus,
) -> Result<(), Error> {
    let message = format!(
        "release name, namespace or chart changed: uninstalling {}/{} (chart {}) before installing {}/{}",
        old.target_namespace, old.release_name, old.chart_name, release.target_namespace, release.release_name
    );
    tracing::info!(helmrelease = %release.name, reason = "Uninstalling", "{message}");
    record_event(rc, &release.name, Severity::Info, "Uninstalling", &message);
    uninstall(rc, helper, old, release.timeout).await
}

/// `helm uninstall` of the release `row` says kedge installed; a release
/// that is already gone is not an error.
async fn uninstall(
    rc: &ReleaseContext,
    helper: &Helper,
    row: &HelmReleaseStatus,
    timeout: Duration,
) -> Result<(), Error> {
    let request = Request {
        kubeconfig: rc.kubeconfig.clone(),
        storage_namespace: Some(row.storage_namespace.clone()),
        timeout_seconds: timeout.as_secs(),
        wait: true,
        log_name: row.name.clone(),
        ..Request::new(Op::Uninstall, &row.release_name, &row.target_namespace)
    };
    helper.run(&request, std::future::pending()).await?;
    Ok(())
}

/// Handles a release removed from the config: uninstalled (or left, with
/// `deletion_policy = "orphan"`), then forgotten. Returns what was done.
pub async fn remove(rc: &ReleaseContext, name: &str) -> Result<String, Error> {
    let Some(row) = lock(&rc.ctx.store).helm_release_status(name)? else {
        return Ok(format!("{KIND}/{name} had no state"));
    };
    let message = if row.release_name.is_empty() {
        format!("{KIND}/{name} was never installed")
    } else if row.deletion_policy == "orphan" {
        format!(
            "Helm release {}/{} left in place (deletion_policy = \"orphan\")",
            row.target_namespace, row.release_name
        )
    } else {
        let helper = helper(rc)?;
        uninstall(rc, &helper, &row, Duration::from_secs(300)).await?;
        format!(
            "Helm release {}/{} uninstalled",
            row.target_namespace, row.release_name
        )
    };
    tracing::info!(helmrelease = %name, reason = "Removed", "{message}");
    record_event(rc, name, Severity::Info, "Removed", &message);
    lock(&rc.ctx.store).remove_helm_release(name)?;
    Ok(message)
}

fn helper(rc: &ReleaseContext) -> Result<Helper, helm::Error> {
    rc.helper
        .clone()
        .map_err(|path| helm::Error::NotInstalled { path })
}

fn load_row(rc: &ReleaseContext, release: &HelmRelease) -> HelmReleaseStatus {
    let stored = lock(&rc.ctx.store).helm_release_status(&release.name);
    let mut row = match stored {
        Ok(Some(row)) => row,
        Ok(None) => HelmReleaseStatus {
            name: release.name.clone(),
            ..HelmReleaseStatus::default()
        },
        Err(err) => {
            tracing::error!(helmrelease = %release.name, "reading its state: {err}");
            HelmReleaseStatus {
                name: release.name.clone(),
                ..HelmReleaseStatus::default()
            }
        }
    };
    row.chart = release.chart.to_string();
    row.deletion_policy = match release.deletion_policy {
        DeletionPolicy::Delete => "delete",
        DeletionPolicy::Orphan => "orphan",
    }
    .to_string();
    row
}

fn save(rc: &ReleaseContext, row: &HelmReleaseStatus) {
    if let Err(err) = lock(&rc.ctx.store).save_helm_release(row) {
        tracing::error!(helmrelease = %row.name, "recording its state: {err}");
    }
}

/// Writes the run's outcome: status row and one event.
fn finish(
    rc: &ReleaseContext,
    row: &mut HelmReleaseStatus,
    started: Instant,
    ready: bool,
    reason: &str,
    message: &str,
) {
    let now = state::now_millis();
    let changed = row.ready != ready || row.reason != reason || row.message != message;
    row.ready = ready;
    row.reason = reason.to_string();
    row.message = message.to_string();
    row.last_attempt_at = Some(now);
    row.last_duration_ms = Some(started.elapsed().as_millis() as i64);
    if ready {
        row.last_success_at = Some(now);
        row.consecutive_failures = 0;
    } else if reason != "Suspended" && reason != "DependencyNotReady" {
        row.consecutive_failures += 1;
    }
    let observer = &rc.ctx.observer;
    let before = observer
        .alerts
        .before(&lock(&rc.ctx.store), KIND, &row.name);
    save(rc, row);
    observer
        .alerts
        .recorded(&lock(&rc.ctx.store), before, KIND, &row.name, message);
    observer
        .metrics
        .reconciled(KIND, &row.name, started.elapsed());
    if changed {
        let severity = if ready || reason == "Suspended" || reason == "DependencyNotReady" {
            Severity::Info
        } else {
            Severity::Error
        };
        if severity == Severity::Info {
            tracing::info!(helmrelease = %row.name, reason, "{message}");
        } else {
            tracing::warn!(helmrelease = %row.name, reason, "{message}");
        }
        record_event(rc, &row.name, severity, reason, message);
    }
}
