//! The status report and event list, assembled from the state database
//! and the config: the same for the daemon's socket and for the CLI
//! reading the database while the daemon is stopped.

use crate::config::{Config, HelmRelease, SourceRef};
use crate::source;
use crate::state::{self, Event, KustomizationStatus, SourceStatus, Store};

use super::{parse_object, BundleRow, EventRow, ProblemRow, StatusReport, UnitRow};

/// Whether the source of `status` is in `config`.
fn is_configured(config: &Config, status: &SourceStatus) -> bool {
    SourceRef::from_parts(&status.kind, &status.name)
        .is_some_and(|source| config.sources.contains_key(&source))
}

/// The report of `store` (absent: nothing recorded yet). With `config`,
/// only its sources and kustomizations are listed, those never run
/// included.
pub fn status_report(
    store: Option<&Store>,
    config: Option<&Config>,
) -> Result<StatusReport, state::Error> {
    let (sources, kustomizations, mut problems) = match store {
        Some(store) => (
            store.source_statuses()?,
            store.kustomization_statuses()?,
            // A database of an older kedge opened read-only has no such table.
            store.agent_problems().unwrap_or_default(),
        ),
        None => Default::default(),
    };
    if let Some(message) = store.and_then(Store::unsaved_problem) {
        problems.push(state::AgentProblem {
            key: "state".to_string(),
            at: state::now_millis(),
            message,
        });
    }
    let suspended =
        |kind: &str, name: &str| store.is_some_and(|s| s.is_suspended(kind, name).unwrap_or(false));
    let mut source_rows: Vec<UnitRow> = sources
        .iter()
        .filter(|s| config.is_none_or(|c| is_configured(c, s)))
        .map(|s| source_row(s, suspended(&s.kind, &s.name)))
        .collect();
    let mut kustomization_rows: Vec<UnitRow> = kustomizations
        .iter()
        .filter(|k| {
            config.is_none_or(|c| c.kustomizations.contains_key(&k.name))
                || k.reason == state::REMOVAL_PENDING
        })
        .map(|k| kustomization_row(k, suspended("kustomization", &k.name)))
        .collect();
    if let Some(config) = config {
        for (source_ref, source) in &config.sources {
            let (kind, name) = (source_ref.kind.as_str(), source_ref.name.as_str());
            match source_rows
                .iter_mut()
                .find(|r| r.kind == kind && r.name == name)
            {
                Some(row) => {
                    row.suspended |= source.suspend();
                    let recorded = sources.iter().find(|s| s.kind == kind && s.name == name);
                    if let Some(recorded) = recorded {
                        not_fetched_from_new_url(row, &recorded.url, &source::display_url(source));
                    }
                }
                None => source_rows.push(never_run(
                    kind,
                    name,
                    source.suspend() || suspended(kind, name),
                    "not fetched yet",
                )),
            }
        }
        for (name, k) in &config.kustomizations {
            match kustomization_rows.iter_mut().find(|r| &r.name == name) {
                Some(row) => row.suspended |= k.suspend,
                None => kustomization_rows.push(never_run(
                    "kustomization",
                    name,
                    k.suspend || suspended("kustomization", name),
                    "not reconciled yet",
                )),
            }
        }
    }
    source_rows.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
    kustomization_rows.sort_by(|a, b| a.name.cmp(&b.name));
    let mut helm_releases = release_rows(store, config, suspended)?;
    if let Some(config) = config {
        let rows = source_rows
            .iter_mut()
            .chain(&mut kustomization_rows)
            .chain(&mut helm_releases);
        for row in rows {
            let key = format!("{}/{}", row.kind, row.name);
            row.declared_in = config.declared_in.get(&key).cloned();
        }
    }
    Ok(StatusReport {
        daemon_running: false,
        problems: problems
            .into_iter()
            .map(|p| ProblemRow {
                key: p.key,
                at: p.at,
                message: p.message,
            })
            .collect(),
        sources: source_rows,
        kustomizations: kustomization_rows,
        helm_releases,
        bundles: bundle_rows(store),
    })
}

/// How many bundle imports `kedge status` shows.
const BUNDLES_SHOWN: usize = 5;

fn bundle_rows(store: Option<&Store>) -> Vec<BundleRow> {
    // A database of an older kedge opened read-only has no such table.
    let imports = store
        .map(|s| s.bundle_imports(BUNDLES_SHOWN).unwrap_or_default())
        .unwrap_or_default();
    imports
        .into_iter()
        .map(|import| BundleRow {
            at: import.at,
            file: import.file,
            sequence: import.sequence,
            sources: import.sources,
            signer: import.signer,
        })
        .collect()
}

/// Releases as `flux get helmreleases` shows them: revision is the chart
/// version, the message names Helm's release revision.
fn release_rows(
    store: Option<&Store>,
    config: Option<&Config>,
    suspended: impl Fn(&str, &str) -> bool,
) -> Result<Vec<UnitRow>, state::Error> {
    // A database of an older kedge opened read-only has no such table.
    let recorded = store
        .map(|s| s.helm_release_statuses().unwrap_or_default())
        .unwrap_or_default();
    let mut rows: Vec<UnitRow> = recorded
        .iter()
        .filter(|r| {
            config.is_none_or(|c| c.helm_releases.contains_key(&r.name))
                || r.reason == state::REMOVAL_PENDING
        })
        .map(|r| UnitRow {
            kind: HelmRelease::KIND.into(),
            name: r.name.clone(),
            revision: r.last_applied_revision.clone(),
            ready: r.ready,
            suspended: suspended(HelmRelease::KIND, &r.name),
            reason: r.reason.clone(),
            message: r.message.clone(),
            since: r.last_attempt_at,
            declared_in: None,
        })
        .collect();
    for (name, release) in config.map(|c| &c.helm_releases).into_iter().flatten() {
        match rows.iter_mut().find(|r| &r.name == name) {
            Some(row) => row.suspended |= release.suspend,
            None => rows.push(never_run(
                HelmRelease::KIND,
                name,
                release.suspend || suspended(HelmRelease::KIND, name),
                "not reconciled yet",
            )),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}

/// The newest `limit` events of `object` (see [`parse_object`]), or of all.
pub fn events(
    store: &Store,
    object: Option<&str>,
    limit: usize,
) -> Result<Vec<EventRow>, state::Error> {
    let events = match object {
        Some(object) => {
            let (kind, name) = parse_object(object);
            store.events(kind, name, limit)?
        }
        None => store.recent_events(limit)?,
    };
    Ok(events.iter().map(event_row).collect())
}

fn event_row(event: &Event) -> EventRow {
    EventRow {
        at: event.at,
        object: format!("{}/{}", event.kind, event.name),
        severity: event.severity.as_str().to_string(),
        reason: event.reason.clone(),
        message: event.message.clone(),
    }
}

fn source_row(s: &SourceStatus, suspended: bool) -> UnitRow {
    UnitRow {
        kind: s.kind.clone(),
        name: s.name.clone(),
        revision: s.revision.clone(),
        ready: s.ready,
        suspended,
        reason: s.reason.clone(),
        message: s.message.clone(),
        since: s.last_artifact_at,
        declared_in: None,
    }
}

/// A source whose artifact came from a URL the config no longer names is
/// not ready until it fetched from the new one.
fn not_fetched_from_new_url(row: &mut UnitRow, recorded: &str, configured: &str) {
    if recorded == configured {
        return;
    }
    row.ready = false;
    row.reason = "Progressing".into();
    row.message = format!(
        "url changed to {configured}: not fetched from it yet (the artifact is from {recorded})"
    );
}

fn kustomization_row(k: &KustomizationStatus, suspended: bool) -> UnitRow {
    UnitRow {
        kind: "kustomization".into(),
        name: k.name.clone(),
        revision: k.last_applied_revision.clone(),
        ready: k.ready,
        suspended,
        reason: k.reason.clone(),
        message: k.message.clone(),
        since: k.last_attempt_at,
        declared_in: None,
    }
}

fn never_run(kind: &str, name: &str, suspended: bool, message: &str) -> UnitRow {
    UnitRow {
        kind: kind.into(),
        name: name.into(),
        revision: None,
        ready: false,
        suspended,
        reason: "Progressing".into(),
        message: message.into(),
        since: None,
        declared_in: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn configured_but_never_run_objects_are_listed_and_suspensions_shown(
    ) -> Result<(), state::Error> {
        let store = Store::open_in_memory()?;
        store.suspend("git", "fleet")?;
        let config = Config::parse(
            Path::new("k.toml"),
            "[git.fleet]\nurl = \"/srv/fleet\"\n[git.other]\nurl = \"/srv/other\"\nsuspend = true\n",
        );
        let Ok(config) = config else {
            panic!("test config must be valid: {config:?}")
        };
        let report = status_report(Some(&store), Some(&config))?;
        let names: Vec<(&str, bool)> = report
            .sources
            .iter()
            .map(|r| (r.name.as_str(), r.suspended))
            .collect();
        assert_eq!(names, [("fleet", true), ("other", true)]);
        assert!(!report.all_ready());
        Ok(())
    }

    #[test]
    fn a_source_whose_url_changed_is_not_ready_until_it_fetched_from_the_new_one(
    ) -> Result<(), state::Error> {
        let store = Store::open_in_memory()?;
        let ready = state::SourceOutcome::Ready {
            revision: "main@sha1:0123",
            digest: "d",
            path: Path::new("/var/lib/kedge/a.tar.gz"),
            inputs: "",
            new_artifact: true,
        };
        store.record_source_outcome("git", "fleet", "/srv/old", 1, ready)?;
        let config = |url: &str| {
            Config::parse(
                Path::new("k.toml"),
                &format!("[git.fleet]\nurl = \"{url}\"\n"),
            )
            .unwrap_or_else(|err| panic!("test config must be valid: {err}"))
        };
        let unchanged = status_report(Some(&store), Some(&config("/srv/old")))?;
        assert!(unchanged.sources[0].ready);
        let moved = status_report(Some(&store), Some(&config("/srv/new")))?;
        let row = &moved.sources[0];
        assert!(!row.ready, "{row:?}");
        assert_eq!(row.reason, "Progressing");
        assert!(
            row.message.contains("/srv/new") && row.message.contains("/srv/old"),
            "{}",
            row.message
        );
        Ok(())
    }

    #[test]
    fn a_refused_config_makes_the_report_not_ready() -> Result<(), state::Error> {
        let store = Store::open_in_memory()?;
        store.set_agent_problem(state::CONFIG_REFUSED, "k.toml:3:12: bad")?;
        let report = status_report(Some(&store), None)?;
        assert_eq!(report.problems.len(), 1);
        assert!(!report.all_ready());
        Ok(())
    }
}
