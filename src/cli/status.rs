//! `kedge status`: tables of sources and kustomizations like `flux get
//! sources git` and `flux get kustomizations`, read from the state
//! database. Works whether the daemon runs or not.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::{Config, DEFAULT_STATE_DIR};
use crate::state::{now_millis, KustomizationStatus, SourceStatus, Store};

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
            (config.agent.state_dir.clone(), Some(config))
        }
        StateLocation::StateDir(dir) => (dir, None),
    };
    let database = state_dir.join("kedge.db");
    let (mut sources, mut kustomizations) = if database.is_file() {
        let store = Store::open_read_only(&database)?;
        (store.source_statuses()?, store.kustomization_statuses()?)
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(config) = &configured {
        sources.retain(|row| row.kind != "git" || config.sources.contains_key(&row.name));
        for name in config.sources.keys() {
            if !sources
                .iter()
                .any(|row| row.kind == "git" && &row.name == name)
            {
                sources.push(never_fetched(name));
            }
        }
        sources.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        kustomizations.retain(|row| config.kustomizations.contains_key(&row.name));
        for (name, k) in &config.kustomizations {
            if !kustomizations.iter().any(|row| &row.name == name) {
                kustomizations.push(never_reconciled(name, &k.source.to_string()));
            }
        }
        kustomizations.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let all_ready =
        sources.iter().all(|row| row.ready) && kustomizations.iter().all(|row| row.ready);
    match print_tables(&sources, &kustomizations, &database) {
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

fn never_reconciled(name: &str, source: &str) -> KustomizationStatus {
    KustomizationStatus {
        name: name.into(),
        source: source.into(),
        ready: false,
        reason: "Progressing".into(),
        message: "not reconciled yet".into(),
        last_applied_revision: None,
        last_attempted_revision: None,
        last_attempt_at: None,
        last_success_at: None,
        last_duration_ms: None,
        consecutive_failures: 0,
        deletion_policy: "delete".into(),
    }
}

fn print_tables(
    sources: &[SourceStatus],
    kustomizations: &[KustomizationStatus],
    database: &Path,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if sources.is_empty() && kustomizations.is_empty() {
        writeln!(out, "nothing recorded in {}", database.display())?;
        return Ok(());
    }
    let now = now_millis();
    let ready = |ready: bool| if ready { "True" } else { "False" }.to_string();
    let one_line = |message: &str| message.replace('\n', " ");
    if !sources.is_empty() {
        let rows = sources.iter().map(|row| {
            [
                format!("{}/{}", row.kind, row.name),
                row.revision.clone().unwrap_or_else(|| "-".into()),
                ready(row.ready),
                row.last_artifact_at
                    .map_or_else(|| "-".into(), |at| age(now - at)),
                one_line(&row.message),
            ]
        });
        print_table(
            &mut out,
            ["NAME", "REVISION", "READY", "AGE", "MESSAGE"],
            rows,
        )?;
    }
    if !kustomizations.is_empty() {
        if !sources.is_empty() {
            writeln!(out)?;
        }
        let rows = kustomizations.iter().map(|row| {
            [
                format!("kustomization/{}", row.name),
                row.last_applied_revision
                    .clone()
                    .unwrap_or_else(|| "-".into()),
                ready(row.ready),
                row.last_attempt_at
                    .map_or_else(|| "-".into(), |at| age(now - at)),
                one_line(&row.message),
            ]
        });
        print_table(
            &mut out,
            ["NAME", "REVISION", "READY", "AGE", "MESSAGE"],
            rows,
        )?;
    }
    Ok(())
}

/// Prints aligned columns, the last one unpadded.
fn print_table<const N: usize>(
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
