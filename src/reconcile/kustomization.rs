//! The kustomization reconciler: Flux's Kustomization, without a CRD.
//!
//! # Design
//! [`reconcile`] is the policy shell: it decides suspend and `depends_on`,
//! runs the pipeline, and writes the outcome to `state` exactly once on
//! every path, with a Flux reason. [`pipeline`] is a straight list of steps:
//! artifact → unpack → build → post-build (decrypt, substitute) → apply →
//! inventory → prune → health.
//!
//! The reconciler never learns why it runs (interval, new revision, drift,
//! a request): it always recomputes from the artifact and the cluster.
//!
//! # Guarantees
//! - Nothing is pruned when the build or the apply failed.
//! - The inventory in SQLite never loses an object kedge may have created
//!   and has not deleted: it is widened to old ∪ planned *before* the first
//!   write of an apply (write-ahead), and narrowed only to new ∪ (prunes
//!   that failed) after a prune. An apply cut short at any point leaves
//!   every object it created tracked, and the next run prunes those its
//!   revision no longer declares.
//!
//! # Assumptions
//! One kedge per cluster: a kustomization that never applied, on a daemon
//! started with an empty database, adopts every object labelled with its
//! name and kind, wherever it is in the cluster. A second agent using the
//! same kustomization names would be adopted (and pruned).
//!
//! Drift mode `detect`: a run whose built objects are those last applied
//! (same digest) only compares them with the cluster by dry-run and
//! reports what drifted; any change of the declared objects is applied
//! (reverting drift on them, as a Helm upgrade would).

// Errors carry the apply and health errors, which carry the objects they
// are about; built once per failed run, never in a hot loop.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::overlay::{drift_ignore, flux_overrides, set_common_metadata};
use super::scheduler::SourceTriggers;
use super::unpack::Unpacker;
use crate::apply::{
    self, inventory, ApplyOptions, ChangeSet, Manager, ObjRef, Owner, PruneOptions,
};
use crate::config::{Config, DeletionPolicy, DriftMode, Kustomization, SourceRef};
use crate::kustomize::{self, FluxOverrides};
use crate::observe::{Metrics, Observer};
use crate::postbuild;
use crate::source;
use crate::state::{self, Event, KustomizationOutcome, Severity, Store};

/// The `kedge.dev/kind` label value of objects applied by a kustomization.
pub const OWNER_KIND: &str = "Kustomization";
/// How much of the timeout a health wait leaves for recording its outcome.
const HEALTH_MARGIN: Duration = Duration::from_secs(1);

/// What the reconciler shares across runs.
#[derive(Clone)]
pub struct Context {
    pub manager: Manager,
    pub store: Arc<Mutex<Store>>,
    /// Artifacts unpacked for builds, shared by all kustomizations.
    pub unpacker: Arc<Unpacker>,
    /// Asks the running scheduler to sync (and so repair) a source whose
    /// artifact cannot be used.
    pub source_triggers: SourceTriggers,
    /// The objects labelled by kustomizations, scanned once, the first time
    /// a kustomization with no recorded state needs them.
    pub labelled: Arc<tokio::sync::OnceCell<apply::Owned>>,
    /// When the daemon started (milliseconds since the epoch).
    pub started_at: i64,
    /// Per source, done once it has been fetched since the start: one
    /// waiter per source, however many kustomizations it feeds.
    pub first_fetches: Arc<Mutex<HashMap<SourceRef, Arc<tokio::sync::OnceCell<()>>>>>,
    /// Whether the state database held nothing when the daemon started (a
    /// new node, or a lost database): only then can objects labelled by a
    /// kustomization exist without its inventory.
    pub state_was_empty: bool,
    /// Counts runs, applied objects and drift; alerts on changed outcomes.
    pub observer: Observer,
}

/// What the caller does next: run again after `requeue_after`, and watch
/// `inventory` for drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub requeue_after: Duration,
    pub ready: bool,
    /// The objects to watch for drift: the inventory after this run (empty
    /// when nothing was ever applied), less what its apply skipped by the
    /// objects' policies.
    pub inventory: Vec<ObjRef>,
}

/// Why a run stopped, each mapped to one Flux reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source's artifact cannot be unpacked.
    #[error("artifact of {source_ref}: {message}")]
    Artifact { source_ref: String, message: String },
    /// The source has not produced its first artifact: waiting, not failing.
    #[error("waiting for the first artifact of {source_ref}")]
    NoArtifactYet { source_ref: String },
    /// The path does not exist in the artifact.
    #[error("path {path} not found in revision {revision}")]
    InvalidPath { path: String, revision: String },
    /// kustomize build failed. `message` names files by their path in the
    /// repository, `revision` is `git/NAME@<revision>`.
    #[error("build of {path} at {revision}: {message}")]
    Build {
        path: String,
        revision: String,
        message: String,
    },
    /// Decryption or variable substitution failed (Flux reports both as a
    /// failed build). Never holds a decrypted value.
    #[error("post-build of {path} at {revision}: {message}")]
    PostBuild {
        path: String,
        revision: String,
        message: String,
    },
    /// Server-side apply (or its dry-run) failed.
    #[error(transparent)]
    Apply(#[from] apply::ApplyError),
    /// Some stale objects could not be deleted.
    #[error("prune failed: {0}")]
    Prune(String),
    /// Health checks did not pass within the timeout.
    #[error(transparent)]
    Health(#[from] apply::HealthError),
    /// The state database failed.
    #[error(transparent)]
    State(#[from] state::Error),
    /// The cluster's objects could not be scanned for kedge's labels.
    #[error("finding objects labelled by kustomizations: {0}")]
    Discovery(#[from] apply::DiscoveryError),
    /// A stored inventory entry cannot be parsed.
    #[error("stored inventory: {0}")]
    Inventory(#[from] apply::ObjRefError),
    /// The blocking build task panicked or was cancelled.
    #[error("build task: {0}")]
    Task(String),
    /// A drift ignore rule cannot be compiled.
    #[error("drift.ignore: {0}")]
    DriftIgnore(#[from] apply::IgnoreError),
    /// The whole run took longer than the kustomization's `timeout`.
    #[error(
        "timed out after {timeout:?} (the kustomization's timeout); is the API server reachable?"
    )]
    TimedOut { timeout: Duration },
}

impl Error {
    /// The Flux condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Artifact { .. } | Error::NoArtifactYet { .. } => "ArtifactFailed",
            Error::InvalidPath { .. } => "InvalidPath",
            Error::Build { .. } | Error::PostBuild { .. } | Error::Task(_) => "BuildFailed",
            Error::Apply(_)
            | Error::State(_)
            | Error::Inventory(_)
            | Error::Discovery(_)
            | Error::DriftIgnore(_) => "ReconciliationFailed",
            Error::Prune(_) => "PruneFailed",
            Error::Health(_) => "HealthCheckFailed",
            Error::TimedOut { .. } => "TimedOut",
        }
    }
}

/// A successful run.
struct Applied {
    revision: String,
    changes: ChangeSet,
    pruned: usize,
    /// To watch for drift (see [`Action::inventory`]).
    inventory: Vec<ObjRef>,
    /// Objects that drifted and were left so (drift mode `detect`).
    drifted: Vec<ObjRef>,
}

/// Waits (at most the source's timeout) until `source_ref` has been
/// fetched once since the daemon started, so that a restart resumes at the
/// newest revision rather than first applying an older stored one. Returns
/// at once for a suspended or unknown source, and after the first fetch.
pub async fn first_fetch(ctx: &Context, config: &Config, source_ref: &SourceRef) {
    let Some(source) = config.source(source_ref) else {
        return;
    };
    if source.suspend() {
        return;
    }
    let done = ctx
        .first_fetches
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(source_ref.clone())
        .or_default()
        .clone();
    done.get_or_init(|| async {
        let deadline = tokio::time::Instant::now() + source.timeout();
        let fetched = || {
            lock(&ctx.store)
                .source_status(source_ref.kind.as_str(), &source_ref.name)
                .ok()
                .flatten()
                .and_then(|s| s.last_attempt_at)
                .is_some_and(|at| at >= ctx.started_at)
        };
        while !fetched() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Reconciles `kustomization` once and records the outcome.
///
/// # Guarantees
/// Exactly one outcome row is written per call, whatever happens; a
/// failure leaves the last applied revision and the inventory in place.
pub async fn reconcile(ctx: &Context, config: &Config, kustomization: &Kustomization) -> Action {
    let started = Instant::now();
    let name = &kustomization.name;
    let previous = current_inventory(ctx, name).unwrap_or_default();
    if kustomization.suspend {
        let action = Action {
            requeue_after: kustomization.interval,
            ready: false,
            inventory: previous,
        };
        record(
            ctx,
            kustomization,
            started,
            false,
            "Suspended",
            "reconciliation is suspended",
            None,
            None,
        );
        return action;
    }
    if let Some(waiting) = dependency_not_ready(ctx, config, kustomization) {
        record(
            ctx,
            kustomization,
            started,
            false,
            "DependencyNotReady",
            &waiting,
            None,
            None,
        );
        return Action {
            requeue_after: kustomization.retry_interval,
            ready: false,
            inventory: previous,
        };
    }
    let mut attempted = None;
    // Queued for a turn outside the timeout: with many kustomizations
    // starting together, the wait says nothing of this one.
    let turn = ctx.manager.set_turn().await;
    let bounded = tokio::time::timeout(
        kustomization.timeout,
        pipeline(ctx, config, kustomization, turn, &mut attempted),
    );
    let timed_out = Error::TimedOut {
        timeout: kustomization.timeout,
    };
    match bounded.await.unwrap_or(Err(timed_out)) {
        Ok(applied) => {
            let mut message = format!(
                "Applied revision: {} ({} created, {} configured, {} unchanged, {} pruned)",
                applied.revision,
                applied.changes.count(apply::Action::Created),
                applied.changes.count(apply::Action::Configured),
                applied.changes.count(apply::Action::Unchanged),
                applied.pruned,
            );
            if !applied.drifted.is_empty() {
                let drifted: Vec<String> =
                    applied.drifted.iter().map(ToString::to_string).collect();
                let drift = format!(
                    "drift not corrected (drift mode detect): {}",
                    drifted.join(", ")
                );
                tracing::warn!(kustomization = %name, revision = %applied.revision, reason = "DriftDetected", "{drift}");
                record_event(ctx, name, Severity::Info, "DriftDetected", &drift);
                message = format!("{message}; {drift}");
            }
            tracing::info!(kustomization = %name, revision = %applied.revision, reason = "ReconciliationSucceeded", "{message}");
            count_applied(&ctx.observer.metrics, name, &applied);
            let revision = Some(applied.revision.as_str());
            record(
                ctx,
                kustomization,
                started,
                true,
                "ReconciliationSucceeded",
                &message,
                revision,
                revision,
            );
            Action {
                requeue_after: kustomization.interval,
                ready: true,
                inventory: applied.inventory,
            }
        }
        Err(err) => {
            let message = format!("{err}");
            let revision = attempted.as_deref().unwrap_or("");
            if let Error::NoArtifactYet { .. } = err {
                tracing::info!(kustomization = %name, reason = err.reason(), "{message}");
            } else {
                tracing::warn!(kustomization = %name, revision, reason = err.reason(), "{message}");
            }
            record(
                ctx,
                kustomization,
                started,
                false,
                err.reason(),
                &message,
                attempted.as_deref(),
                None,
            );
            Action {
                requeue_after: kustomization.retry_interval,
                ready: false,
                inventory: current_inventory(ctx, name).unwrap_or(previous),
            }
        }
    }
}

/// The steps of one run, in `turn` until the apply and prune are done.
/// `attempted` is set as soon as the revision is known.
async fn pipeline(
    ctx: &Context,
    config: &Config,
    k: &Kustomization,
    turn: apply::SetTurn,
    attempted: &mut Option<String>,
) -> Result<Applied, Error> {
    let started = Instant::now();
    let owner = Owner::new(&k.name, OWNER_KIND);
    // Fetch the source's last good artifact.
    let artifact = latest_artifact(ctx, k)?;
    *attempted = Some(artifact.revision.clone());
    // Unpack it and build the manifests at the path.
    let objects = objects_at(ctx, k, &artifact).await?.objects;
    let ignore = Arc::new(drift_ignore(&k.drift.ignore)?);
    let digest = digest_of(&objects);
    let applied_before = lock(&ctx.store).applied_digest(&k.name)?;
    if k.drift.mode == DriftMode::Detect && applied_before.as_deref() == Some(digest.as_str()) {
        // Nothing declared changed since the last apply: compare, change nothing.
        let owner = Owner::new(&k.name, OWNER_KIND);
        let diffs = ctx.manager.dry_run_diff(objects, &owner, &ignore).await?;
        return Ok(Applied {
            revision: artifact.revision,
            changes: ChangeSet::default(),
            pruned: 0,
            inventory: current_inventory(ctx, &k.name)?,
            drifted: diffs
                .into_iter()
                .filter(|d| d.kind != apply::DiffKind::Unchanged)
                .map(|d| d.object)
                .collect(),
        });
    }
    // Write-ahead: everything this apply may create is recorded before the
    // first write, so an apply cut short (kill -9, a runner restarted by a
    // reload) leaves no object of ours outside the inventory.
    let recorded = recorded_or_adopted(ctx, config, k).await?;
    lock(&ctx.store).register_kustomization(&k.name, &k.source.to_string(), deletion_policy(k))?;
    let plan = ctx.manager.plan(objects, &owner).await?;
    let widened = inventory::merge(recorded.clone(), &plan.objects());
    if widened.len() != recorded.len() {
        store_inventory(ctx, &k.name, &artifact.revision, &widened)?;
    }
    // Apply: dry-run the whole set, then server-side apply in order. On
    // failure the widened inventory stays, so a later prune finds anything
    // a partial apply created.
    let options = ApplyOptions {
        force_recreate: k.force,
        drift_ignore: ignore,
        ..ApplyOptions::default()
    };
    let changes = ctx.manager.apply_plan(plan, &options).await?;
    lock(&ctx.store).set_applied_digest(&k.name, &digest)?;
    let new = inventory::from_changeset(&changes);
    // Prune what the new revision no longer declares, including what an
    // interrupted earlier run planned.
    let stale = inventory::diff(&widened, &new);
    let (kept, pruned) = if k.prune && !stale.is_empty() {
        let result = ctx
            .manager
            .prune(&stale, &owner, &PruneOptions::default())
            .await;
        let kept = inventory::merge(new.clone(), &result.survivors());
        store_inventory(ctx, &k.name, &artifact.revision, &kept)?;
        if !result.failed.is_empty() {
            let failed: Vec<String> = result
                .failed
                .iter()
                .map(|(o, e)| format!("{o}: {e}"))
                .collect();
            return Err(Error::Prune(failed.join("; ")));
        }
        (kept, result.deleted.len())
    } else {
        // Without prune, stale objects are left alone and forgotten, like Flux.
        store_inventory(ctx, &k.name, &artifact.revision, &new)?;
        (new.clone(), 0)
    };
    let skipped: Vec<ObjRef> = changes
        .entries
        .iter()
        .filter(|c| c.action == apply::Action::Skipped)
        .map(|c| c.object.clone())
        .collect();
    let watched = inventory::diff(&kept, &skipped);
    // Wait for health, letting other sets apply meanwhile.
    drop(turn);
    // Objects skipped by their policy may not exist: not waited for.
    let checked = health_targets(k, &inventory::diff(&new, &skipped));
    if !checked.is_empty() {
        let waiting = format!(
            "Applied revision: {}; waiting for {} objects to be healthy",
            artifact.revision,
            checked.len()
        );
        ctx.observer.alerts.progressing(
            &ctx.store,
            "kustomization",
            &k.name,
            &artifact.revision,
            &waiting,
        );
        // Ends before the whole run's timeout, to report which objects are not healthy.
        let left = k.timeout.saturating_sub(started.elapsed() + HEALTH_MARGIN);
        ctx.manager.wait(&checked, left).await?;
    }
    record_changes(ctx, &k.name, &changes);
    Ok(Applied {
        revision: artifact.revision,
        changes,
        pruned,
        inventory: watched,
        drifted: Vec::new(),
    })
}

/// Deletes the objects of kustomization `name`, which left the config
/// (unless its deletion policy was `orphan`), and forgets it; returns what
/// was done. One whose objects cannot all be deleted stays recorded with
/// the survivors as its inventory, so a later removal retries them.
pub async fn remove(ctx: &Context, name: &str) -> Result<String, Error> {
    let policy = lock(&ctx.store)
        .kustomization_status(name)?
        .map(|s| s.deletion_policy)
        .unwrap_or_else(|| "delete".to_string());
    let message = if policy == "orphan" {
        "removed from the config; its objects are orphaned".to_string()
    } else {
        let owned = current_inventory(ctx, name)?;
        let owner = Owner::new(name, OWNER_KIND);
        let result = ctx
            .manager
            .prune(&owned, &owner, &PruneOptions::default())
            .await;
        if !result.failed.is_empty() {
            let survivors = result.survivors();
            store_inventory(ctx, name, "", &survivors)?;
            return Err(Error::Prune(format!(
                "removed from the config; {} objects could not be deleted",
                survivors.len()
            )));
        }
        format!(
            "removed from the config; deleted its {} objects",
            result.deleted.len()
        )
    };
    lock(&ctx.store).remove_kustomization(name)?;
    Ok(message)
}

/// What `k` declares at its source's last good artifact, as it would be
/// applied (target namespace set, decrypted, substituted), with that
/// revision: for `kedge build NAME` and `kedge diff NAME`, which must mask
/// the `decrypted` ones.
pub async fn desired_objects(ctx: &Context, k: &Kustomization) -> Result<Desired, Error> {
    let artifact = latest_artifact(ctx, k)?;
    objects_at(ctx, k, &artifact).await
}

/// The objects of one revision, ready to apply.
pub struct Desired {
    pub revision: String,
    pub objects: Vec<Value>,
    /// Which of `objects` hold values decrypted from SOPS.
    pub decrypted: Vec<ObjRef>,
}

/// The objects `k` declares in `artifact`: built with its Flux fields
/// (target namespace, patches, images…) and decrypted, then substituted
/// (Flux's order), common metadata set.
async fn objects_at(
    ctx: &Context,
    k: &Kustomization,
    artifact: &source::Artifact,
) -> Result<Desired, Error> {
    let Built {
        mut objects,
        decrypted,
        quoted,
    } = build(ctx, k, artifact).await?;
    if k.post_build.substitutes() {
        let failed = |message: String| Error::PostBuild {
            path: format!("./{}", k.path.display()),
            revision: format!("{}@{}", k.source, artifact.revision),
            message,
        };
        let vars = postbuild::load_variables(ctx.manager.client(), &k.post_build)
            .await
            .map_err(|e| failed(e.to_string()))?;
        postbuild::substitute(&mut objects, &quoted, &vars, k.post_build.strict)
            .map_err(|e| failed(e.to_string()))?;
    }
    set_common_metadata(&mut objects, &k.overlay);
    let decrypted = decrypted
        .iter()
        .filter_map(|&index| ObjRef::from_manifest(index, objects.get(index)?).ok())
        .collect();
    Ok(Desired {
        revision: artifact.revision.clone(),
        objects,
        decrypted,
    })
}

/// A digest of `objects` as they would be applied, to tell whether the
/// declared state changed since the last apply.
fn digest_of(objects: &[Value]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for object in objects {
        hasher.update(object.to_string().as_bytes());
        hasher.update(b"\n");
    }
    source::store::hex(&hasher.finalize())
}

fn latest_artifact(ctx: &Context, k: &Kustomization) -> Result<source::Artifact, Error> {
    let store = lock(&ctx.store);
    let source_ref = k.source.to_string();
    source::store::latest_artifact(&store, k.source.kind.as_str(), &k.source.name)?
        .ok_or(Error::NoArtifactYet { source_ref })
}

/// The built and decrypted objects of a revision.
struct Built {
    objects: Vec<Value>,
    /// Which objects were decrypted, by index.
    decrypted: Vec<usize>,
    /// Per object, the strings its manifest quoted that hold `${`.
    quoted: Vec<BTreeSet<String>>,
}

/// Builds `k.path` of `artifact` (unpacked once for all kustomizations)
/// and decrypts it, on the blocking pool (both are file-system bound).
async fn build(
    ctx: &Context,
    k: &Kustomization,
    artifact: &source::Artifact,
) -> Result<Built, Error> {
    let unpacker = ctx.unpacker.clone();
    let artifact = artifact.clone();
    let path = k.path.clone();
    let source_ref = k.source.to_string();
    let overrides = flux_overrides(k);
    let decryption = k.post_build.decryption.clone();
    let built = tokio::task::spawn_blocking(move || {
        let keys = decryption
            .map(|d| {
                postbuild::sops::Keys::load(
                    d.age_key_file.as_deref(),
                    d.pgp_keyring_file.as_deref(),
                )
                .map(Arc::new)
            })
            .transpose()
            .map_err(|e| Error::PostBuild {
                path: format!("./{}", path.display()),
                revision: format!("{source_ref}@{}", artifact.revision),
                message: e.to_string(),
            })?;
        unpack_and_build(&unpacker, &artifact, &path, &source_ref, &overrides, keys)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))?;
    if matches!(built, Err(Error::Artifact { .. })) && !ctx.source_triggers.request(&k.source) {
        tracing::debug!(source = %k.source, "no scheduler took the request to repair the artifact");
    }
    built
}

fn unpack_and_build(
    unpacker: &Unpacker,
    artifact: &source::Artifact,
    path: &Path,
    source_ref: &str,
    overrides: &FluxOverrides,
    keys: Option<Arc<postbuild::sops::Keys>>,
) -> Result<Built, Error> {
    let tree = unpacker.unpacked(artifact).map_err(|e| Error::Artifact {
        source_ref: source_ref.to_string(),
        message: e.to_string(),
    })?;
    let dir = tree.join(path);
    let shown = format!("./{}", path.display());
    if !dir.is_dir() {
        return Err(Error::InvalidPath {
            path: shown,
            revision: artifact.revision.clone(),
        });
    }
    for component in &overrides.components {
        let inside = dir
            .join(component)
            .canonicalize()
            .ok()
            .zip(tree.canonicalize().ok())
            .is_some_and(|(path, root)| path.starts_with(root));
        if !inside {
            return Err(Error::Build {
                path: shown,
                revision: format!("{source_ref}@{}", artifact.revision),
                message: format!("component {component:?} is not a directory of the artifact"),
            });
        }
    }
    let revision = format!("{source_ref}@{}", artifact.revision);
    let built = match &keys {
        Some(keys) => {
            kustomize::with_secret_sources(Arc::new(postbuild::SecretFiles(keys.clone())), || {
                kustomize::build_flux(&dir, overrides)
            })
        }
        None => kustomize::build_flux(&dir, overrides),
    };
    let resources = built.map_err(|err| Error::Build {
        path: shown.clone(),
        revision: revision.clone(),
        message: in_repository(&crate::error_chain::describe(&err), &tree),
    })?;
    let mut objects = Vec::with_capacity(resources.len());
    let mut decrypted = Vec::new();
    let quoted = resources
        .iter()
        .map(|r| r.quoted_templates().clone())
        .collect();
    for resource in &resources {
        let mut object = resource.to_json();
        if let Some(keys) = &keys {
            let origin = resource.origin_file();
            let shown_origin = origin.map(|o| in_repository(&o.display().to_string(), &tree));
            let was_encrypted = postbuild::decrypt(&mut object, origin, shown_origin, keys)
                .map_err(|err| Error::PostBuild {
                    path: shown.clone(),
                    revision: revision.clone(),
                    message: err.to_string(),
                })?;
            if was_encrypted {
                decrypted.push(objects.len());
            }
        }
        objects.push(object);
    }
    // A tree damaged while the build read it must not become a prune.
    unpacker
        .confirm(artifact)
        .map_err(|damage| Error::Artifact {
            source_ref: source_ref.to_string(),
            message: format!(
                "unpacked tree {} changed during the build: {damage}",
                tree.display()
            ),
        })?;
    Ok(Built {
        objects,
        decrypted,
        quoted,
    })
}

/// `message` with the paths of the unpacked artifact in `tree` written as
/// paths in the repository (`apps/web.yaml`).
fn in_repository(message: &str, tree: &Path) -> String {
    let mut message = message.to_string();
    let canonical = tree.canonicalize().ok();
    for root in std::iter::once(tree).chain(canonical.as_deref()) {
        message = message.replace(&format!("{}/", root.display()), "");
        message = message.replace(&root.display().to_string(), ".");
    }
    message
}

/// The objects to wait for: everything applied with `wait`, else the
/// listed health checks.
fn health_targets(k: &Kustomization, applied: &[ObjRef]) -> Vec<ObjRef> {
    if k.wait {
        return applied.to_vec();
    }
    k.health_checks
        .iter()
        .map(|check| {
            let (group, version) = match check.api_version.as_deref() {
                Some(api_version) => split_api_version(api_version),
                None => applied
                    .iter()
                    .find(|o| o.kind == check.kind && o.name == check.name)
                    .map(|o| (o.group.clone(), o.version.clone()))
                    .unwrap_or_default(),
            };
            ObjRef {
                group,
                version,
                kind: check.kind.clone(),
                namespace: check.namespace.clone(),
                name: check.name.clone(),
            }
        })
        .collect()
}

fn split_api_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), api_version.to_string()),
    }
}

/// `Some(why)` when a dependency is not Ready at its source's latest revision.
fn dependency_not_ready(ctx: &Context, config: &Config, k: &Kustomization) -> Option<String> {
    k.depends_on
        .iter()
        .find(|dependency| !is_ready(ctx, config, dependency))
        .map(
            |dependency| match config.kustomizations.contains_key(dependency) {
                true => format!("dependency '{dependency}' is not ready"),
                false => format!("dependency '{dependency}' is not configured"),
            },
        )
}

/// Whether kustomization `name` is Ready at its source's latest revision.
pub fn is_ready(ctx: &Context, config: &Config, name: &str) -> bool {
    let Some(k) = config.kustomizations.get(name) else {
        return false;
    };
    let store = lock(&ctx.store);
    let status = store.kustomization_status(name).ok().flatten();
    status.is_some_and(|s| ready_at_latest(&store, &k.source, s.ready, s.last_applied_revision))
}

/// Whether an outcome (`ready`, and the revision it applied) is Ready at
/// `source`'s latest artifact: what `depends_on` waits for, of either kind.
pub(super) fn ready_at_latest(
    store: &Store,
    source: &SourceRef,
    ready: bool,
    applied: Option<String>,
) -> bool {
    let latest = source::store::latest_artifact(store, source.kind.as_str(), &source.name)
        .ok()
        .flatten()
        .map(|a| a.revision);
    ready && latest.is_some() && applied == latest
}

/// The stored inventory of `k`; for a kustomization that never applied and
/// has none while the daemon started on an empty database (a new node, or
/// a lost database), the objects in the cluster that carry its labels,
/// adopted so that those its revision no longer declares are pruned.
async fn recorded_or_adopted(
    ctx: &Context,
    config: &Config,
    k: &Kustomization,
) -> Result<Vec<ObjRef>, Error> {
    let inventory = current_inventory(ctx, &k.name)?;
    let ever_applied = lock(&ctx.store)
        .kustomization_status(&k.name)?
        .is_some_and(|s| s.last_applied_revision.is_some());
    if ever_applied || !inventory.is_empty() || !ctx.state_was_empty {
        return Ok(inventory);
    }
    let labelled = ctx
        .labelled
        .get_or_try_init(|| scan_labelled(ctx, config))
        .await?;
    let adopted = labelled.by_owner.get(&k.name).cloned().unwrap_or_default();
    if !adopted.is_empty() {
        tracing::warn!(
            kustomization = %k.name,
            "no state recorded for it; adopted the {} objects in the cluster labelled as its own",
            adopted.len()
        );
        store_inventory(ctx, &k.name, "", &adopted)?;
    }
    Ok(adopted)
}

/// Scans the cluster for objects labelled by kustomizations, and says
/// which belong to none that kedge knows (those are left alone).
async fn scan_labelled(ctx: &Context, config: &Config) -> Result<apply::Owned, Error> {
    let started = Instant::now();
    let owned = ctx.manager.owned(OWNER_KIND).await?;
    tracing::debug!(
        owners = owned.by_owner.len(),
        "scanned the cluster for objects labelled by kustomizations in {:?}",
        started.elapsed()
    );
    for (kind, error) in &owned.unlisted {
        tracing::warn!(
            "looking for objects labelled by kustomizations: cannot list {kind}: {error}"
        );
    }
    let recorded = lock(&ctx.store).recorded_kustomizations()?;
    for (owner, objects) in &owned.by_owner {
        if !config.kustomizations.contains_key(owner) && !recorded.contains(owner) {
            tracing::warn!(
                "{} objects labelled {}={owner} belong to no kustomization kedge knows; left in place",
                objects.len(),
                apply::NAME_LABEL
            );
        }
    }
    Ok(owned)
}

fn current_inventory(ctx: &Context, name: &str) -> Result<Vec<ObjRef>, Error> {
    let ids = lock(&ctx.store).inventory(name)?;
    Ok(ids
        .iter()
        .map(|id| ObjRef::from_id(id))
        .collect::<Result<_, _>>()?)
}

fn store_inventory(
    ctx: &Context,
    name: &str,
    revision: &str,
    objects: &[ObjRef],
) -> Result<(), Error> {
    let ids: Vec<String> = objects.iter().map(ObjRef::to_id).collect();
    lock(&ctx.store).set_inventory(name, revision, &ids)?;
    Ok(())
}

fn record_changes(ctx: &Context, name: &str, changes: &ChangeSet) {
    let changed: Vec<String> = changes
        .entries
        .iter()
        .filter(|c| c.action != apply::Action::Unchanged)
        .map(ToString::to_string)
        .collect();
    if changed.is_empty() {
        return;
    }
    record_event(
        ctx,
        name,
        Severity::Info,
        "Progressing",
        &changed.join("\n"),
    );
}

fn record_event(ctx: &Context, name: &str, severity: Severity, reason: &str, message: &str) {
    let event = Event::new("kustomization", name, severity, reason, message);
    if let Err(err) = lock(&ctx.store).record_event(&event) {
        tracing::error!(kustomization = %name, "recording event: {err}");
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    ctx: &Context,
    k: &Kustomization,
    started: Instant,
    ready: bool,
    reason: &str,
    message: &str,
    attempted_revision: Option<&str>,
    applied_revision: Option<&str>,
) {
    let outcome = KustomizationOutcome {
        ready,
        reason,
        message,
        attempted_revision,
        applied_revision,
        duration_ms: started.elapsed().as_millis() as i64,
        deletion_policy: deletion_policy(k),
    };
    ctx.observer
        .metrics
        .reconciled("kustomization", &k.name, started.elapsed());
    let store = lock(&ctx.store);
    let alerts = &ctx.observer.alerts;
    let before = alerts.before(&store, "kustomization", &k.name);
    let severity = if ready {
        Severity::Info
    } else {
        Severity::Error
    };
    let recorded = store
        .record_kustomization_outcome(&k.name, &k.source.to_string(), state::now_millis(), outcome)
        .and_then(|()| {
            store.record_event(&Event::new(
                "kustomization",
                &k.name,
                severity,
                reason,
                message,
            ))
        });
    if let Err(err) = recorded {
        tracing::error!(kustomization = %k.name, "recording outcome: {err}");
    }
    alerts.recorded(&store, before, "kustomization", &k.name, message);
}

fn count_applied(metrics: &Metrics, name: &str, applied: &Applied) {
    for (action, label) in [
        (apply::Action::Created, "created"),
        (apply::Action::Configured, "configured"),
        (apply::Action::Unchanged, "unchanged"),
    ] {
        metrics.applied(name, label, applied.changes.count(action));
    }
    metrics.applied(name, "pruned", applied.pruned);
}

fn deletion_policy(k: &Kustomization) -> &'static str {
    match k.deletion_policy {
        DeletionPolicy::Delete => "delete",
        DeletionPolicy::Orphan => "orphan",
    }
}

/// The store's lock; a panic elsewhere while holding it does not make the
/// state unusable (every write is a transaction of its own).
pub(crate) fn lock(store: &Mutex<Store>) -> std::sync::MutexGuard<'_, Store> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{HealthCheck, SourceKind, SourceRef};
    use crate::state::SourceOutcome;

    fn kustomization() -> Kustomization {
        Kustomization {
            name: "apps".into(),
            source: SourceRef {
                kind: SourceKind::Git,
                name: "fleet".into(),
            },
            path: std::path::PathBuf::new(),
            interval: Duration::from_secs(300),
            retry_interval: Duration::from_secs(60),
            timeout: Duration::from_secs(180),
            prune: true,
            wait: false,
            health_checks: vec![],
            depends_on: vec![],
            target_namespace: None,
            suspend: false,
            force: false,
            deletion_policy: DeletionPolicy::Delete,
            drift: Default::default(),
            overlay: Default::default(),
            post_build: Default::default(),
        }
    }

    fn objref(group: &str, kind: &str, name: &str) -> ObjRef {
        ObjRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: Some("apps".into()),
            name: name.into(),
        }
    }

    #[test]
    fn health_checks_take_the_version_of_the_applied_object_unless_given() {
        let mut k = kustomization();
        k.health_checks = vec![
            HealthCheck {
                api_version: None,
                kind: "Deployment".into(),
                name: "web".into(),
                namespace: Some("apps".into()),
            },
            HealthCheck {
                api_version: Some("batch/v1".into()),
                kind: "Job".into(),
                name: "migrate".into(),
                namespace: Some("apps".into()),
            },
        ];
        let applied = vec![objref("apps", "Deployment", "web")];
        let targets = health_targets(&k, &applied);
        assert_eq!(targets[0], objref("apps", "Deployment", "web"));
        assert_eq!(
            (targets[1].group.as_str(), targets[1].version.as_str()),
            ("batch", "v1")
        );
    }

    #[test]
    fn wait_checks_everything_applied() {
        let mut k = kustomization();
        k.wait = true;
        let applied = vec![
            objref("", "ConfigMap", "a"),
            objref("apps", "Deployment", "web"),
        ];
        assert_eq!(health_targets(&k, &applied), applied);
    }

    /// A context whose client points at a closed port: dependency_not_ready
    /// only reads the state.
    fn offline_context(store: Store, dir: &Path) -> Context {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("uri"));
        let client = kube::Client::try_from(config).expect("client");
        Context {
            manager: Manager::new(client),
            store: Arc::new(Mutex::new(store)),
            unpacker: Arc::new(Unpacker::new(dir.join("unpacked"))),
            labelled: Arc::new(tokio::sync::OnceCell::new()),
            started_at: 0,
            first_fetches: Arc::default(),
            state_was_empty: false,
            source_triggers: SourceTriggers::default(),
            observer: Observer::default(),
        }
    }

    fn outcome<'a>(ready: bool, applied: Option<&'a str>) -> KustomizationOutcome<'a> {
        KustomizationOutcome {
            ready,
            reason: if ready {
                "ReconciliationSucceeded"
            } else {
                "BuildFailed"
            },
            message: "",
            attempted_revision: applied,
            applied_revision: applied,
            duration_ms: 1,
            deletion_policy: "delete",
        }
    }

    #[tokio::test]
    async fn a_dependency_holds_its_dependent_until_ready_at_its_sources_latest_revision() {
        let dir = tempfile::tempdir().expect("tempdir");
        let artifact = dir.path().join("artifact.tar.gz");
        std::fs::write(&artifact, b"x").expect("artifact file");
        let store = Store::open_in_memory().expect("store");
        let mut config = Config::parse(
            Path::new("/etc/kedge/kedge.toml"),
            "[git.fleet]\nurl = \"https://git.example.org/fleet.git\"\n\n\
             [kustomization.infra]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n\n\
             [kustomization.apps]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\ndepends_on = [\"infra\"]\n",
        )
        .expect("config");
        let apps = config.kustomizations["apps"].clone();
        let ctx = offline_context(store, dir.path());
        let record_source = |revision: &str| {
            lock(&ctx.store)
                .record_source_outcome(
                    "git",
                    "fleet",
                    "https://git.example.org/fleet.git",
                    1,
                    SourceOutcome::Ready {
                        revision,
                        digest: "d",
                        path: &artifact,
                        inputs: "",
                        new_artifact: true,
                    },
                )
                .expect("record source");
        };
        let record_infra = |ready: bool, applied: Option<&str>| {
            lock(&ctx.store)
                .record_kustomization_outcome("infra", "git/fleet", 1, outcome(ready, applied))
                .expect("record infra");
        };
        let waiting = |config: &Config| dependency_not_ready(&ctx, config, &apps);

        record_source("main@sha1:1");
        assert_eq!(
            waiting(&config).as_deref(),
            Some("dependency 'infra' is not ready"),
            "never reconciled"
        );
        record_infra(false, None);
        assert!(waiting(&config).is_some(), "failed");
        record_infra(true, Some("main@sha1:1"));
        assert_eq!(waiting(&config), None, "ready at the latest revision");
        record_source("main@sha1:2");
        assert!(
            waiting(&config).is_some(),
            "ready, but at an older revision than its source's latest"
        );
        record_infra(true, Some("main@sha1:2"));
        assert_eq!(waiting(&config), None);
        config.kustomizations.remove("infra");
        assert_eq!(
            waiting(&config).as_deref(),
            Some("dependency 'infra' is not configured")
        );
    }

    #[test]
    fn every_failure_maps_to_a_flux_reason() {
        let build = Error::InvalidPath {
            path: "./x".into(),
            revision: "r".into(),
        };
        assert_eq!(build.reason(), "InvalidPath");
        assert_eq!(Error::Prune("x".into()).reason(), "PruneFailed");
        let artifact = Error::Artifact {
            source_ref: "git/fleet".into(),
            message: "none".into(),
        };
        assert_eq!(artifact.reason(), "ArtifactFailed");
    }
}
