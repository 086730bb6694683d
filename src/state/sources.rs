//! Per-source status rows: the last artifact and the last outcome, like a
//! Flux GitRepository's status.

use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension, Row};

use super::{query_error, unsaved, Result, Store};

/// The outcome of one fetch of a source, to be recorded.
#[derive(Debug, Clone, Copy)]
pub enum SourceOutcome<'a> {
    /// The fetch succeeded and this is the source's artifact, new
    /// (`new_artifact`) or the same as before.
    Ready {
        revision: &'a str,
        digest: &'a str,
        path: &'a Path,
        /// A fingerprint of what the artifact was built from besides the
        /// commit (ignore rules), so a change to them rebuilds it.
        inputs: &'a str,
        new_artifact: bool,
    },
    /// The fetch failed; the previous artifact, if any, stays the current one.
    Failed { reason: &'a str, message: &'a str },
}

/// What `kedge status` shows of a source, and what the reconciler needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceStatus {
    pub kind: String,
    pub name: String,
    /// With userinfo redacted.
    pub url: String,
    pub revision: Option<String>,
    pub artifact_digest: Option<String>,
    pub artifact_path: Option<PathBuf>,
    pub artifact_inputs: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_artifact_at: Option<i64>,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    pub consecutive_failures: i64,
}

const COLUMNS: &str = "kind, name, url, revision, artifact_digest, artifact_path, artifact_inputs, \
     last_attempt_at, last_success_at, last_artifact_at, ready, reason, message, consecutive_failures";

fn status_from_row(row: &Row<'_>) -> rusqlite::Result<SourceStatus> {
    Ok(SourceStatus {
        kind: row.get(0)?,
        name: row.get(1)?,
        url: row.get(2)?,
        revision: row.get(3)?,
        artifact_digest: row.get(4)?,
        artifact_path: row.get::<_, Option<String>>(5)?.map(PathBuf::from),
        artifact_inputs: row.get(6)?,
        last_attempt_at: row.get(7)?,
        last_success_at: row.get(8)?,
        last_artifact_at: row.get(9)?,
        ready: row.get(10)?,
        reason: row.get(11)?,
        message: row.get(12)?,
        consecutive_failures: row.get(13)?,
    })
}

impl Store {
    /// Records the outcome of one fetch of source `kind/name` at `at`
    /// (milliseconds since the epoch). `url` must already be redacted.
    ///
    /// # Errors
    /// When the write fails the outcome is held in memory (read back by
    /// [`Store::source_status`]) and written again later; the error is
    /// returned for the caller to report.
    pub fn record_source_outcome(
        &self,
        kind: &str,
        name: &str,
        url: &str,
        at: i64,
        outcome: SourceOutcome<'_>,
    ) -> Result<()> {
        let before = self.source_status(kind, name)?;
        self.save_source(unsaved::source_after(
            before,
            (kind, name, url),
            at,
            &outcome,
        ))
    }

    /// The status of one source, `None` if it has never been fetched.
    pub fn source_status(&self, kind: &str, name: &str) -> Result<Option<SourceStatus>> {
        if let Some(held) = self.held_source(kind, name) {
            return Ok(Some(held));
        }
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM sources WHERE kind = ?1 AND name = ?2"),
                params![kind, name],
                status_from_row,
            )
            .optional()
            .map_err(query_error("reading source status"))
    }

    /// Every source ever recorded, by kind then name.
    pub fn source_statuses(&self) -> Result<Vec<SourceStatus>> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM sources ORDER BY kind, name"
            ))
            .map_err(query_error("listing sources"))?;
        let rows = statement
            .query_map([], status_from_row)
            .map_err(query_error("listing sources"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map(|rows| self.with_held_sources(rows))
            .map_err(query_error("listing sources"))
    }

    /// Forgets a source removed from the config (its events stay).
    pub fn remove_source(&self, kind: &str, name: &str) -> Result<()> {
        self.forget_held_source(kind, name);
        self.conn
            .execute(
                "DELETE FROM sources WHERE kind = ?1 AND name = ?2",
                params![kind, name],
            )
            .map_err(query_error("removing source"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_the_last_artifact_and_counts_consecutive_failures() -> Result<()> {
        let store = Store::open_in_memory()?;
        let path = Path::new("/var/lib/kedge/artifacts/git/fleet/abc.tar.gz");
        let ready = SourceOutcome::Ready {
            revision: "main@sha1:1111111111111111111111111111111111111111",
            digest: "abc",
            path,
            inputs: "i",
            new_artifact: true,
        };
        store.record_source_outcome("git", "fleet", "ssh://git@h/r.git", 10, ready)?;
        let failed = SourceOutcome::Failed {
            reason: "GitOperationFailed",
            message: "connection refused",
        };
        store.record_source_outcome("git", "fleet", "ssh://git@h/r.git", 20, failed)?;
        store.record_source_outcome("git", "fleet", "ssh://git@h/r.git", 30, failed)?;

        let status = store.source_status("git", "fleet")?;
        let status = status.ok_or(super::super::Error::Query {
            what: "status missing",
            source: rusqlite::Error::QueryReturnedNoRows,
        })?;
        assert!(!status.ready);
        assert_eq!(status.reason, "GitOperationFailed");
        assert_eq!(status.consecutive_failures, 2);
        assert_eq!(status.artifact_digest.as_deref(), Some("abc"));
        assert_eq!(status.artifact_path.as_deref(), Some(path));
        assert_eq!(status.last_success_at, Some(10));
        assert_eq!(status.last_attempt_at, Some(30));
        Ok(())
    }

    #[test]
    fn a_success_after_failures_resets_the_count_and_keeps_the_artifact_time_when_unchanged(
    ) -> Result<()> {
        let store = Store::open_in_memory()?;
        let path = Path::new("/a.tar.gz");
        let ready = |new_artifact| SourceOutcome::Ready {
            revision: "r",
            digest: "d",
            path,
            inputs: "i",
            new_artifact,
        };
        store.record_source_outcome("git", "s", "u", 1, ready(true))?;
        let failed = SourceOutcome::Failed {
            reason: "GitOperationFailed",
            message: "m",
        };
        store.record_source_outcome("git", "s", "u", 2, failed)?;
        store.record_source_outcome("git", "s", "u", 3, ready(false))?;
        let all = store.source_statuses()?;
        assert_eq!(all.len(), 1);
        assert!(all[0].ready);
        assert_eq!(all[0].consecutive_failures, 0);
        assert_eq!(all[0].last_artifact_at, Some(1));
        assert_eq!(all[0].last_success_at, Some(3));
        Ok(())
    }
}
