//! The daemon after bootstrap wrote its config: reloaded, restarted or
//! started, then watched through the control socket until the fleet
//! source and what the node's `kedge.toml` declares are Ready.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::protocol::{call, ClientError, Reply, Request, StatusReport};

/// How often bootstrap asks the daemon for its status.
const POLL: Duration = Duration::from_secs(1);
/// How long one status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// What changed in the local config, for the daemon.
pub struct Change {
    /// The file's content changed.
    pub written: bool,
    /// Its `[agent]` table changed, which a reload refuses: a restart.
    pub agent_changed: bool,
}

/// Makes the daemon run the config at `config`: a running daemon reloads a
/// changed file by itself (it watches it) and must be restarted when
/// `[agent]` changed; a stopped one is started when systemd runs kedge
/// for this file. Otherwise prints what to do.
pub fn apply(config: &Path, socket: &Path, change: &Change) -> anyhow::Result<()> {
    let running = answers(socket);
    let systemd = systemd_runs_kedge(config);
    match (running, systemd) {
        (true, _) if !change.written => println!("kedge runs this config already"),
        (true, true) if change.agent_changed => {
            println!("restarting kedge ([agent] changed): systemctl restart kedge");
            systemctl(&["restart", "kedge.service"])?;
        }
        (true, false) if change.agent_changed => println!(
            "kedge runs with the old [agent] table, which a reload keeps: restart it \
             (`kedge run --config {}`) to apply the new one",
            config.display()
        ),
        (true, _) => println!("kedge reloads the changed config (it watches the file)"),
        (false, true) => {
            println!("starting kedge: systemctl start kedge");
            systemctl(&["start", "kedge.service"])?;
        }
        (false, false) => println!(
            "kedge is not running (nothing answers on {}): start it with \
             `kedge run --config {}`",
            socket.display(),
            config.display()
        ),
    }
    Ok(())
}

fn answers(socket: &Path) -> bool {
    call(socket, &Request::Status, STATUS_TIMEOUT).is_ok()
}

/// Whether systemd manages the kedge service that reads `config`: booted
/// with systemd, the packaged unit installed, and `config` the file its
/// `ExecStart` names.
fn systemd_runs_kedge(config: &Path) -> bool {
    Path::new("/run/systemd/system").is_dir()
        && config == Path::new(DEFAULT_CONFIG_PATH)
        && Command::new("systemctl")
            .args(["cat", "kedge.service"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("systemctl")
        .args(args)
        .status()
        .map_err(|err| anyhow::anyhow!("running systemctl: {err}"))?;
    anyhow::ensure!(
        status.success(),
        "systemctl {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// What must be Ready: `kind/name` of the fleet source and of each
/// kustomization and Helm release the node's `kedge.toml` declares.
pub fn expected_units(source: &str, fragment: &str) -> Vec<String> {
    let mut units = vec![source.to_string()];
    let Ok(table) = toml::from_str::<toml::Table>(fragment) else {
        return units;
    };
    for kind in ["kustomization", "helm_release"] {
        if let Some(names) = table.get(kind).and_then(toml::Value::as_table) {
            units.extend(names.keys().map(|name| format!("{kind}/{name}")));
        }
    }
    units
}

/// Polls the daemon until every unit in `expected` is Ready and it has no
/// problem, printing each change; an error after `timeout`.
pub fn wait_ready(socket: &Path, expected: &[String], timeout: Duration) -> anyhow::Result<()> {
    println!(
        "waiting up to {} for {}",
        humantime::format_duration(timeout),
        expected.join(", ")
    );
    let deadline = Instant::now() + timeout;
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut last = String::from("no answer yet");
    loop {
        let lines = match call(socket, &Request::Status, STATUS_TIMEOUT) {
            Ok(Reply::Status(report)) => {
                let (lines, ready) = progress(&report, expected);
                if ready {
                    print_changed(&mut shown, lines);
                    println!("ready");
                    return Ok(());
                }
                lines
            }
            Ok(other) => vec![("daemon".into(), format!("unexpected reply {other:?}"))],
            Err(err @ (ClientError::NotRunning { .. } | ClientError::Stopped { .. })) => {
                vec![("daemon".into(), err.to_string())]
            }
            Err(err) => return Err(err.into()),
        };
        if let Some((unit, line)) = lines.iter().find(|(_, line)| !line.starts_with("Ready")) {
            last = format!("{unit}: {line}");
        }
        print_changed(&mut shown, lines);
        if Instant::now() >= deadline {
            anyhow::bail!(
                "not ready within {}: {last}; `kedge status` shows where it stands",
                humantime::format_duration(timeout)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// A line per expected unit and daemon problem, and whether all is Ready.
fn progress(report: &StatusReport, expected: &[String]) -> (Vec<(String, String)>, bool) {
    let mut lines: Vec<(String, String)> = report
        .problems
        .iter()
        .map(|problem| (format!("problem/{}", problem.key), problem.message.clone()))
        .collect();
    let mut ready = report.problems.is_empty();
    for unit in expected {
        let row = report
            .sources
            .iter()
            .chain(&report.kustomizations)
            .chain(&report.helm_releases)
            .find(|row| format!("{}/{}", row.kind, row.name) == *unit);
        let line = match row {
            Some(row) if row.ready => {
                format!("Ready {}", row.revision.as_deref().unwrap_or_default())
            }
            Some(row) => {
                ready = false;
                format!(
                    "not ready: {} {}",
                    row.reason,
                    row.message.replace('\n', " ")
                )
            }
            None => {
                ready = false;
                "not declared yet".to_string()
            }
        };
        lines.push((unit.clone(), line));
    }
    (lines, ready)
}

fn print_changed(shown: &mut BTreeMap<String, String>, lines: Vec<(String, String)>) {
    for (unit, line) in lines {
        if shown.get(&unit) != Some(&line) {
            println!("  {unit}: {}", line.trim_end());
            shown.insert(unit, line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::UnitRow;

    fn row(kind: &str, name: &str, ready: bool) -> UnitRow {
        UnitRow {
            kind: kind.into(),
            name: name.into(),
            revision: Some("main@sha1:abc".into()),
            ready,
            suspended: false,
            reason: if ready { "Succeeded" } else { "Progressing" }.into(),
            message: String::new(),
            since: None,
            declared_in: None,
        }
    }

    #[test]
    fn ready_means_the_source_and_everything_the_fragment_declares() {
        let expected = expected_units(
            "git/fleet",
            "[kustomization.edge-1]\npath = \"x\"\n[helm_release.redis]\n",
        );
        assert_eq!(
            expected,
            ["git/fleet", "kustomization/edge-1", "helm_release/redis"]
        );
        let mut report = StatusReport {
            sources: vec![row("git", "fleet", true)],
            kustomizations: vec![row("kustomization", "edge-1", true)],
            ..StatusReport::default()
        };
        assert!(
            !progress(&report, &expected).1,
            "the release is not there yet"
        );
        report
            .helm_releases
            .push(row("helm_release", "redis", false));
        assert!(!progress(&report, &expected).1);
        report.helm_releases[0].ready = true;
        assert!(progress(&report, &expected).1);
    }
}
