//! `kedge status`: tables of sources and kustomizations like `flux get
//! sources git` and `flux get kustomizations`, from the running daemon, or
//! read from the state database when it is stopped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{Output, StatusArgs};
use crate::config::{Config, DEFAULT_STATE_DIR};
use crate::protocol::report::status_report;
use crate::protocol::{call, ClientError, Reply, Request, StatusReport, UnitRow};
use crate::state::{now_millis, Store};

/// How often `--watch` prints again.
const WATCH_EVERY: Duration = Duration::from_secs(2);

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    loop {
        let report = fetch(&args)?;
        if args.watch {
            print!("\x1b[2J\x1b[H");
        }
        let printed = match args.output {
            Output::Json => serde_json::to_string_pretty(&report)
                .map_err(std::io::Error::other)
                .and_then(|json| writeln!(std::io::stdout().lock(), "{json}")),
            Output::Table => print_report(&mut std::io::stdout().lock(), &report),
        };
        match printed {
            Ok(()) => {}
            // `kedge status | head` is fine.
            Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => {
                return Ok(ExitCode::SUCCESS)
            }
            Err(err) => return Err(err.into()),
        }
        if !args.watch {
            return Ok(if report.all_ready() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// The report from the daemon when one answers, else from the database.
fn fetch(args: &StatusArgs) -> anyhow::Result<StatusReport> {
    let location = match (&args.location.config, &args.location.state_dir) {
        (Some(config), _) => StateLocation::Config(config.clone()),
        (None, Some(dir)) => StateLocation::StateDir(dir.clone()),
        (None, None) => default_location(),
    };
    let socket = match (&args.socket, &location) {
        (Some(socket), _) => Some(socket.clone()),
        (None, StateLocation::Config(config)) => Some(super::control::socket_path(None, config)),
        (None, StateLocation::StateDir(_)) => None,
    };
    if let Some(socket) = socket {
        match call(&socket, &Request::Status, super::control::QUICK) {
            Ok(Reply::Status(report)) => return Ok(report),
            Ok(Reply::Failed { message }) => anyhow::bail!("{message}"),
            Ok(other) => anyhow::bail!("unexpected reply to status: {other:?}"),
            Err(err @ (ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. })) => {
                eprintln!("{err}; reading the state database");
            }
            Err(err) => return Err(err.into()),
        }
    }
    offline_report(location)
}

/// Where to find the state: from a config file, or a state directory.
pub enum StateLocation {
    Config(PathBuf),
    StateDir(PathBuf),
}

fn offline_report(location: StateLocation) -> anyhow::Result<StatusReport> {
    let (state_dir, configured) = match location {
        StateLocation::Config(path) => match Config::load(&path) {
            Ok(config) => (config.agent.state_dir.clone(), Some(config)),
            Err(crate::config::Error::Read { source, .. })
                if source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                return Err(permission_denied(&path));
            }
            Err(err) => {
                eprintln!("{err}");
                let state_dir = super::control::raw_agent_path(&path, "state_dir")
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
                (state_dir, None)
            }
        },
        StateLocation::StateDir(dir) => (dir, None),
    };
    let database = state_dir.join("kedge.db");
    let store = open_database(&database)?;
    Ok(status_report(store.as_ref(), configured.as_ref())?)
}

/// The state database read-only, `None` when there is none yet. "Cannot
/// look" is not "nothing there": a database this user may not read is an
/// error.
pub(super) fn open_database(database: &Path) -> anyhow::Result<Option<Store>> {
    match std::fs::metadata(database) {
        Ok(_) => Ok(Some(Store::open_read_only(database)?)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(permission_denied(database))
        }
        Err(err) => Err(anyhow::anyhow!("{}: {err}", database.display())),
    }
}

fn permission_denied(path: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "permission denied reading {}: run as root or as a member of group kedge",
        path.display()
    )
}

/// The state directory `kedge status` reads without options.
pub fn default_location() -> StateLocation {
    let config = Path::new(crate::config::DEFAULT_CONFIG_PATH);
    // A config this user may not even look at is still the config.
    if !matches!(config.try_exists(), Ok(false)) {
        StateLocation::Config(config.to_path_buf())
    } else {
        StateLocation::StateDir(PathBuf::from(DEFAULT_STATE_DIR))
    }
}

/// The daemon's problems, then a table of sources, one of kustomizations
/// and one of Helm releases.
pub fn print_report(out: &mut dyn Write, report: &StatusReport) -> std::io::Result<()> {
    let now = now_millis();
    for problem in &report.problems {
        writeln!(out, "{} ({} ago)", problem.message, age(now - problem.at))?;
    }
    if !report.problems.is_empty() {
        writeln!(out)?;
    }
    let tables = [
        &report.sources,
        &report.kustomizations,
        &report.helm_releases,
    ];
    if tables.iter().all(|rows| rows.is_empty()) {
        writeln!(out, "nothing recorded")?;
        return Ok(());
    }
    let headers = ["NAME", "REVISION", "SUSPENDED", "READY", "AGE", "MESSAGE"];
    let layered = tables
        .iter()
        .flat_map(|rows| rows.iter())
        .any(|row| row.declared_in.is_some());
    let mut first = true;
    for rows in tables.into_iter().filter(|rows| !rows.is_empty()) {
        if !first {
            writeln!(out)?;
        }
        first = false;
        if layered {
            print_table(
                out,
                DECLARED_HEADERS,
                rows.iter().map(|r| declared_cells(r, now)),
            )?;
        } else {
            print_table(out, headers, rows.iter().map(|r| unit_cells(r, now)))?;
        }
    }
    if !report.bundles.is_empty() {
        writeln!(out)?;
        let headers = ["BUNDLE", "SEQUENCE", "AGE", "SOURCES", "SIGNER"];
        let rows = report.bundles.iter().map(|b| {
            [
                b.file.clone(),
                b.sequence.to_string(),
                age(now - b.at),
                b.sources.clone(),
                b.signer.clone(),
            ]
        });
        print_table(out, headers, rows)?;
    }
    Ok(())
}

/// The columns when part of the config comes from `[agent] config_from`.
const DECLARED_HEADERS: [&str; 7] = [
    "NAME",
    "REVISION",
    "SUSPENDED",
    "READY",
    "AGE",
    "DECLARED IN",
    "MESSAGE",
];

fn declared_cells(row: &UnitRow, now: i64) -> [String; 7] {
    let [name, revision, suspended, ready, age, message] = unit_cells(row, now);
    let declared = row
        .declared_in
        .clone()
        .unwrap_or_else(|| "local file".into());
    [name, revision, suspended, ready, age, declared, message]
}

fn unit_cells(row: &UnitRow, now: i64) -> [String; 6] {
    let flag = |on: bool| if on { "True" } else { "False" }.to_string();
    [
        format!("{}/{}", row.kind, row.name),
        row.revision.clone().unwrap_or_else(|| "-".into()),
        flag(row.suspended),
        flag(row.ready),
        row.since.map_or_else(|| "-".into(), |at| age(now - at)),
        row.message.replace('\n', " "),
    ]
}

/// Prints aligned columns, the last one unpadded.
pub fn print_table<const N: usize>(
    out: &mut dyn Write,
    headers: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> std::io::Result<()> {
    let rows: Vec<[String; N]> = rows.collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut print = |cells: [&str; N]| -> std::io::Result<()> {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index == N - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[index]));
            }
        }
        writeln!(out, "{}", line.trim_end())
    };
    print(headers)?;
    for row in &rows {
        print(std::array::from_fn(|i| row[i].as_str()))?;
    }
    Ok(())
}

/// A kubectl-style age: `45s`, `12m`, `5h`, `3d`.
pub fn age(millis: i64) -> String {
    let seconds = (millis / 1000).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(45_000), "45s");
        assert_eq!(age(12 * 60_000), "12m");
        assert_eq!(age(5 * 3_600_000), "5h");
        assert_eq!(age(3 * 86_400_000), "3d");
    }
}
