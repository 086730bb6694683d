//! Importing a signed bundle on a node: verified by
//! [`source::bundle::open`], checked against rollback per source, its
//! artifacts moved into the artifact store and recorded in the state in
//! one transaction. The sources it carries then sync (the caller asks the
//! scheduler), which publishes them exactly as a fetch would
//! ([`source::sync`] reads what the bundle gave).
//!
//! # Guarantees
//! - A refused bundle changes nothing: no artifact, no state row; the
//!   refusal is logged and recorded as an event of `bundle/<file name>`.
//! - A source's artifact from a bundle with a lower sequence than the one
//!   imported last for it is refused, unless `allow_downgrade`; the same
//!   sequence with the same artifact is a no-op, with another one refused.
//! - Sources the node does not configure are left out (and named).

use std::path::Path;
use std::sync::Mutex;

use crate::config::{Config, SourceRef};
use crate::source::bundle::{self, Carried, Refusal};
use crate::state::{self, BundleArtifact, BundleImport, Event, Severity, Store};

use super::kustomization::lock;

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub sequence: u64,
    pub signer: String,
    /// Sources given a new artifact, to sync now.
    pub imported: Vec<SourceRef>,
    /// Sources whose artifact from this bundle was imported before.
    pub unchanged: Vec<SourceRef>,
    /// `kind/name` of carried sources this node does not configure.
    pub not_configured: Vec<String>,
}

impl ImportReport {
    /// One line for the CLI and the journal.
    pub fn summary(&self, file: &Path) -> String {
        let list = |sources: &[SourceRef]| {
            sources
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut line = format!(
            "bundle {} (sequence {}, signed by {}): ",
            file.display(),
            self.sequence,
            self.signer
        );
        if self.imported.is_empty() {
            line.push_str("nothing new");
        } else {
            line.push_str(&format!("imported {}", list(&self.imported)));
        }
        if !self.unchanged.is_empty() {
            line.push_str(&format!("; already imported: {}", list(&self.unchanged)));
        }
        if !self.not_configured.is_empty() {
            line.push_str(&format!(
                "; not configured here, left out: {}",
                self.not_configured.join(", ")
            ));
        }
        line
    }
}

/// Failures of an import.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Refused(#[from] bundle::Error),
    #[error("bundle {}: recording the import: {source}", file.display())]
    State {
        file: std::path::PathBuf,
        #[source]
        source: state::Error,
    },
}

/// Imports the bundle at `file` for the sources of `config`. On refusal,
/// logs it and records an error event; nothing else changes.
pub fn import(
    file: &Path,
    config: &Config,
    store: &Mutex<Store>,
    allow_downgrade: bool,
) -> Result<ImportReport, ImportError> {
    let imported = import_checked(file, config, store, allow_downgrade);
    match &imported {
        Ok(report) => {
            tracing::info!(bundle = %file.display(), sequence = report.sequence, "{}", report.summary(file))
        }
        Err(err) => {
            tracing::warn!(bundle = %file.display(), reason = "BundleRefused", "{err}");
            let name = file
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            let event = Event::new(
                "bundle",
                &name,
                Severity::Error,
                "BundleRefused",
                &err.to_string(),
            );
            if let Err(record) = lock(store).record_event(&event) {
                tracing::error!(error = %record, "recording the refusal of a bundle");
            }
        }
    }
    imported
}

fn import_checked(
    file: &Path,
    config: &Config,
    store: &Mutex<Store>,
    allow_downgrade: bool,
) -> Result<ImportReport, ImportError> {
    let state_dir = &config.agent.state_dir;
    let opened = bundle::open(file, &config.agent.trusted_keys_dir, state_dir)?;
    let sequence = opened.contents.sequence;
    let (configured, not_configured): (Vec<Carried>, Vec<Carried>) = opened
        .carried()
        .into_iter()
        .partition(|carried| config.sources.contains_key(&carried.source));
    let state_error = |source| ImportError::State {
        file: file.to_path_buf(),
        source,
    };
    // Held from the rollback check to the record: one import at a time.
    let mut store = lock(store);
    let mut new = Vec::new();
    let mut unchanged = Vec::new();
    for carried in configured {
        let last = store
            .bundle_artifact(carried.source.kind.as_str(), &carried.source.name)
            .map_err(state_error)?;
        match rollback_check(&carried, sequence, last.as_ref(), allow_downgrade) {
            Ok(true) => new.push(carried),
            Ok(false) => unchanged.push(carried.source),
            Err(refusal) => {
                return Err(ImportError::Refused(bundle::Error {
                    file: file.to_path_buf(),
                    refusal,
                }))
            }
        }
    }
    let report = ImportReport {
        sequence,
        signer: opened.signer.clone(),
        imported: new.iter().map(|c| c.source.clone()).collect(),
        unchanged,
        not_configured: not_configured
            .iter()
            .map(|c| c.source.to_string())
            .collect(),
    };
    if !new.is_empty() {
        let stored = opened.into_store(state_dir, &new)?;
        record(&mut store, file, &opened, &report, &stored).map_err(state_error)?;
    }
    Ok(report)
}

/// Writes the import and the artifacts it gave in one transaction, then
/// an event per source.
fn record(
    store: &mut Store,
    file: &Path,
    opened: &bundle::Opened,
    report: &ImportReport,
    stored: &[crate::source::Artifact],
) -> Result<(), state::Error> {
    let at = state::now_millis();
    let bundle_name = file.display().to_string();
    let sequence = report.sequence;
    let artifacts: Vec<BundleArtifact> = report
        .imported
        .iter()
        .zip(stored)
        .map(|(source, artifact)| BundleArtifact {
            kind: source.kind.as_str().to_string(),
            name: source.name.clone(),
            sequence: sequence as i64,
            revision: artifact.revision.clone(),
            digest: artifact.digest.clone(),
            path: artifact.path.clone(),
            imported_at: at,
            bundle: bundle_name.clone(),
        })
        .collect();
    let import = BundleImport {
        at,
        file: bundle_name.clone(),
        manifest_digest: opened.manifest_digest.clone(),
        sequence: sequence as i64,
        signer: opened.signer.clone(),
        sources: report
            .imported
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
    };
    store.record_bundle_import(&import, &artifacts)?;
    for artifact in &artifacts {
        let message = format!(
            "imported artifact for revision {} from bundle {bundle_name} (sequence {sequence})",
            artifact.revision
        );
        store.record_event(&Event::new(
            &artifact.kind,
            &artifact.name,
            Severity::Info,
            "BundleImported",
            &message,
        ))?;
    }
    Ok(())
}

/// Whether `carried` is new for its source (`Ok(true)`), imported before
/// (`Ok(false)`), or refused.
fn rollback_check(
    carried: &Carried,
    sequence: u64,
    last: Option<&BundleArtifact>,
    allow_downgrade: bool,
) -> Result<bool, Refusal> {
    let Some(last) = last else {
        return Ok(true);
    };
    let imported = u64::try_from(last.sequence).unwrap_or(0);
    let source_name = carried.source.to_string();
    if sequence == imported && carried.digest == last.digest {
        return Ok(false);
    }
    if allow_downgrade {
        return Ok(true);
    }
    if sequence < imported {
        return Err(Refusal::Downgrade {
            source_name,
            sequence,
            imported,
        });
    }
    if sequence == imported {
        return Err(Refusal::Replay {
            source_name,
            sequence,
            imported_digest: last.digest.clone(),
        });
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SourceKind;

    fn last(sequence: i64, digest: &str) -> BundleArtifact {
        BundleArtifact {
            kind: "git".into(),
            name: "fleet".into(),
            sequence,
            revision: "r".into(),
            digest: digest.into(),
            path: "/a".into(),
            imported_at: 0,
            bundle: "b".into(),
        }
    }

    fn carried(digest: &str) -> Carried {
        Carried {
            source: SourceRef::new(SourceKind::Git, "fleet"),
            revision: "r".into(),
            digest: digest.into(),
        }
    }

    #[test]
    fn sequences_decide_new_unchanged_downgrade_and_replay() {
        let check = |sequence, digest, allow| {
            rollback_check(&carried(digest), sequence, Some(&last(5, "a")), allow)
        };
        assert!(matches!(
            rollback_check(&carried("a"), 1, None, false),
            Ok(true)
        ));
        assert!(matches!(check(6, "b", false), Ok(true)));
        assert!(matches!(check(5, "a", false), Ok(false)));
        assert!(matches!(
            check(4, "b", false),
            Err(Refusal::Downgrade { .. })
        ));
        assert!(matches!(check(5, "b", false), Err(Refusal::Replay { .. })));
        assert!(matches!(check(4, "b", true), Ok(true)));
    }
}
