//! The control socket's protocol: one JSON [`Request`] line from the CLI,
//! one JSON [`Reply`] line from the daemon, then the connection closes.
//!
//! # Design
//! serde_json over a unix stream socket, nothing more: `socat - UNIX:/run/kedge/kedge.sock`
//! and `{"request":"status"}` is a valid session. [`call`] is the client
//! side, blocking, for the CLI. A request is small ([`MAX_REQUEST`]) and
//! must arrive within [`REQUEST_DEADLINE`]; a client that closes the
//! connection before the reply cancels the request.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub mod report;

/// The longest request line the daemon reads, in bytes.
pub const MAX_REQUEST: u64 = 64 * 1024;
/// How long the daemon waits for a whole request line.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);
/// The longest reply line the CLI reads, in bytes (a build's YAML).
pub const MAX_REPLY: u64 = 64 * 1024 * 1024;

/// What the CLI asks of the daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "kebab-case")]
pub enum Request {
    /// Every source and kustomization, and the daemon's own problems.
    Status,
    /// The newest events of one object (`git/NAME`, `kustomization/NAME` or
    /// a kustomization's bare name), or of all.
    Events {
        object: Option<String>,
        limit: usize,
    },
    /// Fetch a source now and wait for the outcome.
    ReconcileSource {
        name: String,
    },
    /// Reconcile a kustomization now (after fetching its source first when
    /// `with_source`) and wait for the outcome.
    ReconcileKustomization {
        name: String,
        with_source: bool,
    },
    /// Reconcile a Helm release now (after fetching its chart first when
    /// `with_source`) and wait for the outcome.
    ReconcileHelmRelease {
        name: String,
        with_source: bool,
    },
    /// Stop reconciling an object until resumed, across restarts.
    Suspend {
        object: String,
    },
    Resume {
        object: String,
    },
    /// The YAML a kustomization would apply.
    Build {
        name: String,
    },
    /// What applying a kustomization now would change (server dry-run).
    Diff {
        name: String,
    },
    /// The Prometheus text of `/metrics`.
    Metrics,
    /// Verify and import the signed bundle at `file` (a path the daemon
    /// reads), then sync the sources it carries.
    ImportBundle {
        file: PathBuf,
        allow_downgrade: bool,
    },
}

/// A request inside the process (from the control socket or an HTTP
/// endpoint) and where its reply goes.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// The daemon's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "kebab-case")]
pub enum Reply {
    /// The request succeeded.
    Done {
        message: String,
    },
    /// The request was understood but failed, or the object is not ready.
    Failed {
        message: String,
    },
    Status(StatusReport),
    Events {
        events: Vec<EventRow>,
    },
    /// Output to print as is; `changed` for a diff that found changes.
    Text {
        text: String,
        changed: bool,
    },
}

/// What `kedge status` shows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// Whether this came from the running daemon (else from the database).
    pub daemon_running: bool,
    /// Problems of the daemon itself, e.g. a refused config.
    pub problems: Vec<ProblemRow>,
    pub sources: Vec<UnitRow>,
    pub kustomizations: Vec<UnitRow>,
    #[serde(default)]
    pub helm_releases: Vec<UnitRow>,
    /// The newest bundle imports, newest first.
    #[serde(default)]
    pub bundles: Vec<BundleRow>,
}

/// One import of a signed bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRow {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub file: String,
    pub sequence: i64,
    /// `kind/name` of the sources it gave an artifact, comma-separated.
    pub sources: String,
    pub signer: String,
}

impl StatusReport {
    /// Whether every source and kustomization is ready and the daemon has
    /// no problem.
    pub fn all_ready(&self) -> bool {
        self.problems.is_empty()
            && self
                .sources
                .iter()
                .chain(&self.kustomizations)
                .chain(&self.helm_releases)
                .all(|row| row.ready)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProblemRow {
    pub key: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    pub message: String,
}

/// One source or kustomization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRow {
    /// `git` or `kustomization`.
    pub kind: String,
    pub name: String,
    /// The current artifact's revision (sources) or the last applied one.
    pub revision: Option<String>,
    pub ready: bool,
    pub suspended: bool,
    pub reason: String,
    pub message: String,
    /// When the shown state began (new artifact, last attempt), in
    /// milliseconds since the Unix epoch.
    pub since: Option<i64>,
    /// Where it is declared when not in the local file:
    /// `git/fleet@<revision>:<path>` (`[agent] config_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_in: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRow {
    pub at: i64,
    /// `kind/name`.
    pub object: String,
    /// `info` or `error`.
    pub severity: String,
    pub reason: String,
    pub message: String,
}

/// Splits `git/NAME` or `kustomization/NAME` (a bare name is a
/// kustomization) into its kind and name.
pub fn parse_object(object: &str) -> (&str, &str) {
    match object.split_once('/') {
        Some((kind, name)) => (kind, name),
        None => ("kustomization", object),
    }
}

/// Failures of talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("kedge is not running (nothing listens on {})", socket.display())]
    NotRunning {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The socket exists but this user may not use it.
    #[error("permission denied on {}: run as root or as a member of group kedge", socket.display())]
    PermissionDenied { socket: PathBuf },
    /// The exchange failed midway.
    #[error("talking to kedge on {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The connection closed before a reply: the daemon stopped (or
    /// restarted) while it worked on the request.
    #[error("kedge on {}: the daemon stopped before it replied; what was asked may not have finished", socket.display())]
    Stopped { socket: PathBuf },
    /// The reply could not be parsed.
    #[error("kedge on {} replied with something unreadable: {message}", socket.display())]
    Protocol { socket: PathBuf, message: String },
}

/// Sends `request` to the daemon listening on `socket` and waits up to
/// `timeout` for its reply.
pub fn call(socket: &Path, request: &Request, timeout: Duration) -> Result<Reply, ClientError> {
    let io = |source: std::io::Error| ClientError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                socket: socket.to_path_buf(),
                source,
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            socket: socket.to_path_buf(),
        },
        _ => io(source),
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).map_err(|e| ClientError::Protocol {
        socket: socket.to_path_buf(),
        message: e.to_string(),
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .take(MAX_REPLY)
        .read_line(&mut reply)
        .map_err(io)?;
    if reply.is_empty() {
        return Err(ClientError::Stopped {
            socket: socket.to_path_buf(),
        });
    }
    serde_json::from_str(&reply).map_err(|e| ClientError::Protocol {
        socket: socket.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_one_json_object_named_by_their_request_field() {
        let line = serde_json::to_string(&Request::ReconcileKustomization {
            name: "apps".into(),
            with_source: true,
        })
        .unwrap_or_default();
        assert_eq!(
            line,
            r#"{"request":"reconcile-kustomization","name":"apps","with_source":true}"#
        );
        let parsed: Result<Request, _> = serde_json::from_str(r#"{"request":"status"}"#);
        assert_eq!(parsed.ok(), Some(Request::Status));
    }

    #[test]
    fn a_status_reply_round_trips() {
        let reply = Reply::Status(StatusReport {
            daemon_running: true,
            problems: vec![],
            sources: vec![UnitRow {
                kind: "git".into(),
                name: "fleet".into(),
                revision: Some("main@sha1:abc".into()),
                ready: true,
                suspended: false,
                reason: "Succeeded".into(),
                message: "stored".into(),
                since: Some(1),
                declared_in: None,
            }],
            kustomizations: vec![],
            helm_releases: vec![],
            bundles: vec![],
        });
        let line = serde_json::to_string(&reply).unwrap_or_default();
        let back: Result<Reply, _> = serde_json::from_str(&line);
        assert_eq!(back.ok(), Some(reply));
    }

    #[test]
    fn a_bare_name_is_a_kustomization() {
        assert_eq!(parse_object("apps"), ("kustomization", "apps"));
        assert_eq!(parse_object("git/fleet"), ("git", "fleet"));
    }

    #[test]
    fn a_missing_socket_means_the_daemon_is_not_running() {
        let dir = tempfile::tempdir().ok();
        let socket = dir
            .as_ref()
            .map(|d| d.path().join("kedge.sock"))
            .unwrap_or_default();
        let result = call(&socket, &Request::Status, Duration::from_secs(1));
        assert!(
            matches!(result, Err(ClientError::NotRunning { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn a_connection_closed_before_the_reply_means_the_daemon_stopped() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("kedge.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket)?;
        let daemon = std::thread::spawn(move || -> std::io::Result<()> {
            let (stream, _) = listener.accept()?;
            let mut request = String::new();
            BufReader::new(&stream).read_line(&mut request)?;
            Ok(()) // dropped without a reply, as a daemon that stops
        });
        let result = call(
            &socket,
            &Request::ReconcileKustomization {
                name: "apps".into(),
                with_source: false,
            },
            Duration::from_secs(5),
        );
        daemon
            .join()
            .map_err(|_| std::io::Error::other("daemon thread"))??;
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            message.contains("the daemon stopped before it replied"),
            "{message}"
        );
        Ok(())
    }
}
