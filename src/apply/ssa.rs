//! [`Manager::apply`]: validate the whole set by server-side dry-run, then
//! server-side apply it stage by stage with a bounded pool.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::Value;

use super::changeset::{Action, ChangeSet};
use super::discovery::{DiscoveryError, Kind};
use super::health::HealthError;
use super::ignore::DriftIgnore;
use super::manifest::{self, Manifest, Placed};
use super::objref::{ObjRef, ObjRefError};
use super::order::{self, Stage};
use super::policy::{ApplyPolicy, Policy};
use super::{Manager, Owner};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Delete and re-create objects whose change touches an immutable field
    /// (a Job's template, a Service's clusterIP…) instead of failing.
    pub force_recreate: bool,
    /// Requests in flight at once, for dry-run and for apply (within the
    /// Manager-wide [`super::MAX_IN_FLIGHT`], the default).
    pub concurrency: usize,
    /// How long to wait for CRDs of the set to be Established.
    pub crd_timeout: Duration,
    /// Fields left as they are on existing objects (drift ignore rules).
    pub drift_ignore: Arc<DriftIgnore>,
}

impl Default for ApplyOptions {
    fn default() -> ApplyOptions {
        ApplyOptions {
            force_recreate: false,
            concurrency: super::MAX_IN_FLIGHT,
            crd_timeout: Duration::from_secs(30),
            drift_ignore: Arc::default(),
        }
    }
}

/// One object the API server refused, with its message (which names the
/// field at fault).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectFailure {
    pub object: ObjRef,
    pub message: String,
}

impl ObjectFailure {
    pub(crate) fn new(object: &ObjRef, err: &kube::Error) -> ObjectFailure {
        let message = match err {
            kube::Error::Api(status) => status.message.clone(),
            other => other.to_string(),
        };
        ObjectFailure {
            object: object.clone(),
            message,
        }
    }
}

impl fmt::Display for ObjectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.object, self.message)
    }
}

fn list(failures: &[ObjectFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why an apply stopped. Variants that can happen after a first stage was
/// applied carry `applied`, what had been applied by then, so the caller
/// can keep those objects in its inventory (and must not prune).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A manifest lacks apiVersion, kind or name.
    #[error(transparent)]
    Manifest(#[from] ObjRefError),
    /// A manifest field has the wrong shape.
    #[error("{object}: field {field} must be a map")]
    InvalidManifest { object: ObjRef, field: &'static str },
    /// The set names one object twice.
    #[error("{object} appears twice in the set")]
    Duplicate { object: ObjRef },
    /// Discovery could not be read.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The cluster does not serve the object's kind, even after refreshing
    /// discovery, and no CRD of the set defines it.
    #[error("{object}: the cluster serves no kind {kind} in apiVersion {api_version}")]
    UnknownKind {
        object: ObjRef,
        api_version: String,
        kind: String,
        applied: ChangeSet,
    },
    /// A namespaced object without `metadata.namespace`.
    #[error("{object}: kind is namespaced but metadata.namespace is not set")]
    MissingNamespace { object: ObjRef },
    /// Server-side dry-run refused objects: nothing of their stage was applied.
    #[error("{}", dry_run_failed(.failures, .applied))]
    DryRunFailed {
        failures: Vec<ObjectFailure>,
        applied: ChangeSet,
    },
    /// Objects that passed dry-run were refused when applied.
    #[error("apply failed: {}", list(.failures))]
    ApplyFailed {
        failures: Vec<ObjectFailure>,
        applied: ChangeSet,
    },
    /// The set's CRDs were applied but did not become Established in time.
    #[error("CustomResourceDefinitions not established: {source}")]
    CrdNotEstablished {
        #[source]
        source: HealthError,
        applied: ChangeSet,
    },
}

/// Namespaces and CRDs are applied before the rest is dry-run: a failed
/// dry-run says which of them it created or changed.
fn dry_run_failed(failures: &[ObjectFailure], applied: &ChangeSet) -> String {
    let changed: Vec<String> = applied
        .entries
        .iter()
        .filter(|c| matches!(c.action, Action::Created | Action::Configured))
        .map(|c| format!("{} ({})", c.object, c.action))
        .collect();
    if changed.is_empty() {
        format!("dry-run failed, nothing applied: {}", list(failures))
    } else {
        format!(
            "dry-run failed after applying {}; nothing else applied: {}",
            changed.join(", "),
            list(failures)
        )
    }
}

impl ApplyError {
    /// What was applied before the error (empty when nothing was).
    pub fn applied(&self) -> Option<&ChangeSet> {
        match self {
            ApplyError::UnknownKind { applied, .. }
            | ApplyError::DryRunFailed { applied, .. }
            | ApplyError::ApplyFailed { applied, .. }
            | ApplyError::CrdNotEstablished { applied, .. } => Some(applied),
            _ => None,
        }
    }
}

/// A manifest whose kind may only be served once the set's CRDs are in.
type Resolved = (Manifest, Option<Kind>);

/// A set of objects ready to apply: see [`Manager::plan`].
#[derive(Debug)]
pub struct Plan {
    resolved: Vec<Resolved>,
    owner: Owner,
}

impl Plan {
    /// Every object the apply may create, named as the inventory will name
    /// it once applied: a cluster-scoped kind (served, or defined by a CRD
    /// of the set) has no namespace.
    pub fn objects(&self) -> Vec<ObjRef> {
        let defined = manifest::kinds_defined_by_crds(self.resolved.iter().map(|(m, _)| m));
        self.resolved
            .iter()
            .map(|(m, kind)| {
                let namespaced = match kind {
                    Some(kind) => kind.namespaced,
                    None => defined
                        .iter()
                        .find(|d| d.defines(&m.objref))
                        .is_none_or(|d| d.namespaced),
                };
                let mut objref = m.objref.clone();
                if !namespaced {
                    objref.namespace = None;
                }
                objref
            })
            .collect()
    }
}

/// What dry-run said of one object.
enum Validated {
    /// Valid. The dry-run's resourceVersion is the live one (none when the
    /// object does not exist yet); `unchanged` when the dry-run shows the
    /// object as we last applied it (see `memo.rs`), so no apply is needed.
    Ok {
        live_version: Option<String>,
        unchanged: bool,
    },
    /// An immutable field changes and `force_recreate` is set, or the
    /// object says `force: enabled`.
    Recreate,
    /// Its policy says to leave it (`policy.rs`).
    Skip,
}

impl Manager {
    /// Applies `objects` with server-side apply as `owner`, forcing
    /// conflicts with other field managers (like Flux).
    ///
    /// # Expected flow
    /// 1. every object is named, labelled with the owner and its kind
    ///    resolved (discovery refreshed once on an unknown kind);
    /// 2. CRDs and Namespaces ([`Stage::Definitions`]) are validated by
    ///    server-side dry-run, applied, and the CRDs waited for until
    ///    Established (custom resources cannot be dry-run before their CRD,
    ///    nor objects before their Namespace);
    /// 3. everything else is validated by dry-run as one set, then applied,
    ///    [`Stage::Resources`] before [`Stage::Admission`] (webhooks);
    ///
    /// each dry-run and apply with `options.concurrency` requests in flight.
    ///
    /// # Errors
    /// If any object fails dry-run, nothing of its step (or later ones) is
    /// applied, and [`ApplyError::DryRunFailed`] names every refused object
    /// with the server's message (which names the field). A set without
    /// CRDs or Namespaces is validated whole before anything is applied.
    pub async fn apply(
        &self,
        objects: Vec<Value>,
        owner: &Owner,
        options: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError> {
        let plan = self.plan(objects, owner).await?;
        self.apply_plan(plan, options).await
    }

    /// The first half of [`Manager::apply`]: names, labels and resolves
    /// every object without writing anything, so a caller can record
    /// [`Plan::objects`] (a write-ahead inventory) before the first write.
    pub async fn plan(&self, objects: Vec<Value>, owner: &Owner) -> Result<Plan, ApplyError> {
        let manifests = manifest::prepare(objects, owner)?;
        let resolved = self.resolve_kinds(manifests).await?;
        Ok(Plan {
            resolved,
            owner: owner.clone(),
        })
    }

    /// The second half of [`Manager::apply`]: dry-run and apply `plan`.
    pub async fn apply_plan(
        &self,
        plan: Plan,
        options: &ApplyOptions,
    ) -> Result<ChangeSet, ApplyError> {
        let Plan { resolved, owner } = plan;
        let owner = &owner;
        let mut changes = ChangeSet::default();
        let mut stages = order::stages(resolved, |(m, _)| &m.objref);
        if stages
            .first()
            .is_some_and(|(s, _)| *s == Stage::Definitions)
        {
            let (_, definitions) = stages.remove(0);
            self.validate_then_apply(vec![definitions], owner, options, &mut changes)
                .await?;
            self.wait_for_crds(&changes, options.crd_timeout).await?;
        }
        let rest = stages.into_iter().map(|(_, group)| group).collect();
        self.validate_then_apply(rest, owner, options, &mut changes)
            .await?;
        Ok(changes)
    }

    /// Dry-runs every object of `stages` at once, then, if all passed,
    /// applies the stages one after the other.
    async fn validate_then_apply(
        &self,
        stages: Vec<Vec<Resolved>>,
        owner: &Owner,
        options: &ApplyOptions,
        changes: &mut ChangeSet,
    ) -> Result<(), ApplyError> {
        let sizes: Vec<usize> = stages.iter().map(Vec::len).collect();
        let mut placed = Vec::with_capacity(sizes.iter().sum());
        for group in stages {
            placed.extend(self.place_all(group, changes).await?);
        }
        self.keep_ignored_live(&mut placed, &options.drift_ignore, changes)
            .await?;
        let mut validated = self
            .validate(&placed, owner, options, changes)
            .await?
            .into_iter();
        let mut start = 0;
        for size in sizes {
            let stage = &placed[start..start + size];
            let stage_validated = validated.by_ref().take(size).collect();
            let results = self
                .apply_stage(stage, stage_validated, owner, options)
                .await;
            let failures = record(stage, results, changes);
            if !failures.is_empty() {
                return Err(ApplyError::ApplyFailed {
                    failures,
                    applied: changes.clone(),
                });
            }
            start += size;
        }
        Ok(())
    }

    /// Resolves every kind; a kind not served is accepted only when a CRD
    /// of the same set defines it. A namespaced object must name its
    /// namespace.
    async fn resolve_kinds(&self, manifests: Vec<Manifest>) -> Result<Vec<Resolved>, ApplyError> {
        let refs: Vec<&ObjRef> = manifests.iter().map(|m| &m.objref).collect();
        let kinds = self.kinds.resolve_all(&refs).await?;
        let defined = manifest::kinds_defined_by_crds(&manifests);
        let mut out = Vec::with_capacity(manifests.len());
        for (manifest, kind) in manifests.into_iter().zip(kinds) {
            let o = &manifest.objref;
            let comes_with_its_crd = defined.iter().any(|d| d.defines(o));
            if kind.is_none() && !comes_with_its_crd {
                return Err(unknown_kind(o, ChangeSet::default()));
            }
            // Checked here too (not only when placed), so it stops the
            // apply before the first stage.
            if kind.as_ref().is_some_and(|k| k.namespaced) && o.namespace.is_none() {
                return Err(ApplyError::MissingNamespace { object: o.clone() });
            }
            out.push((manifest, kind));
        }
        Ok(out)
    }

    /// Places a stage's objects, resolving kinds left for their CRDs. A CRD
    /// just Established may take a moment to show in discovery.
    async fn place_all(
        &self,
        group: Vec<Resolved>,
        applied: &ChangeSet,
    ) -> Result<Vec<Placed>, ApplyError> {
        let mut placed = Vec::with_capacity(group.len());
        for (manifest, kind) in group {
            let kind = match kind {
                Some(kind) => kind,
                None => self.resolve_new_kind(&manifest.objref, applied).await?,
            };
            placed.push(manifest::place(manifest, kind)?);
        }
        Ok(placed)
    }

    async fn resolve_new_kind(
        &self,
        object: &ObjRef,
        applied: &ChangeSet,
    ) -> Result<Kind, ApplyError> {
        for _ in 0..20 {
            if let Some(kind) = self.kinds.resolve(object).await? {
                return Ok(kind);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(unknown_kind(object, applied.clone()))
    }

    /// Sets the fields `ignore` names, on objects that exist, to their
    /// live values (one read per object a rule applies to).
    pub(crate) async fn keep_ignored_live(
        &self,
        placed: &mut [Placed],
        ignore: &DriftIgnore,
        applied: &ChangeSet,
    ) -> Result<(), ApplyError> {
        if ignore.is_empty() {
            return Ok(());
        }
        let mut failures = Vec::new();
        for p in placed
            .iter_mut()
            .filter(|p| !ignore.pointers(&p.objref).is_empty())
        {
            match self.live(p).await {
                Ok(live) => {
                    let live = live.and_then(|l| serde_json::to_value(l).ok());
                    ignore.keep_live(&p.objref, &mut p.body, live.as_ref());
                }
                Err(err) => failures.push(ObjectFailure::new(&p.objref, &err)),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        Err(ApplyError::DryRunFailed {
            failures,
            applied: applied.clone(),
        })
    }

    /// Dry-runs the whole stage; any refusal stops the apply.
    async fn validate(
        &self,
        placed: &[Placed],
        owner: &Owner,
        options: &ApplyOptions,
        applied: &ChangeSet,
    ) -> Result<Vec<Validated>, ApplyError> {
        let policies: Vec<Policy> = placed
            .iter()
            .map(|p| Policy::of_manifest(&p.body))
            .collect();
        let checked: Vec<&Placed> = placed
            .iter()
            .zip(&policies)
            .filter(|(_, policy)| policy.apply != ApplyPolicy::Skip)
            .map(|(p, _)| p)
            .collect();
        let mut results = self
            .dry_run_all(&checked, owner, options.concurrency)
            .await
            .into_iter();
        let mut validated = Vec::with_capacity(placed.len());
        let mut failures = Vec::new();
        for (p, policy) in placed.iter().zip(policies) {
            if policy.apply == ApplyPolicy::Skip {
                validated.push(Validated::Skip);
                continue;
            }
            let Some(result) = results.next() else {
                break;
            };
            match result {
                Ok(object) => validated.push(validated_by_dry_run(p, policy, object, &self.memo)),
                Err(err)
                    if (options.force_recreate || policy.force)
                        && is_immutable_field_error(&err) =>
                {
                    validated.push(Validated::Recreate)
                }
                Err(err) => failures.push(ObjectFailure::new(&p.objref, &err)),
            }
        }
        if failures.is_empty() {
            Ok(validated)
        } else {
            Err(ApplyError::DryRunFailed {
                failures,
                applied: applied.clone(),
            })
        }
    }

    async fn apply_stage(
        &self,
        placed: &[Placed],
        validated: Vec<Validated>,
        owner: &Owner,
        options: &ApplyOptions,
    ) -> Vec<Result<Action, kube::Error>> {
        let requests = placed
            .iter()
            .zip(validated)
            .map(|(p, v)| self.apply_one(p, v, owner, &options.drift_ignore))
            .collect();
        self.bounded(requests, options.concurrency).await
    }

    async fn apply_one(
        &self,
        placed: &Placed,
        validated: Validated,
        owner: &Owner,
        ignore: &DriftIgnore,
    ) -> Result<Action, kube::Error> {
        let api = self.api(&placed.kind, &placed.objref);
        let params = PatchParams::apply(&owner.field_manager).force();
        let patch = Patch::Apply(&placed.body);
        let apply = || api.patch(&placed.objref.name, &params, &patch);
        let before = match validated {
            Validated::Ok {
                unchanged: true, ..
            } => return Ok(Action::Unchanged),
            Validated::Ok { live_version, .. } => live_version,
            Validated::Skip => return Ok(Action::Skipped),
            Validated::Recreate => {
                self.memo.forget(&placed.objref);
                self.delete_and_wait(placed).await?;
                self.memo.remember(
                    &placed.objref,
                    &apply().await?,
                    &owner.field_manager,
                    ignore,
                );
                return Ok(Action::Configured);
            }
        };
        let after = apply().await?;
        self.memo
            .remember(&placed.objref, &after, &owner.field_manager, ignore);
        Ok(action(
            before.as_deref(),
            after.metadata.resource_version.as_deref(),
        ))
    }

    /// Deletes an object and waits (up to 30 s) until it is gone, so it can
    /// be created again.
    async fn delete_and_wait(&self, placed: &Placed) -> Result<(), kube::Error> {
        let api = self.api(&placed.kind, &placed.objref);
        let name = &placed.objref.name;
        match api.delete(name, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(err) => return Err(err),
        }
        for _ in 0..300 {
            if api.get_opt(name).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    async fn wait_for_crds(
        &self,
        applied: &ChangeSet,
        timeout: Duration,
    ) -> Result<(), ApplyError> {
        let crds: Vec<ObjRef> = applied
            .entries
            .iter()
            .filter(|c| c.object.is_crd())
            .map(|c| c.object.clone())
            .collect();
        if crds.is_empty() {
            return Ok(());
        }
        self.wait(&crds, timeout)
            .await
            .map_err(|source| ApplyError::CrdNotEstablished {
                source,
                applied: applied.clone(),
            })
    }
}

/// What a successful dry-run says of `p`: skipped when the object exists
/// and its policy (`IfNotPresent`, or `Ignore` / `reconcile: disabled` set
/// on the live object) says to leave it.
fn validated_by_dry_run(
    p: &Placed,
    desired: Policy,
    merged: kube::api::DynamicObject,
    memo: &super::memo::Memo,
) -> Validated {
    let live_version = merged
        .metadata
        .resource_version
        .clone()
        .filter(|rv| !rv.is_empty());
    let live = Policy::of(
        merged.metadata.annotations.as_ref(),
        merged.metadata.labels.as_ref(),
    );
    let exists = live_version.is_some();
    if exists && (desired.apply == ApplyPolicy::IfNotPresent || live.apply == ApplyPolicy::Skip) {
        return Validated::Skip;
    }
    Validated::Ok {
        unchanged: memo.unchanged(&p.objref, &merged),
        live_version,
    }
}

/// Adds each applied object to `changes`; returns the refusals.
fn record(
    placed: &[Placed],
    results: Vec<Result<Action, kube::Error>>,
    changes: &mut ChangeSet,
) -> Vec<ObjectFailure> {
    let mut failures = Vec::new();
    for (p, result) in placed.iter().zip(results) {
        match result {
            Ok(action) => changes.push(p.objref.clone(), action),
            Err(err) => failures.push(ObjectFailure::new(&p.objref, &err)),
        }
    }
    failures
}

/// Created when dry-run saw no live object (no resourceVersion); Unchanged
/// when the apply did not write (same resourceVersion as live).
fn action(live: Option<&str>, after: Option<&str>) -> Action {
    match live.filter(|rv| !rv.is_empty()) {
        None => Action::Created,
        Some(live) if Some(live) == after => Action::Unchanged,
        Some(_) => Action::Configured,
    }
}

pub(crate) fn is_immutable_field_error(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status)
        if status.code == 422 && status.message.contains("immutable"))
}

fn unknown_kind(object: &ObjRef, applied: ChangeSet) -> ApplyError {
    ApplyError::UnknownKind {
        object: object.clone(),
        api_version: object.api_version(),
        kind: object.kind.clone(),
        applied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_without_a_live_version_was_created() {
        assert_eq!(action(None, Some("12")), Action::Created);
        assert_eq!(action(Some(""), Some("12")), Action::Created);
    }

    #[test]
    fn an_apply_that_kept_the_live_version_changed_nothing() {
        assert_eq!(action(Some("12"), Some("12")), Action::Unchanged);
        assert_eq!(action(Some("12"), Some("13")), Action::Configured);
    }

    #[test]
    fn only_a_422_naming_an_immutable_field_allows_a_recreate() {
        let status = |code: u16, message: &str| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                message: message.into(),
                ..kube::core::Status::default()
            }))
        };
        let immutable = "ConfigMap \"c\" is invalid: data: Forbidden: field is immutable when `immutable` is set";
        assert!(is_immutable_field_error(&status(422, immutable)));
        assert!(!is_immutable_field_error(&status(
            422,
            "data[a b]: Invalid value"
        )));
        assert!(!is_immutable_field_error(&status(409, immutable)));
    }

    #[test]
    fn a_dry_run_failure_lists_each_object_with_the_servers_message() {
        let object = ObjRef::from_id("_v1_ConfigMap_ns_bad").unwrap();
        let err = ApplyError::DryRunFailed {
            failures: vec![ObjectFailure {
                object,
                message: "data[a b]: Invalid value".into(),
            }],
            applied: ChangeSet::default(),
        };
        assert_eq!(
            err.to_string(),
            "dry-run failed, nothing applied: ConfigMap/ns/bad: data[a b]: Invalid value"
        );
    }

    #[test]
    fn a_dry_run_failure_after_an_earlier_stage_says_what_was_applied() {
        let mut applied = ChangeSet::default();
        applied.push(
            ObjRef::from_id("_v1_Namespace__web").unwrap(),
            Action::Created,
        );
        applied.push(
            ObjRef::from_id("_v1_Namespace__old").unwrap(),
            Action::Unchanged,
        );
        let err = ApplyError::DryRunFailed {
            failures: vec![ObjectFailure {
                object: ObjRef::from_id("_v1_ConfigMap_web_bad").unwrap(),
                message: "data[a b]: Invalid value".into(),
            }],
            applied,
        };
        assert_eq!(
            err.to_string(),
            "dry-run failed after applying Namespace/web (created); nothing else applied: ConfigMap/web/bad: data[a b]: Invalid value"
        );
    }
}
