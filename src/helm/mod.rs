//! `kedge-helm`, the helper that runs one Helm action with Helm's own SDK.
//!
//! # Design
//! Charts must render and releases be stored exactly as `helm` does it (Go
//! templates, sprig, hooks, Helm's release Secrets), so each action runs
//! in a short-lived Go process (`tools/kedge-helm`): kedge writes one JSON
//! [`Request`] on its stdin and reads NDJSON from its stdout — log events,
//! forwarded to `tracing`, then one [`Outcome`]. No Go process stays
//! resident. A request with `post_render` makes the helper send the
//! rendered manifest back (a `post_render` line) before Helm applies it:
//! kedge answers on stdin with the manifest its post-renderers made.
//! Stopping an action sends SIGTERM (Helm then records an
//! interrupted install or upgrade as failed) and, after [`STOP_GRACE`],
//! SIGKILL.
//!
//! This module knows nothing of the config or the state: the release
//! reconciler decides what to ask and records what it gets.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// How long a helper may take to stop after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// Beyond the action's own timeout, how long kedge waits for the helper's
/// result (connecting, loading the chart, recording the release).
pub const RESULT_MARGIN: Duration = Duration::from_secs(60);
/// The longest line kedge reads from the helper (a rendered manifest).
const MAX_LINE_BYTES: usize = 64 << 20;

/// The Helm action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Render,
    Status,
    Install,
    Upgrade,
    Test,
    Rollback,
    Uninstall,
    Unlock,
    Version,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Render => "render",
            Op::Status => "status",
            Op::Install => "install",
            Op::Upgrade => "upgrade",
            Op::Test => "test",
            Op::Rollback => "rollback",
            Op::Uninstall => "uninstall",
            Op::Unlock => "unlock",
            Op::Version => "version",
        }
    }
}

/// What Flux's `crds` policies do with a chart's `crds/` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CrdPolicy {
    Skip,
    Create,
    CreateReplace,
}

/// One action for the helper. Paths are the node's.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Request {
    pub op: Option<Op>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<PathBuf>,
    pub release_name: String,
    /// The release's target namespace.
    pub namespace: String,
    /// Where Helm keeps the release's Secrets (default: `namespace`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_namespace: Option<String>,
    /// A packaged chart (`.tgz`) or a chart directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<PathBuf>,
    /// The merged values, as Helm takes them.
    pub values: serde_json::Map<String, serde_json::Value>,
    pub timeout_seconds: u64,
    /// Wait with kstatus until the release's objects are ready.
    pub wait: bool,
    pub wait_for_jobs: bool,
    pub max_history: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crds: Option<CrdPolicy>,
    pub create_namespace: bool,
    pub cleanup_on_fail: bool,
    pub force: bool,
    pub disable_hooks: bool,
    /// Rollback: the revision to return to; 0 is the one before the last.
    pub version: u32,
    pub keep_history: bool,
    pub description: String,
    /// Render without the cluster, like `helm template`.
    pub offline: bool,
    pub is_upgrade: bool,
    /// Labels put on every object the chart renders (a post-renderer), as
    /// Flux labels a release's objects with its name.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// `status`: also return the last release's manifest.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub with_manifest: bool,
    /// `install`, `upgrade`, `render`: ask kedge to post-render the
    /// manifest (see [`Helper::run_post_rendering`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub post_render: bool,
    /// The name the helper's logs carry as `HELMRELEASE=` (kedge's name of
    /// the release; the Helm release name goes in `RELEASE=`). Not sent.
    #[serde(skip)]
    pub log_name: String,
    /// Send Helm's debug logs too; [`Helper::run`] sets it when kedge logs
    /// at debug level.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub debug: bool,
}

impl Request {
    /// A request of `op` for release `release_name` in `namespace`.
    pub fn new(op: Op, release_name: &str, namespace: &str) -> Request {
        Request {
            op: Some(op),
            release_name: release_name.to_string(),
            namespace: namespace.to_string(),
            timeout_seconds: 300,
            ..Request::default()
        }
    }

    fn op(&self) -> Op {
        self.op.unwrap_or(Op::Status)
    }
}

/// The helper's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Outcome {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    /// The release after the action (none: no release exists).
    pub release: Option<ReleaseSummary>,
    #[serde(default)]
    pub history: Vec<Revision>,
    /// `render`, and `status` with `with_manifest`: the manifest without hooks.
    #[serde(default)]
    pub manifest: String,
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// `version`: the Helm SDK the helper was built with.
    #[serde(default)]
    pub version: String,
}

/// A release as Helm stored it, without its manifest or values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ReleaseSummary {
    pub name: String,
    pub namespace: String,
    pub revision: u32,
    /// Helm's status: `deployed`, `failed`, `pending-upgrade`, …
    pub status: String,
    pub chart_name: String,
    pub chart_version: String,
    #[serde(default)]
    pub app_version: String,
    #[serde(default)]
    pub description: String,
    /// sha256 of the values Helm stored with the release.
    pub config_digest: String,
    /// sha256 of the rendered manifest, hooks excluded.
    pub manifest_digest: String,
    #[serde(default)]
    pub objects: Vec<ObjectId>,
    #[serde(default)]
    pub tests: Vec<TestRun>,
}

impl ReleaseSummary {
    /// Helm's `pending-install`, `pending-upgrade` and `pending-rollback`:
    /// an action holds (or held, before a power cut) the release.
    pub fn is_pending(&self) -> bool {
        self.status.starts_with("pending-")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Revision {
    pub revision: u32,
    pub status: String,
    pub chart_version: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Hook {
    pub name: String,
    pub kind: String,
    pub path: String,
    pub manifest: String,
    #[serde(default)]
    pub events: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    #[serde(default)]
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct TestRun {
    pub name: String,
    pub phase: String,
}

/// Errors of running the helper.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the Helm helper {} is not installed: `apt install kedge-helm`", path.display())]
    NotInstalled { path: PathBuf },
    #[error("starting the Helm helper {}: {source}", path.display())]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("talking to the Helm helper ({op} of release {release}): {message}")]
    Protocol {
        op: &'static str,
        release: String,
        message: String,
    },
    /// Helm ran and failed; `outcome` still says what it left behind.
    #[error("helm {op} of release {release}: {message}")]
    Failed {
        op: &'static str,
        release: String,
        message: String,
        outcome: Box<Outcome>,
    },
    #[error("helm {op} of release {release} took longer than {seconds}s; it was stopped")]
    Timeout {
        op: &'static str,
        release: String,
        seconds: u64,
    },
    #[error("helm {op} of release {release} was stopped before it finished")]
    Stopped { op: &'static str, release: String },
}

impl Error {
    /// The helper ended without a result (killed, crashed, or stopped at
    /// kedge's deadline): what Helm did is unknown, and the release may be
    /// left `pending-*`.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Error::Protocol { .. } | Error::Timeout { .. })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The installed helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    path: PathBuf,
}

impl Helper {
    /// The helper at `path`, if it is an executable file.
    pub fn at(path: &Path) -> Result<Helper> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_file() => Ok(Helper {
                path: path.to_path_buf(),
            }),
            _ => Err(Error::NotInstalled {
                path: path.to_path_buf(),
            }),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `request` to its end, or until `stop` resolves (then the
    /// helper gets SIGTERM, and SIGKILL after [`STOP_GRACE`]). A request
    /// to post-render is refused.
    pub async fn run(
        &self,
        request: &Request,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Outcome> {
        let refuse = |_: &str| -> std::result::Result<String, String> {
            Err("no post-renderer was given for this action".to_string())
        };
        self.run_post_rendering(request, &refuse, stop).await
    }

    /// [`Helper::run`], answering the helper's requests to post-render a
    /// manifest with `post_render`'s manifest (or its error).
    pub async fn run_post_rendering(
        &self,
        request: &Request,
        post_render: &PostRender<'_>,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<Outcome> {
        let op = request.op().as_str();
        let release = request.release_name.clone();
        let protocol = |message: String| Error::Protocol {
            op,
            release: release.clone(),
            message,
        };
        let sent = Request {
            debug: request.debug || tracing::enabled!(tracing::Level::DEBUG),
            ..request.clone()
        };
        let body = serde_json::to_vec(&sent).map_err(|err| protocol(err.to_string()))?;
        let mut child = Command::new(&self.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| Error::Spawn {
                path: self.path.clone(),
                source,
            })?;
        // Kept open: the helper reads kedge's post-rendered manifests from it.
        let Some(mut stdin) = child.stdin.take() else {
            return Err(protocol("no stdin".into()));
        };
        stdin
            .write_all(&body)
            .await
            .map_err(|err| protocol(format!("writing the request: {err}")))?;
        let Some(stdout) = child.stdout.take() else {
            return Err(protocol("no stdout".into()));
        };
        let limit = Duration::from_secs(request.timeout_seconds) + RESULT_MARGIN;
        let names = LogNames::of(request);
        tokio::pin!(stop);
        let read = {
            let reading = read_outcome(BufReader::new(stdout), &mut stdin, post_render, &names);
            tokio::pin!(reading);
            tokio::select! {
                read = &mut reading => read,
                _ = tokio::time::sleep(limit) => {
                    terminate(&mut child).await;
                    return Err(Error::Timeout { op, release, seconds: limit.as_secs() });
                }
                _ = &mut stop => {
                    terminate(&mut child).await;
                    return Err(Error::Stopped { op, release });
                }
            }
        };
        drop(stdin);
        let _ = child.wait().await;
        let outcome = read.map_err(protocol)?;
        if outcome.ok {
            Ok(outcome)
        } else {
            Err(Error::Failed {
                op,
                release,
                message: outcome.error.clone(),
                outcome: Box::new(outcome),
            })
        }
    }
}

/// What kedge does with a manifest the helper asks it to post-render.
pub type PostRender<'a> = dyn Fn(&str) -> std::result::Result<String, String> + Send + Sync + 'a;

/// The names a helper's log lines carry: kedge's name of the release
/// (`HELMRELEASE=`) and Helm's (`RELEASE=`).
struct LogNames {
    owner: String,
    release: String,
}

impl LogNames {
    fn of(request: &Request) -> LogNames {
        let owner = match request.log_name.as_str() {
            "" => request.release_name.as_str(),
            name => name,
        };
        LogNames {
            owner: owner.to_string(),
            release: request.release_name.clone(),
        }
    }
}

/// Reads the helper's lines until its result, forwarding log events and
/// answering requests to post-render on `stdin`.
async fn read_outcome(
    mut lines: BufReader<tokio::process::ChildStdout>,
    stdin: &mut tokio::process::ChildStdin,
    post_render: &PostRender<'_>,
    names: &LogNames,
) -> std::result::Result<Outcome, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let read = lines
            .read_line(&mut line)
            .await
            .map_err(|err| format!("reading its output: {err}"))?;
        if read == 0 {
            return Err("it exited without a result".into());
        }
        if line.len() > MAX_LINE_BYTES {
            return Err(format!("a line of {} bytes", line.len()));
        }
        match serde_json::from_str::<Line>(&line) {
            Ok(Line::Log {
                level,
                message,
                fields,
            }) => forward(names, &level, &message, fields),
            Ok(Line::PostRender { manifest }) => {
                let answer = match post_render(&manifest) {
                    Ok(manifest) => PostRendered {
                        manifest,
                        error: String::new(),
                    },
                    Err(error) => PostRendered {
                        manifest: String::new(),
                        error,
                    },
                };
                let mut text = serde_json::to_vec(&answer)
                    .map_err(|err| format!("writing a post-rendered manifest: {err}"))?;
                text.push(b'\n');
                stdin
                    .write_all(&text)
                    .await
                    .map_err(|err| format!("writing a post-rendered manifest: {err}"))?;
            }
            Ok(Line::Result(outcome)) => return Ok(*outcome),
            Err(err) => return Err(format!("an unreadable line ({err}): {}", line.trim_end())),
        }
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Line {
    Log {
        level: String,
        message: String,
        #[serde(default)]
        fields: Option<serde_json::Map<String, serde_json::Value>>,
    },
    /// The rendered manifest, for kedge's post-renderers.
    #[serde(rename = "post_render")]
    PostRender {
        manifest: String,
    },
    Result(Box<Outcome>),
}

/// kedge's answer to a `post_render` line.
#[derive(Serialize)]
struct PostRendered {
    manifest: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    error: String,
}

fn forward(
    names: &LogNames,
    level: &str,
    message: &str,
    fields: Option<serde_json::Map<String, serde_json::Value>>,
) {
    let fields = fields
        .map(|f| serde_json::Value::Object(f).to_string())
        .unwrap_or_default();
    let (owner, release) = (&names.owner, &names.release);
    match level {
        "error" => {
            tracing::error!(helmrelease = %owner, release = %release, %fields, "helm: {message}")
        }
        "warn" => {
            tracing::warn!(helmrelease = %owner, release = %release, %fields, "helm: {message}")
        }
        "debug" => {
            tracing::debug!(helmrelease = %owner, release = %release, %fields, "helm: {message}")
        }
        _ => tracing::info!(helmrelease = %owner, release = %release, %fields, "helm: {message}"),
    }
}

/// SIGTERM, then SIGKILL if the helper is still there after the grace.
async fn terminate(child: &mut Child) {
    if let Some(pid) = child
        .id()
        .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_written_with_the_helper_s_field_names() {
        let mut request = Request::new(Op::Upgrade, "redis", "cache");
        request.crds = Some(CrdPolicy::CreateReplace);
        request.values.insert("replicaCount".into(), 2.into());
        let written = serde_json::to_value(&request).unwrap_or_default();
        assert_eq!(written["op"], "upgrade");
        assert_eq!(written["release_name"], "redis");
        assert_eq!(written["crds"], "CreateReplace");
        assert_eq!(written["values"]["replicaCount"], 2);
        assert!(written.get("chart").is_none());
    }

    #[test]
    fn result_and_log_lines_are_told_apart() {
        let log: Line = serde_json::from_str(r#"{"type":"log","level":"info","message":"x"}"#)
            .unwrap_or(Line::Result(Box::default()));
        assert!(matches!(log, Line::Log { .. }));
        let result: Result<Line, _> = serde_json::from_str(
            r#"{"type":"result","ok":true,"release":{"name":"r","namespace":"n","revision":2,"status":"pending-upgrade","chart_name":"c","chart_version":"1.0.0","config_digest":"sha256:a","manifest_digest":"sha256:b"}}"#,
        );
        let Ok(Line::Result(outcome)) = result else {
            panic!("a result line: {result:?}", result = result.is_ok())
        };
        let release = outcome.release.unwrap_or_default();
        assert_eq!(release.revision, 2);
        assert!(release.is_pending());
    }
}
