//! `kedge status`: a table of sources like `flux get sources git`, read
//! from the state database. Works whether the daemon runs or not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_STATE_DIR};
use crate::state::{now_millis, SourceStatus, Store};

/// Where to find the state: from a config file, a state directory, or the
/// default config path.
pub enum StateLocation {
    Config(PathBuf),
    StateDir(PathBuf),
}

pub fn status(location: StateLocation) -> anyhow::Result<ExitCode> {
    let (state_dir, configured) = match location {
        StateLocation::Config(path) => {
            let config = Config::load(&path)?;
            let names: Vec<String> = config.sources.keys().cloned().collect();
            (config.agent.state_dir, Some(names))
        }
        StateLocation::StateDir(dir) => (dir, None),
    };
    let database = state_dir.join("kedge.db");
    let mut rows = if database.is_file() {
        Store::open_read_only(&database)?.source_statuses()?
    } else {
        Vec::new()
    };
    if let Some(names) = configured {
        rows.retain(|row| row.kind != "git" || names.contains(&row.name));
        for name in names {
            if !rows.iter().any(|row| row.kind == "git" && row.name == name) {
                rows.push(never_fetched(&name));
            }
        }
        rows.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    }
    let all_ready = rows.iter().all(|row| row.ready);
    match print_table(&rows, &database) {
        Ok(()) => {}
        // `kedge status | head` is fine.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(err) => return Err(err.into()),
    }
    Ok(if all_ready {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The state directory `kedge status` reads without options.
pub fn default_location() -> StateLocation {
    let config = Path::new(crate::config::DEFAULT_CONFIG_PATH);
    if config.is_file() {
        StateLocation::Config(config.to_path_buf())
    } else {
        StateLocation::StateDir(PathBuf::from(DEFAULT_STATE_DIR))
    }
}

fn never_fetched(name: &str) -> SourceStatus {
    SourceStatus {
        kind: "git".into(),
        name: name.into(),
        url: String::new(),
        revision: None,
        artifact_digest: None,
        artifact_path: None,
        artifact_inputs: None,
        last_attempt_at: None,
        last_success_at: None,
        last_artifact_at: None,
        ready: false,
        reason: "Progressing".into(),
        message: "not fetched yet".into(),
        consecutive_failures: 0,
    }
}

fn print_table(rows: &[SourceStatus], database: &Path) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "no sources recorded in {}", database.display())?;
        return Ok(());
    }
    let now = now_millis();
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            [
                format!("{}/{}", row.kind, row.name),
                row.revision.clone().unwrap_or_else(|| "-".into()),
                if row.ready {
                    "True".into()
                } else {
                    "False".into()
                },
                row.last_artifact_at
                    .map_or_else(|| "-".into(), |at| age(now - at)),
                row.message.replace('\n', " "),
            ]
        })
        .collect();
    let headers = ["NAME", "REVISION", "READY", "AGE", "MESSAGE"];
    let mut widths = headers.map(str::len);
    for line in &table {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |out: &mut dyn Write, cells: [&str; 5]| -> std::io::Result<()> {
        let mut line = String::new();
        for (index, cell) in cells.iter().enumerate() {
            if index == cells.len() - 1 {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   ", width = widths[index]));
            }
        }
        writeln!(out, "{}", line.trim_end())
    };
    print(&mut out, headers)?;
    for line in &table {
        print(&mut out, [&line[0], &line[1], &line[2], &line[3], &line[4]])?;
    }
    Ok(())
}

/// A kubectl-style age: `45s`, `12m`, `5h`, `3d`.
fn age(millis: i64) -> String {
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
