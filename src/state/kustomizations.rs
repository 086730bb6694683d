//! Per-kustomization status rows and inventories: what a Flux
//! Kustomization keeps in its status, in SQLite.
//!
//! The inventory is the set of objects a kustomization applied (as the
//! stable ids of `apply::ObjRef::to_id`), with the revision it was written
//! at. It is replaced in one transaction, so after a crash (even kill -9)
//! it is either the old set or the new one, never half of each.

use rusqlite::{params, OptionalExtension, Row};

use super::{query_error, unsaved, Result, Store};

/// The reason shown for a kustomization removed from the config whose
/// objects wait for the grace period before they are deleted.
pub const REMOVAL_PENDING: &str = "RemovalPending";

/// The outcome of one reconcile of a kustomization, to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct KustomizationOutcome<'a> {
    pub ready: bool,
    /// A Flux condition reason: `ReconciliationSucceeded`, `BuildFailed`, …
    pub reason: &'a str,
    pub message: &'a str,
    /// The source revision this attempt worked on, if it got that far.
    pub attempted_revision: Option<&'a str>,
    /// Set when this attempt applied its revision in full.
    pub applied_revision: Option<&'a str>,
    pub duration_ms: i64,
    /// `delete` or `orphan`.
    pub deletion_policy: &'a str,
}

/// What `kedge status` shows of a kustomization, and what `depends_on` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KustomizationStatus {
    pub name: String,
    pub source: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    pub last_applied_revision: Option<String>,
    pub last_attempted_revision: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub consecutive_failures: i64,
    /// `delete` or `orphan`, as last configured: what to do with its objects
    /// once it leaves the config.
    pub deletion_policy: String,
}

const COLUMNS: &str = "name, source, ready, reason, message, last_applied_revision, \
     last_attempted_revision, last_attempt_at, last_success_at, last_duration_ms, consecutive_failures, deletion_policy";

fn status_from_row(row: &Row<'_>) -> rusqlite::Result<KustomizationStatus> {
    Ok(KustomizationStatus {
        name: row.get(0)?,
        source: row.get(1)?,
        ready: row.get(2)?,
        reason: row.get(3)?,
        message: row.get(4)?,
        last_applied_revision: row.get(5)?,
        last_attempted_revision: row.get(6)?,
        last_attempt_at: row.get(7)?,
        last_success_at: row.get(8)?,
        last_duration_ms: row.get(9)?,
        consecutive_failures: row.get(10)?,
        deletion_policy: row.get(11)?,
    })
}

impl Store {
    /// Records the outcome of one reconcile of kustomization `name` at `at`
    /// (milliseconds since the epoch).
    ///
    /// # Errors
    /// When the write fails the outcome is held in memory (read back by
    /// [`Store::kustomization_status`]) and written again later; the error
    /// is returned for the caller to report.
    pub fn record_kustomization_outcome(
        &self,
        name: &str,
        source: &str,
        at: i64,
        outcome: KustomizationOutcome<'_>,
    ) -> Result<()> {
        let before = self.kustomization_status(name)?;
        self.save_kustomization(unsaved::kustomization_after(
            before, name, source, at, &outcome,
        ))
    }

    /// Records that kustomization `name` exists, with its source and
    /// deletion policy, before it first writes an inventory: whatever it
    /// applies is then found again when it leaves the config.
    pub fn register_kustomization(
        &self,
        name: &str,
        source: &str,
        deletion_policy: &str,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO kustomizations (name, source, deletion_policy) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET source = excluded.source,
                    deletion_policy = excluded.deletion_policy",
                params![name, source, deletion_policy],
            )
            .map_err(query_error("creating kustomization row"))?;
        Ok(())
    }

    /// The digest of the objects kustomization `name` last applied (see
    /// [`Store::set_applied_digest`]), if recorded.
    pub fn applied_digest(&self, name: &str) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT applied_digest FROM kustomizations WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )
            .optional()
            .map(Option::flatten)
            .map_err(query_error("reading the applied digest"))
    }

    /// Records the digest of the objects kustomization `name` (registered)
    /// has just applied.
    pub fn set_applied_digest(&self, name: &str, digest: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE kustomizations SET applied_digest = ?2 WHERE name = ?1",
                params![name, digest],
            )
            .map_err(query_error("writing the applied digest"))?;
        Ok(())
    }

    /// Shows kustomization `name`, removed from the config, as waiting for
    /// its removal ([`REMOVAL_PENDING`]) with `message`.
    pub fn mark_removal_pending(&self, name: &str, at: i64, message: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO kustomizations (name, source, ready, reason, message, last_attempt_at)
                 VALUES (?1, '', 0, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET ready = 0, reason = ?2, message = ?3,
                    last_attempt_at = ?4",
                params![name, REMOVAL_PENDING, message, at],
            )
            .map_err(query_error("marking a removal pending"))?;
        Ok(())
    }

    /// Every kustomization with a status row or an inventory: all whose
    /// objects kedge may still hold in the cluster.
    pub fn recorded_kustomizations(&self) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT name FROM kustomizations UNION SELECT kustomization FROM inventory ORDER BY 1",
            )
            .map_err(query_error("listing recorded kustomizations"))?;
        let rows = statement
            .query_map([], |row| row.get(0))
            .map_err(query_error("listing recorded kustomizations"))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(query_error("listing recorded kustomizations"))
    }

    /// The status of one kustomization, `None` if it never ran.
    pub fn kustomization_status(&self, name: &str) -> Result<Option<KustomizationStatus>> {
        if let Some(held) = self.held_kustomization(name) {
            return Ok(Some(held));
        }
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM kustomizations WHERE name = ?1"),
                params![name],
                status_from_row,
            )
            .optional()
            .map_err(query_error("reading kustomization status"))
    }

    /// Every kustomization recorded, by name.
    pub fn kustomization_statuses(&self) -> Result<Vec<KustomizationStatus>> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM kustomizations ORDER BY name"
            ))
            .map_err(query_error("listing kustomizations"))?;
        let rows = statement
            .query_map([], status_from_row)
            .map_err(query_error("listing kustomizations"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map(|rows| self.with_held_kustomizations(rows))
            .map_err(query_error("listing kustomizations"))
    }

    /// The object ids in kustomization `name`'s inventory, sorted.
    pub fn inventory(&self, name: &str) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare("SELECT object_id FROM inventory WHERE kustomization = ?1 ORDER BY object_id")
            .map_err(query_error("reading inventory"))?;
        let rows = statement
            .query_map(params![name], |row| row.get(0))
            .map_err(query_error("reading inventory"))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
            .map_err(query_error("reading inventory"))
    }

    /// Replaces kustomization `name`'s inventory with `object_ids`, written
    /// at `revision`, in one transaction.
    pub fn set_inventory(
        &mut self,
        name: &str,
        revision: &str,
        object_ids: &[String],
    ) -> Result<()> {
        // An inventory written into a deleted file is lost: refuse instead.
        self.check_file()?;
        let write = query_error("writing inventory");
        let tx = self.conn.transaction().map_err(write)?;
        tx.execute(
            "DELETE FROM inventory WHERE kustomization = ?1",
            params![name],
        )
        .map_err(query_error("writing inventory"))?;
        {
            let mut insert = tx
                .prepare("INSERT OR IGNORE INTO inventory (kustomization, object_id, revision) VALUES (?1, ?2, ?3)")
                .map_err(query_error("writing inventory"))?;
            for id in object_ids {
                insert
                    .execute(params![name, id, revision])
                    .map_err(query_error("writing inventory"))?;
            }
        }
        tx.commit().map_err(query_error("writing inventory"))
    }

    /// Forgets kustomization `name`: its status and its inventory (its
    /// events stay).
    pub fn remove_kustomization(&mut self, name: &str) -> Result<()> {
        self.forget_held_kustomization(name);
        let tx = self
            .conn
            .transaction()
            .map_err(query_error("removing kustomization"))?;
        tx.execute(
            "DELETE FROM inventory WHERE kustomization = ?1",
            params![name],
        )
        .map_err(query_error("removing kustomization"))?;
        tx.execute("DELETE FROM kustomizations WHERE name = ?1", params![name])
            .map_err(query_error("removing kustomization"))?;
        tx.commit().map_err(query_error("removing kustomization"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome<'a>(ready: bool, reason: &'a str, revision: &'a str) -> KustomizationOutcome<'a> {
        KustomizationOutcome {
            ready,
            reason,
            message: "m",
            attempted_revision: Some(revision),
            applied_revision: ready.then_some(revision),
            duration_ms: 12,
            deletion_policy: "delete",
        }
    }

    #[test]
    fn a_failure_keeps_the_last_applied_revision_and_counts_failures() -> Result<()> {
        let store = Store::open_in_memory()?;
        store.record_kustomization_outcome(
            "apps",
            "git/fleet",
            1,
            outcome(true, "ReconciliationSucceeded", "main@sha1:a"),
        )?;
        store.record_kustomization_outcome(
            "apps",
            "git/fleet",
            2,
            outcome(false, "BuildFailed", "main@sha1:b"),
        )?;
        store.record_kustomization_outcome(
            "apps",
            "git/fleet",
            3,
            outcome(false, "BuildFailed", "main@sha1:b"),
        )?;
        let Some(status) = store.kustomization_status("apps")? else {
            panic!("no status recorded")
        };
        assert!(!status.ready);
        assert_eq!(status.last_applied_revision.as_deref(), Some("main@sha1:a"));
        assert_eq!(
            status.last_attempted_revision.as_deref(),
            Some("main@sha1:b")
        );
        assert_eq!(status.last_success_at, Some(1));
        assert_eq!(status.consecutive_failures, 2);
        Ok(())
    }

    #[test]
    fn an_inventory_is_replaced_as_a_whole_and_removed_with_its_kustomization() -> Result<()> {
        let mut store = Store::open_in_memory()?;
        let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        store.set_inventory("apps", "r1", &ids(&["b", "a"]))?;
        store.set_inventory("other", "r1", &ids(&["z"]))?;
        assert_eq!(store.inventory("apps")?, ids(&["a", "b"]));
        store.set_inventory("apps", "r2", &ids(&["c"]))?;
        assert_eq!(store.inventory("apps")?, ids(&["c"]));
        store.remove_kustomization("apps")?;
        assert!(store.inventory("apps")?.is_empty());
        assert_eq!(store.inventory("other")?, ids(&["z"]));
        Ok(())
    }
}
