//! The subcommands that talk to the running daemon over its control
//! socket: reconcile, suspend, resume, events, diff, build NAME.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::DaemonArgs;
use crate::config::{Config, DEFAULT_SOCKET_PATH, DEFAULT_STATE_DIR};
use crate::protocol::report;
use crate::protocol::{call, ClientError, EventRow, Reply, Request};
use crate::state::now_millis;

/// How long a quick request (status, events, suspend) may take.
pub const QUICK: Duration = Duration::from_secs(30);
/// How long a request that waits for a reconcile or a dry-run may take.
pub const SLOW: Duration = Duration::from_secs(30 * 60);

/// The control socket: `--socket`, else `[agent] socket` of the config
/// file, else the default.
pub fn socket_path(explicit: Option<&Path>, config: &Path) -> PathBuf {
    if let Some(socket) = explicit {
        return socket.to_path_buf();
    }
    match Config::load(config) {
        Ok(config) => config.agent.socket,
        // The daemon runs on its last good config while the file is refused.
        Err(_) => {
            raw_agent_path(config, "socket").unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH))
        }
    }
}

/// `[agent] KEY` of a config file that does not validate, if it is at
/// least TOML.
pub fn raw_agent_path(config: &Path, key: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(config).ok()?;
    let value: toml::Table = toml::from_str(&text).ok()?;
    value.get("agent")?.get(key)?.as_str().map(PathBuf::from)
}

pub(super) fn ask(
    daemon: &DaemonArgs,
    request: &Request,
    timeout: Duration,
) -> Result<Reply, ClientError> {
    call(
        &socket_path(daemon.socket.as_deref(), &daemon.config),
        request,
        timeout,
    )
}

pub fn reconcile_source(daemon: &DaemonArgs, name: &str) -> anyhow::Result<ExitCode> {
    let name = name.strip_prefix("git/").unwrap_or(name).to_string();
    timed(|| ask(daemon, &Request::ReconcileSource { name }, SLOW))
}

pub fn reconcile_kustomization(
    daemon: &DaemonArgs,
    name: &str,
    with_source: bool,
) -> anyhow::Result<ExitCode> {
    let request = Request::ReconcileKustomization {
        name: name.to_string(),
        with_source,
    };
    timed(|| ask(daemon, &request, SLOW))
}

pub fn reconcile_helm_release(
    daemon: &DaemonArgs,
    name: &str,
    with_source: bool,
) -> anyhow::Result<ExitCode> {
    let request = Request::ReconcileHelmRelease {
        name: name.to_string(),
        with_source,
    };
    timed(|| ask(daemon, &request, SLOW))
}

/// Prints the reply and how long the daemon took.
fn timed(request: impl FnOnce() -> Result<Reply, ClientError>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let reply = request()?;
    let took = started.elapsed();
    let code = print_reply(reply)?;
    eprintln!("({:.2}s)", took.as_secs_f64());
    Ok(code)
}

pub fn suspend(daemon: &DaemonArgs, object: &str, suspend: bool) -> anyhow::Result<ExitCode> {
    let object = object.to_string();
    let request = if suspend {
        Request::Suspend { object }
    } else {
        Request::Resume { object }
    };
    print_reply(ask(daemon, &request, QUICK)?)
}

pub fn diff(daemon: &DaemonArgs, name: &str) -> anyhow::Result<ExitCode> {
    let request = Request::Diff {
        name: name.to_string(),
    };
    print_reply(ask(daemon, &request, SLOW)?)
}

pub fn build(daemon: &DaemonArgs, name: &str) -> anyhow::Result<ExitCode> {
    let request = Request::Build {
        name: name.to_string(),
    };
    match ask(daemon, &request, SLOW) {
        Err(err @ ClientError::NotRunning { .. }) => Err(anyhow::anyhow!(
            "{err}; `kedge build NAME` builds through the daemon, and {name} is not a directory"
        )),
        other => print_reply(other?),
    }
}

/// Events from the daemon, or from the state database when it is stopped.
pub fn events(
    daemon: &DaemonArgs,
    object: Option<String>,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let request = Request::Events {
        object: object.clone(),
        limit,
    };
    match ask(daemon, &request, QUICK) {
        Err(err @ ClientError::NotRunning { .. }) => {
            let database = match Config::load(&daemon.config) {
                Ok(config) => config.database_path(),
                Err(err) => {
                    eprintln!("{err}");
                    raw_agent_path(&daemon.config, "state_dir")
                        .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
                        .join("kedge.db")
                }
            };
            eprintln!("{err}; reading {}", database.display());
            let Some(store) = super::status::open_database(&database)? else {
                return print_reply(Reply::Events { events: vec![] });
            };
            let events = report::events(&store, object.as_deref(), limit)?;
            print_reply(Reply::Events { events })
        }
        other => print_reply(other?),
    }
}

/// Prints a reply: results on stdout, failures on stderr (exit 1).
pub fn print_reply(reply: Reply) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    let written = match reply {
        Reply::Done { message } => writeln!(out, "{message}").map(|()| ExitCode::SUCCESS),
        Reply::Failed { message } => {
            eprintln!("kedge: {message}");
            Ok(ExitCode::FAILURE)
        }
        Reply::Text { text, changed } => out.write_all(text.as_bytes()).map(|()| {
            if changed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }),
        Reply::Events { events } => print_events(&mut out, &events).map(|()| ExitCode::SUCCESS),
        Reply::Status(report) => {
            super::status::print_report(&mut out, &report).map(|()| ExitCode::SUCCESS)
        }
    };
    match written.and_then(|code| out.flush().map(|()| code)) {
        Ok(code) => Ok(code),
        // `kedge events | head` is fine.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(err) => Err(err).context("writing to stdout"),
    }
}

fn print_events(out: &mut dyn Write, events: &[EventRow]) -> std::io::Result<()> {
    if events.is_empty() {
        return writeln!(out, "no events");
    }
    let now = now_millis();
    let rows = events.iter().rev().map(|e| {
        [
            super::status::age(now - e.at),
            if e.severity == "error" {
                "Warning"
            } else {
                "Normal"
            }
            .to_string(),
            e.reason.clone(),
            e.object.clone(),
            e.message.replace('\n', "; "),
        ]
    });
    super::status::print_table(
        out,
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        rows,
    )
}
