//! What each control request does. Quick ones are answered by the main
//! loop itself; those that wait (a reconcile's outcome, a build, a
//! dry-run) are answered by a task of their own, so the main loop keeps
//! turning.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::oneshot;

use crate::apply::{DiffKind, ObjectDiff, Owner};
use crate::config::{HelmRelease, Kustomization, SourceKind, SourceRef};
use crate::reconcile::bundle as reconcile_bundle;
use crate::reconcile::kustomization::{self, lock, Context, OWNER_KIND};
use crate::reconcile::runner::unit_key;
use crate::reconcile::{helmrelease, Request as RunnerRequest};
use crate::state::{self, Event, Severity, Store};

use super::units::{Units, RELEASE_PREFIX};
use crate::protocol::{parse_object, report, Call, Reply, Request};

/// How often a waiting request looks at the state for the outcome.
const POLL: Duration = Duration::from_millis(20);
/// How long a reconcile may take beyond its timeout before the CLI is told
/// it goes on without it.
const WAIT_MARGIN: Duration = Duration::from_secs(30);

/// Answers `call`.
pub async fn handle(call: Call, units: &mut Units, store: &Arc<Mutex<Store>>) {
    let Call { request, reply } = call;
    let answer = match request {
        Request::Status => status(units, store),
        Request::Metrics => match units.metrics().render(&lock(store), Some(units.config())) {
            Ok(text) => Reply::Text {
                text,
                changed: false,
            },
            Err(err) => failed(err),
        },
        Request::Events { object, limit } => {
            let limit = limit.min(crate::state::EVENT_HISTORY_LIMIT as usize);
            match report::events(&lock(store), object.as_deref(), limit) {
                Ok(events) => Reply::Events { events },
                Err(err) => failed(err),
            }
        }
        Request::Suspend { object } => set_suspended(units, store, &object, true).await,
        Request::Resume { object } => set_suspended(units, store, &object, false).await,
        Request::ReconcileSource { name } => {
            // Taken before the trigger: a fetch may finish before the task below starts.
            let since = state::now_millis();
            match source_named(&name).and_then(|source| units.trigger_source(&source)) {
                Err(message) => Reply::Failed { message },
                Ok(source) => {
                    let wait = source.timeout() + WAIT_MARGIN;
                    let source = source.source_ref();
                    let store = store.clone();
                    answer_later(reply, async move {
                        source_outcome(&store, &source, since, wait).await
                    });
                    return;
                }
            }
        }
        Request::ReconcileKustomization { name, .. } if units.is_pending_removal(&name) => {
            let outcome = units.remove(&name).await;
            answer_removal(reply, outcome);
            return;
        }
        Request::ReconcileHelmRelease { name, .. }
            if units.is_pending_removal(&format!("{RELEASE_PREFIX}{name}")) =>
        {
            let outcome = units.remove(&format!("{RELEASE_PREFIX}{name}")).await;
            answer_removal(reply, outcome);
            return;
        }
        Request::ReconcileHelmRelease { name, with_source } => {
            match release_plan(units, &name, with_source) {
                Err(message) => Reply::Failed { message },
                Ok(plan) => {
                    let store = store.clone();
                    answer_later(reply, async move { plan.run(&store).await });
                    return;
                }
            }
        }
        Request::ReconcileKustomization { name, with_source } => {
            match reconcile_plan(units, &name, with_source) {
                Err(message) => Reply::Failed { message },
                Ok(plan) => {
                    let store = store.clone();
                    answer_later(reply, async move { plan.run(&store).await });
                    return;
                }
            }
        }
        Request::ImportBundle {
            file,
            allow_downgrade,
        } => {
            let import = bundle_import(units, store, file, allow_downgrade);
            answer_later(reply, async move {
                match import.await {
                    Ok(report) => Reply::Done { message: report },
                    Err(message) => Reply::Failed { message },
                }
            });
            return;
        }
        Request::Build { name } => match build_target(units, &name) {
            Err(message) => Reply::Failed { message },
            Ok(target) => {
                let deadline = target.deadline();
                answer_later(
                    reply,
                    within(deadline, "build", async move { target.build().await }),
                );
                return;
            }
        },
        Request::Diff { name } => match build_target(units, &name) {
            Err(message) => Reply::Failed { message },
            Ok(target) => {
                let deadline = target.deadline();
                answer_later(
                    reply,
                    within(deadline, "diff", async move { target.diff().await }),
                );
                return;
            }
        },
    };
    let _ = reply.send(answer);
}

/// Imports a bundle on the blocking pool, then asks the scheduler to sync
/// every source it gave an artifact: the summary, or why it was refused.
pub(super) fn bundle_import(
    units: &Units,
    store: &Arc<Mutex<Store>>,
    file: std::path::PathBuf,
    allow_downgrade: bool,
) -> impl Future<Output = Result<String, String>> + Send + 'static {
    let config = units.config().clone();
    let triggers = units.source_triggers();
    let store = store.clone();
    async move {
        let (report, file) = tokio::task::spawn_blocking(move || {
            let report = reconcile_bundle::import(&file, &config, &store, allow_downgrade);
            (report, file)
        })
        .await
        .map_err(|err| format!("the import task failed: {err}"))?;
        let report = report.map_err(|err| err.to_string())?;
        for source in &report.imported {
            if !triggers.request(source) {
                tracing::warn!(source = %source, "no scheduler took the sync after a bundle import; it syncs at its interval");
            }
        }
        Ok(report.summary(&file))
    }
}

/// Answers `reply` with the outcome of a removal once it is done.
fn answer_removal(
    reply: oneshot::Sender<Reply>,
    outcome: oneshot::Receiver<Result<String, String>>,
) {
    tokio::spawn(async move {
        let answer = match outcome.await {
            Ok(Ok(message)) => Reply::Done { message },
            Ok(Err(message)) => Reply::Failed { message },
            Err(_) => Reply::Failed {
                message: "the daemon stopped before the removal finished".into(),
            },
        };
        let _ = reply.send(answer);
    });
}

/// Answers `reply` with the outcome of `work`, run on a task of its own so
/// the main loop keeps turning; the work is dropped as soon as the client
/// has gone.
fn answer_later(
    mut reply: oneshot::Sender<Reply>,
    work: impl Future<Output = Reply> + Send + 'static,
) {
    tokio::spawn(async move {
        tokio::select! {
            outcome = work => {
                let _ = reply.send(outcome);
            }
            () = reply.closed() => {}
        }
    });
}

/// `work`, cut off after `deadline` (the kustomization's timeout).
async fn within(deadline: Duration, what: &str, work: impl Future<Output = Reply>) -> Reply {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| Reply::Failed {
            message: format!(
                "{what} timed out after {} (the kustomization's timeout); is the API server reachable?",
                humantime::format_duration(deadline)
            ),
        })
}

fn failed(err: impl std::fmt::Display) -> Reply {
    Reply::Failed {
        message: err.to_string(),
    }
}

fn status(units: &Units, store: &Mutex<Store>) -> Reply {
    match report::status_report(Some(&lock(store)), Some(units.file_config())) {
        Ok(mut report) => {
            report.daemon_running = true;
            Reply::Status(report)
        }
        Err(err) => failed(err),
    }
}

async fn set_suspended(
    units: &mut Units,
    store: &Mutex<Store>,
    object: &str,
    suspend: bool,
) -> Reply {
    let (kind, name) = parse_object(object);
    let configured = match (kind, SourceRef::parse(object)) {
        ("kustomization", _) => units.file_config().kustomizations.contains_key(name),
        (helmrelease::KIND, _) => units.file_config().helm_releases.contains_key(name),
        (_, Some(source)) => units.file_config().sources.contains_key(&source),
        _ => false,
    };
    if !configured {
        return Reply::Failed {
            message: format!("no {kind}/{name} in the config"),
        };
    }
    let (verb, reason) = if suspend {
        ("suspended", "Suspended")
    } else {
        ("resumed", "Resumed")
    };
    let recorded = {
        let store = lock(store);
        let changed = if suspend {
            store.suspend(kind, name).map(|()| true)
        } else {
            store.resume(kind, name)
        };
        changed.and_then(|changed| {
            store.record_event(&Event::new(
                kind,
                name,
                Severity::Info,
                reason,
                &format!("{verb} from the command line"),
            ))?;
            Ok(changed)
        })
    };
    if let Err(err) = recorded {
        return failed(err);
    }
    // As `source =` or `kustomization =`, so journalctl selects it with the rest.
    match kind {
        "kustomization" => {
            tracing::info!(kustomization = name, reason, "{verb} from the command line")
        }
        helmrelease::KIND => {
            tracing::info!(helmrelease = name, reason, "{verb} from the command line")
        }
        _ => {
            tracing::info!(source = %format_args!("{kind}/{name}"), reason, "{verb} from the command line")
        }
    }
    if let Err(err) = units.refresh_suspensions().await {
        return failed(err);
    }
    let still = !suspend && configured_suspended(units, kind, name);
    Reply::Done {
        message: if still {
            format!("{kind}/{name} resumed, but the config file still sets suspend = true")
        } else {
            format!("{kind}/{name} {verb}")
        },
    }
}

fn configured_suspended(units: &Units, kind: &str, name: &str) -> bool {
    let config = units.file_config();
    match kind {
        "kustomization" => config.kustomizations.get(name).is_some_and(|k| k.suspend),
        helmrelease::KIND => config.helm_releases.get(name).is_some_and(|r| r.suspend),
        _ => SourceRef::from_parts(kind, name)
            .and_then(|source| config.source(&source))
            .is_some_and(|s| s.suspend()),
    }
}

/// The source a request names as `kind/name`; a bare name is a Git source.
fn source_named(written: &str) -> Result<SourceRef, String> {
    if !written.contains('/') {
        return Ok(SourceRef::new(SourceKind::Git, written));
    }
    SourceRef::parse(written).ok_or_else(|| {
        let known: Vec<&str> = SourceKind::ALL.iter().map(|k| k.as_str()).collect();
        format!(
            "{written:?} names no known source kind: kedge knows {}",
            known.join(", ")
        )
    })
}

/// Waits until `source` records an attempt made at or after `since`.
async fn source_outcome(
    store: &Mutex<Store>,
    source: &SourceRef,
    since: i64,
    wait: Duration,
) -> Reply {
    let deadline = Instant::now() + wait;
    loop {
        let status = lock(store).source_status(source.kind.as_str(), &source.name);
        match status {
            Err(err) => return failed(err),
            Ok(Some(s)) if s.last_attempt_at.is_some_and(|at| at >= since) => {
                let message = format!("{source}: {}", s.message);
                return if s.ready {
                    Reply::Done { message }
                } else {
                    Reply::Failed { message }
                };
            }
            Ok(_) => {}
        }
        if Instant::now() > deadline {
            return timed_out(&source.to_string(), wait);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `object` (a kustomization or a release) records an attempt
/// made at or after `since`.
async fn unit_outcome(store: &Mutex<Store>, object: &Object, since: i64, wait: Duration) -> Reply {
    let deadline = Instant::now() + wait;
    loop {
        match object.attempt(&lock(store)) {
            Err(err) => return failed(err),
            Ok(Some(attempt)) if attempt.at.is_some_and(|at| at >= since) => {
                let message = format!("{object}: {}", attempt.message);
                return if attempt.ready {
                    Reply::Done { message }
                } else {
                    Reply::Failed {
                        message: format!("{message} ({})", attempt.reason),
                    }
                };
            }
            Ok(_) => {}
        }
        if Instant::now() > deadline {
            return timed_out(&object.to_string(), wait);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What the runner runs, as a reconcile request names it.
#[derive(Debug, Clone)]
enum Object {
    Kustomization(String),
    HelmRelease(String),
}

/// The last recorded attempt of an [`Object`].
struct Attempt {
    at: Option<i64>,
    ready: bool,
    reason: String,
    message: String,
}

impl Object {
    fn attempt(&self, store: &Store) -> Result<Option<Attempt>, crate::state::Error> {
        Ok(match self {
            Object::Kustomization(name) => store.kustomization_status(name)?.map(|s| Attempt {
                at: s.last_attempt_at,
                ready: s.ready,
                reason: s.reason,
                message: s.message,
            }),
            Object::HelmRelease(name) => store.helm_release_status(name)?.map(|s| Attempt {
                at: s.last_attempt_at,
                ready: s.ready,
                reason: s.reason,
                message: s.message,
            }),
        })
    }

    /// The runner's key for it.
    fn unit(&self) -> String {
        match self {
            Object::Kustomization(name) => unit_key("kustomization", name),
            Object::HelmRelease(name) => unit_key(helmrelease::KIND, name),
        }
    }
}

impl std::fmt::Display for Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Object::Kustomization(name) => write!(f, "kustomization/{name}"),
            Object::HelmRelease(name) => write!(f, "{}/{name}", helmrelease::KIND),
        }
    }
}

fn timed_out(object: &str, wait: Duration) -> Reply {
    Reply::Failed {
        message: format!(
            "{object}: no outcome within {}s; the reconcile goes on, see `kedge status`",
            wait.as_secs()
        ),
    }
}

/// A reconcile of a kustomization or release, with its source first when asked.
struct ReconcilePlan {
    object: Object,
    requests: tokio::sync::mpsc::Sender<RunnerRequest>,
    wait: Duration,
    /// The source to fetch first, how long to wait for it, and when it was
    /// triggered.
    source_first: Option<(SourceRef, Duration, i64)>,
}

fn reconcile_plan(units: &Units, name: &str, with_source: bool) -> Result<ReconcilePlan, String> {
    let k = units.kustomization(name)?;
    plan_for(
        units,
        Object::Kustomization(name.to_string()),
        &k.source,
        k.timeout,
        with_source,
    )
}

fn release_plan(units: &Units, name: &str, with_source: bool) -> Result<ReconcilePlan, String> {
    let r = units.helm_release(name)?;
    plan_for(
        units,
        Object::HelmRelease(name.to_string()),
        &r.chart,
        r.timeout + crate::helm::RESULT_MARGIN,
        with_source,
    )
}

fn plan_for(
    units: &Units,
    object: Object,
    source: &SourceRef,
    timeout: Duration,
    with_source: bool,
) -> Result<ReconcilePlan, String> {
    let requests = units.runner_requests().ok_or("the runner is not running")?;
    let source_first = if with_source {
        let since = state::now_millis();
        let configured = units.trigger_source(source)?;
        Some((source.clone(), configured.timeout() + WAIT_MARGIN, since))
    } else {
        None
    };
    Ok(ReconcilePlan {
        object,
        requests,
        wait: timeout + WAIT_MARGIN,
        source_first,
    })
}

impl ReconcilePlan {
    async fn run(self, store: &Mutex<Store>) -> Reply {
        if let Some((source, wait, since)) = &self.source_first {
            if let failure @ Reply::Failed { .. } =
                source_outcome(store, source, *since, *wait).await
            {
                return failure;
            }
        }
        let since = state::now_millis();
        let request = RunnerRequest {
            unit: self.object.unit(),
        };
        if let Err(err) = self.requests.send(request).await {
            return failed(format!("the runner did not take the request: {err}"));
        }
        unit_outcome(store, &self.object, since, self.wait).await
    }
}

/// What `kedge build` and `kedge diff` name: a kustomization (`NAME` or
/// `kustomization/NAME`) or a Helm release (`helm_release/NAME`).
enum BuildTarget {
    Kustomization(Box<Kustomization>, Context),
    HelmRelease(Box<HelmRelease>, helmrelease::ReleaseContext),
}

fn build_target(units: &Units, written: &str) -> Result<BuildTarget, String> {
    let ctx = || {
        units
            .request_context()
            .ok_or("no cluster connection yet (nothing has run)")
    };
    match parse_object(written) {
        ("kustomization", name) => {
            let k = units
                .config()
                .kustomizations
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no kustomization {name} in the config"))?;
            Ok(BuildTarget::Kustomization(Box::new(k), ctx()?))
        }
        (helmrelease::KIND, name) => {
            let release = units
                .config()
                .helm_releases
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no {}/{name} in the config", helmrelease::KIND))?;
            let rc = units.release_context(ctx()?);
            Ok(BuildTarget::HelmRelease(Box::new(release), rc))
        }
        (kind, _) => Err(format!(
            "{written:?}: build and diff take a kustomization (NAME) or a Helm release ({}/NAME), not a {kind}",
            helmrelease::KIND
        )),
    }
}

impl BuildTarget {
    fn deadline(&self) -> Duration {
        match self {
            BuildTarget::Kustomization(k, _) => k.timeout,
            BuildTarget::HelmRelease(r, _) => r.timeout + crate::helm::RESULT_MARGIN,
        }
    }

    async fn build(&self) -> Reply {
        match self {
            BuildTarget::Kustomization(k, ctx) => build(ctx, k).await,
            BuildTarget::HelmRelease(r, rc) => match helmrelease::render(rc, r).await {
                Ok(rendered) => Reply::Text {
                    text: release_yaml(&rendered),
                    changed: false,
                },
                Err(err) => failed(err),
            },
        }
    }

    async fn diff(&self) -> Reply {
        match self {
            BuildTarget::Kustomization(k, ctx) => dry_run_diff(ctx, k).await,
            BuildTarget::HelmRelease(r, rc) => release_diff(rc, r).await,
        }
    }
}

/// The release's objects, then its hooks, as `helm template` lists them.
fn release_yaml(rendered: &helmrelease::Rendered) -> String {
    let mut text = to_yaml(&rendered.objects);
    for hook in &rendered.hooks {
        if !text.is_empty() {
            text.push_str("---\n");
        }
        text.push_str(hook.trim_end());
        text.push('\n');
    }
    text
}

/// What upgrading the release now would change in its objects (hooks are
/// not compared: Helm runs them, nothing keeps them).
async fn release_diff(rc: &helmrelease::ReleaseContext, release: &HelmRelease) -> Reply {
    let rendered = match helmrelease::render(rc, release).await {
        Ok(rendered) => rendered,
        Err(err) => return failed(err),
    };
    let ignore = match helmrelease::drift_ignore(release) {
        Ok(ignore) => ignore,
        Err(err) => return failed(err),
    };
    let owner = Owner::new(&release.name, helmrelease::OWNER_KIND);
    match rc
        .ctx
        .manager
        .dry_run_diff(rendered.objects, &owner, &ignore)
        .await
    {
        Ok(diffs) => {
            let (text, changed) = format_diff(&diffs, &[]);
            Reply::Text {
                text: format!(
                    "{}/{} at {}:\n{text}",
                    helmrelease::KIND,
                    release.name,
                    rendered.chart_revision
                ),
                changed,
            }
        }
        Err(err) => failed(err),
    }
}

async fn build(ctx: &Context, k: &Kustomization) -> Reply {
    let built = kustomization::desired_objects(ctx, k).await;
    match built {
        Ok(mut desired) => Reply::Text {
            text: to_yaml(&masked(&mut desired)),
            changed: false,
        },
        Err(err) => failed(err),
    }
}

async fn dry_run_diff(ctx: &Context, k: &Kustomization) -> Reply {
    let built = kustomization::desired_objects(ctx, k).await;
    let desired = match built {
        Ok(built) => built,
        Err(err) => return failed(err),
    };
    let owner = Owner::new(&k.name, OWNER_KIND);
    let ignore = match crate::reconcile::overlay::drift_ignore(&k.drift.ignore) {
        Ok(ignore) => ignore,
        Err(err) => return failed(err),
    };
    let revision = desired.revision;
    match ctx
        .manager
        .dry_run_diff(desired.objects, &owner, &ignore)
        .await
    {
        Ok(diffs) => {
            let (text, changed) = format_diff(&diffs, &desired.decrypted);
            Reply::Text {
                text: format!("kustomization/{} at {revision}:\n{text}", k.name),
                changed,
            }
        }
        Err(err) => failed(err),
    }
}

/// The objects, with the values of those decrypted from SOPS masked.
fn masked(desired: &mut kustomization::Desired) -> Vec<Value> {
    let mut objects = std::mem::take(&mut desired.objects);
    for (index, object) in objects.iter_mut().enumerate() {
        let decrypted = crate::apply::ObjRef::from_manifest(index, object)
            .is_ok_and(|id| desired.decrypted.contains(&id));
        if decrypted {
            crate::postbuild::mask(object);
        }
    }
    objects
}

fn to_yaml(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|object| serde_yaml::to_string(object).unwrap_or_else(|err| format!("# {err}\n")))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// One line per object that would change, then one per field:
/// `+` added, `-` removed, `~` changed. Values of Secrets, and of objects
/// decrypted from SOPS, are not shown.
pub fn format_diff(diffs: &[ObjectDiff], decrypted: &[crate::apply::ObjRef]) -> (String, bool) {
    let mut text = String::new();
    for d in diffs {
        match d.kind {
            DiffKind::Unchanged => {}
            DiffKind::Create => text.push_str(&format!("+ {} would be created\n", d.object)),
            DiffKind::Update => {
                text.push_str(&format!("~ {} would change\n", d.object));
                let mut fields = Vec::new();
                if decrypted.contains(&d.object) {
                    text.push_str("    (values decrypted from SOPS are not shown)\n");
                    continue;
                }
                let secret = d.object.kind == "Secret";
                changed_fields("", d.live.as_ref(), Some(&d.merged), secret, &mut fields);
                for field in fields {
                    text.push_str(&format!("    {field}\n"));
                }
            }
        }
    }
    let changed = !text.is_empty();
    if !changed {
        text.push_str("no changes\n");
    }
    (text, changed)
}

fn changed_fields(
    path: &str,
    live: Option<&Value>,
    merged: Option<&Value>,
    secret: bool,
    out: &mut Vec<String>,
) {
    if let (Some(Value::Object(a)), Some(Value::Object(b))) = (live, merged) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let child = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            changed_fields(&child, a.get(key), b.get(key), secret, out);
        }
        return;
    }
    if live == merged {
        return;
    }
    let hidden = secret && (path.starts_with("data") || path.starts_with("stringData"));
    let show = |v: &Value| {
        if hidden {
            "(hidden)".to_string()
        } else {
            v.to_string()
        }
    };
    match (live, merged) {
        (None, Some(b)) => out.push(format!("+ {path}: {}", show(b))),
        (Some(a), None) => out.push(format!("- {path}: {}", show(a))),
        (Some(a), Some(b)) => out.push(format!("~ {path}: {} -> {}", show(a), show(b))),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::ObjRef;
    use serde_json::json;

    fn objref(kind: &str) -> ObjRef {
        ObjRef {
            group: String::new(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: Some("apps".into()),
            name: "a".into(),
        }
    }

    #[test]
    fn a_diff_lists_changed_fields_and_hides_secret_values() {
        let diffs = vec![
            ObjectDiff {
                object: objref("ConfigMap"),
                kind: DiffKind::Update,
                live: Some(json!({"data": {"key": "old", "same": "x"}})),
                merged: json!({"data": {"key": "new", "same": "x", "added": "y"}}),
            },
            ObjectDiff {
                object: objref("Secret"),
                kind: DiffKind::Update,
                live: Some(json!({"data": {"password": "b2xk"}})),
                merged: json!({"data": {"password": "bmV3"}}),
            },
            ObjectDiff {
                object: objref("Service"),
                kind: DiffKind::Unchanged,
                live: Some(json!({})),
                merged: json!({}),
            },
        ];
        let (text, changed) = format_diff(&diffs, &[]);
        assert!(changed);
        assert!(text.contains("~ data.key: \"old\" -> \"new\""), "{text}");
        assert!(text.contains("+ data.added: \"y\""), "{text}");
        assert!(!text.contains("same"), "{text}");
        assert!(
            text.contains("~ data.password: (hidden) -> (hidden)"),
            "{text}"
        );
        assert!(
            !text.contains("bmV3") && !text.contains("Service"),
            "{text}"
        );
    }

    #[test]
    fn no_change_says_so() {
        let (text, changed) = format_diff(&[], &[]);
        assert!(!changed);
        assert_eq!(text, "no changes\n");
    }
}
