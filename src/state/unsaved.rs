//! Recording outcomes: what an outcome does to a status (one rule, in
//! Rust), written as a whole row; and outcomes that could not be written
//! (a full disk, a read-only file system), held in memory, read back as if
//! written, and written again at the next write or [`Store::retry_unsaved`].
//!
//! # Why
//! An outcome that cannot be recorded must not leave `kedge status`, the
//! `STATUS=` line and `depends_on` showing the previous, better one.

use std::collections::BTreeMap;

use rusqlite::params;

use super::kustomizations::{KustomizationOutcome, KustomizationStatus};
use super::sources::{SourceOutcome, SourceStatus};
use super::{query_error, Result, Store};

/// What is held in memory until it can be written.
#[derive(Debug, Default)]
pub(super) struct Unsaved {
    kustomizations: BTreeMap<String, KustomizationStatus>,
    sources: BTreeMap<(String, String), SourceStatus>,
    /// Why the last write failed.
    error: Option<String>,
}

impl Unsaved {
    fn is_empty(&self) -> bool {
        self.kustomizations.is_empty() && self.sources.is_empty()
    }
}

/// `status` after `outcome` at `at`.
pub(super) fn kustomization_after(
    status: Option<KustomizationStatus>,
    name: &str,
    source: &str,
    at: i64,
    outcome: &KustomizationOutcome<'_>,
) -> KustomizationStatus {
    let previous = status.unwrap_or_else(|| KustomizationStatus {
        name: name.to_string(),
        source: source.to_string(),
        ready: false,
        reason: String::new(),
        message: String::new(),
        last_applied_revision: None,
        last_attempted_revision: None,
        last_attempt_at: None,
        last_success_at: None,
        last_duration_ms: None,
        consecutive_failures: 0,
        deletion_policy: outcome.deletion_policy.to_string(),
    });
    KustomizationStatus {
        name: name.to_string(),
        source: source.to_string(),
        ready: outcome.ready,
        reason: outcome.reason.to_string(),
        message: outcome.message.to_string(),
        last_applied_revision: outcome
            .applied_revision
            .map(str::to_string)
            .or(previous.last_applied_revision),
        last_attempted_revision: outcome
            .attempted_revision
            .map(str::to_string)
            .or(previous.last_attempted_revision),
        last_attempt_at: Some(at),
        last_success_at: if outcome.ready {
            Some(at)
        } else {
            previous.last_success_at
        },
        last_duration_ms: Some(outcome.duration_ms),
        consecutive_failures: if outcome.ready {
            0
        } else {
            previous.consecutive_failures + 1
        },
        deletion_policy: outcome.deletion_policy.to_string(),
    }
}

/// `status` after `outcome` at `at`.
pub(super) fn source_after(
    status: Option<SourceStatus>,
    (kind, name, url): (&str, &str, &str),
    at: i64,
    outcome: &SourceOutcome<'_>,
) -> SourceStatus {
    let mut status = status.unwrap_or_else(|| SourceStatus {
        kind: kind.to_string(),
        name: name.to_string(),
        url: url.to_string(),
        revision: None,
        artifact_digest: None,
        artifact_path: None,
        artifact_inputs: None,
        last_attempt_at: None,
        last_success_at: None,
        last_artifact_at: None,
        ready: false,
        reason: String::new(),
        message: String::new(),
        consecutive_failures: 0,
    });
    status.url = url.to_string();
    status.last_attempt_at = Some(at);
    match outcome {
        SourceOutcome::Ready {
            revision,
            digest,
            path,
            inputs,
            new_artifact,
        } => {
            status.revision = Some(revision.to_string());
            status.artifact_digest = Some(digest.to_string());
            status.artifact_path = Some(path.to_path_buf());
            status.artifact_inputs = Some(inputs.to_string());
            status.last_success_at = Some(at);
            if *new_artifact {
                status.last_artifact_at = Some(at);
            }
            status.ready = true;
            status.reason = "Succeeded".to_string();
            status.message = format!("stored artifact for revision {revision}");
            status.consecutive_failures = 0;
        }
        SourceOutcome::Failed { reason, message } => {
            status.ready = false;
            status.reason = reason.to_string();
            status.message = message.to_string();
            status.consecutive_failures += 1;
        }
    }
    status
}

impl Store {
    /// Writes `status`, after any held before it; held in memory when the
    /// write fails.
    pub(super) fn save_kustomization(&self, status: KustomizationStatus) -> Result<()> {
        self.unsaved
            .borrow_mut()
            .kustomizations
            .insert(status.name.clone(), status);
        self.retry_unsaved().map(drop)
    }

    /// Writes `status`, after any held before it; held in memory when the
    /// write fails.
    pub(super) fn save_source(&self, status: SourceStatus) -> Result<()> {
        self.unsaved
            .borrow_mut()
            .sources
            .insert((status.kind.clone(), status.name.clone()), status);
        self.retry_unsaved().map(drop)
    }

    /// Drops what is held of kustomization `name` (it is being forgotten).
    pub(super) fn forget_held_kustomization(&self, name: &str) {
        self.unsaved.borrow_mut().kustomizations.remove(name);
    }

    /// Drops what is held of source `kind/name` (it is being forgotten).
    pub(super) fn forget_held_source(&self, kind: &str, name: &str) {
        self.unsaved
            .borrow_mut()
            .sources
            .remove(&(kind.to_string(), name.to_string()));
    }

    /// The held status of kustomization `name`, newer than its row.
    pub(super) fn held_kustomization(&self, name: &str) -> Option<KustomizationStatus> {
        self.unsaved.borrow().kustomizations.get(name).cloned()
    }

    /// The held status of source `kind/name`, newer than its row.
    pub(super) fn held_source(&self, kind: &str, name: &str) -> Option<SourceStatus> {
        self.unsaved
            .borrow()
            .sources
            .get(&(kind.to_string(), name.to_string()))
            .cloned()
    }

    /// `rows` with the held statuses laid over them.
    pub(super) fn with_held_kustomizations(
        &self,
        mut rows: Vec<KustomizationStatus>,
    ) -> Vec<KustomizationStatus> {
        for held in self.unsaved.borrow().kustomizations.values() {
            match rows.iter_mut().find(|r| r.name == held.name) {
                Some(row) => *row = held.clone(),
                None => rows.push(held.clone()),
            }
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    /// `rows` with the held statuses laid over them.
    pub(super) fn with_held_sources(&self, mut rows: Vec<SourceStatus>) -> Vec<SourceStatus> {
        for held in self.unsaved.borrow().sources.values() {
            match rows
                .iter_mut()
                .find(|r| r.kind == held.kind && r.name == held.name)
            {
                Some(row) => *row = held.clone(),
                None => rows.push(held.clone()),
            }
        }
        rows.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        rows
    }

    /// Why outcomes are held in memory, while any are.
    pub fn unsaved_problem(&self) -> Option<String> {
        let unsaved = self.unsaved.borrow();
        if unsaved.is_empty() {
            return None;
        }
        Some(format!(
            "{} outcomes not saved to the state database ({}); held in memory and written again every few seconds",
            unsaved.kustomizations.len() + unsaved.sources.len(),
            unsaved.error.as_deref().unwrap_or("unknown error")
        ))
    }

    /// Writes the held outcomes; `Ok(true)` when some were held and all
    /// are written now. Each written is dropped from memory.
    pub fn retry_unsaved(&self) -> Result<bool> {
        if self.unsaved.borrow().is_empty() {
            return Ok(false);
        }
        let result = self.write_held();
        if let Err(err) = &result {
            self.unsaved.borrow_mut().error = Some(err.to_string());
        }
        result.map(|()| true)
    }

    fn write_held(&self) -> Result<()> {
        let kustomizations: Vec<KustomizationStatus> = self
            .unsaved
            .borrow()
            .kustomizations
            .values()
            .cloned()
            .collect();
        for status in kustomizations {
            self.write_kustomization_status(&status)?;
            self.unsaved
                .borrow_mut()
                .kustomizations
                .remove(&status.name);
        }
        let sources: Vec<SourceStatus> = self.unsaved.borrow().sources.values().cloned().collect();
        for status in sources {
            self.write_source_status(&status)?;
            self.unsaved
                .borrow_mut()
                .sources
                .remove(&(status.kind.clone(), status.name.clone()));
        }
        self.unsaved.borrow_mut().error = None;
        Ok(())
    }

    fn write_kustomization_status(&self, s: &KustomizationStatus) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO kustomizations (name, source, ready, reason, message,
                    last_applied_revision, last_attempted_revision, last_attempt_at,
                    last_success_at, last_duration_ms, consecutive_failures, deletion_policy)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (name) DO UPDATE SET source = ?2, ready = ?3, reason = ?4,
                    message = ?5, last_applied_revision = ?6, last_attempted_revision = ?7,
                    last_attempt_at = ?8, last_success_at = ?9, last_duration_ms = ?10,
                    consecutive_failures = ?11, deletion_policy = ?12",
                params![
                    s.name,
                    s.source,
                    s.ready,
                    s.reason,
                    s.message,
                    s.last_applied_revision,
                    s.last_attempted_revision,
                    s.last_attempt_at,
                    s.last_success_at,
                    s.last_duration_ms,
                    s.consecutive_failures,
                    s.deletion_policy
                ],
            )
            .map_err(query_error("recording kustomization outcome"))?;
        Ok(())
    }

    fn write_source_status(&self, s: &SourceStatus) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO sources (kind, name, url, revision, artifact_digest, artifact_path,
                    artifact_inputs, last_attempt_at, last_success_at, last_artifact_at, ready,
                    reason, message, consecutive_failures)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (kind, name) DO UPDATE SET url = ?3, revision = ?4,
                    artifact_digest = ?5, artifact_path = ?6, artifact_inputs = ?7,
                    last_attempt_at = ?8, last_success_at = ?9, last_artifact_at = ?10,
                    ready = ?11, reason = ?12, message = ?13, consecutive_failures = ?14",
                params![
                    s.kind,
                    s.name,
                    s.url,
                    s.revision,
                    s.artifact_digest,
                    s.artifact_path
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned()),
                    s.artifact_inputs,
                    s.last_attempt_at,
                    s.last_success_at,
                    s.last_artifact_at,
                    s.ready,
                    s.reason,
                    s.message,
                    s.consecutive_failures
                ],
            )
            .map_err(query_error("recording source outcome"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed<'a>(message: &'a str) -> KustomizationOutcome<'a> {
        KustomizationOutcome {
            ready: false,
            reason: "ReconciliationFailed",
            message,
            attempted_revision: Some("main@sha1:2"),
            applied_revision: None,
            duration_ms: 5,
            deletion_policy: "delete",
        }
    }

    fn refuse_writes(store: &Store, refuse: bool) {
        store
            .conn
            .pragma_update(None, "query_only", refuse)
            .expect("set query_only");
    }

    #[test]
    fn an_outcome_that_cannot_be_written_is_read_back_and_written_later() -> Result<()> {
        let store = Store::open_in_memory()?;
        let ready = KustomizationOutcome {
            ready: true,
            reason: "ReconciliationSucceeded",
            message: "applied",
            attempted_revision: Some("main@sha1:1"),
            applied_revision: Some("main@sha1:1"),
            duration_ms: 5,
            deletion_policy: "delete",
        };
        store.record_kustomization_outcome("apps", "git/fleet", 1, ready)?;
        refuse_writes(&store, true);
        assert!(store
            .record_kustomization_outcome("apps", "git/fleet", 2, failed("first"))
            .is_err());
        assert!(store
            .record_kustomization_outcome("apps", "git/fleet", 3, failed("second"))
            .is_err());
        let shown = store.kustomization_status("apps")?.expect("a status");
        assert!(!shown.ready);
        assert_eq!(shown.message, "second");
        assert_eq!(shown.consecutive_failures, 2);
        assert_eq!(shown.last_applied_revision.as_deref(), Some("main@sha1:1"));
        assert!(store
            .unsaved_problem()
            .is_some_and(|p| p.contains("not saved")));
        assert!(store.retry_unsaved().is_err());

        refuse_writes(&store, false);
        assert!(store.retry_unsaved()?);
        assert_eq!(store.unsaved_problem(), None);
        let written = store.kustomization_statuses()?;
        assert_eq!(written, vec![shown]);
        Ok(())
    }

    #[test]
    fn a_failed_fetch_that_cannot_be_written_does_not_show_ready() -> Result<()> {
        let store = Store::open_in_memory()?;
        let path = std::path::Path::new("/a.tar.gz");
        let ready = SourceOutcome::Ready {
            revision: "main@sha1:1",
            digest: "d",
            path,
            inputs: "i",
            new_artifact: true,
        };
        store.record_source_outcome("git", "fleet", "/srv", 1, ready)?;
        refuse_writes(&store, true);
        let failure = SourceOutcome::Failed {
            reason: "GitOperationFailed",
            message: "No space left on device",
        };
        assert!(store
            .record_source_outcome("git", "fleet", "/srv", 2, failure)
            .is_err());
        let shown = store.source_status("git", "fleet")?.expect("a status");
        assert!(!shown.ready);
        assert_eq!(shown.revision.as_deref(), Some("main@sha1:1"));
        assert_eq!(store.source_statuses()?, vec![shown]);
        Ok(())
    }
}
