//! Per-release status rows: what a Flux HelmRelease keeps in its status,
//! and kedge's snapshot of its last Helm action, in SQLite.
//!
//! The row also remembers which release kedge installed (its name,
//! namespaces and chart), so a release renamed or removed from the config
//! is uninstalled from where it really is. The snapshot is opaque here:
//! the release reconciler writes and reads it as JSON.

use rusqlite::{params, OptionalExtension, Row};

use super::{query_error, Result, Store};

/// One release's row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HelmReleaseStatus {
    pub name: String,
    /// The chart source, `chart/NAME`.
    pub chart: String,
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// The chart version of the last successful action.
    pub last_applied_revision: Option<String>,
    pub last_attempted_revision: Option<String>,
    /// Helm's release revision number after the last action (0: none).
    pub release_revision: u32,
    pub last_attempt_at: Option<i64>,
    pub last_success_at: Option<i64>,
    pub last_duration_ms: Option<i64>,
    pub consecutive_failures: i64,
    /// `delete` or `orphan`, as last configured.
    pub deletion_policy: String,
    /// Where kedge installed it: empty until the first action.
    pub release_name: String,
    pub target_namespace: String,
    pub storage_namespace: String,
    pub chart_name: String,
    /// The reconciler's snapshot of its last action, as JSON.
    pub snapshot: String,
}

const COLUMNS: &str = "name, chart, ready, reason, message, last_applied_revision, \
     last_attempted_revision, release_revision, last_attempt_at, last_success_at, \
     last_duration_ms, consecutive_failures, deletion_policy, release_name, \
     target_namespace, storage_namespace, chart_name, snapshot";

fn status_from_row(row: &Row<'_>) -> rusqlite::Result<HelmReleaseStatus> {
    Ok(HelmReleaseStatus {
        name: row.get(0)?,
        chart: row.get(1)?,
        ready: row.get(2)?,
        reason: row.get(3)?,
        message: row.get(4)?,
        last_applied_revision: row.get(5)?,
        last_attempted_revision: row.get(6)?,
        release_revision: row.get(7)?,
        last_attempt_at: row.get(8)?,
        last_success_at: row.get(9)?,
        last_duration_ms: row.get(10)?,
        consecutive_failures: row.get(11)?,
        deletion_policy: row.get(12)?,
        release_name: row.get(13)?,
        target_namespace: row.get(14)?,
        storage_namespace: row.get(15)?,
        chart_name: row.get(16)?,
        snapshot: row.get(17)?,
    })
}

impl Store {
    /// Writes release `status.name`'s whole row.
    pub fn save_helm_release(&self, status: &HelmReleaseStatus) -> Result<()> {
        self.conn
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO helm_releases ({COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ),
                params![
                    status.name,
                    status.chart,
                    status.ready,
                    status.reason,
                    status.message,
                    status.last_applied_revision,
                    status.last_attempted_revision,
                    status.release_revision,
                    status.last_attempt_at,
                    status.last_success_at,
                    status.last_duration_ms,
                    status.consecutive_failures,
                    status.deletion_policy,
                    status.release_name,
                    status.target_namespace,
                    status.storage_namespace,
                    status.chart_name,
                    status.snapshot,
                ],
            )
            .map_err(query_error("recording Helm release status"))?;
        Ok(())
    }

    /// The row of release `name`, `None` if it never ran.
    pub fn helm_release_status(&self, name: &str) -> Result<Option<HelmReleaseStatus>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM helm_releases WHERE name = ?1"),
                params![name],
                status_from_row,
            )
            .optional()
            .map_err(query_error("reading Helm release status"))
    }

    /// Every release recorded, by name.
    pub fn helm_release_statuses(&self) -> Result<Vec<HelmReleaseStatus>> {
        let mut statement = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM helm_releases ORDER BY name"
            ))
            .map_err(query_error("listing Helm releases"))?;
        let rows = statement
            .query_map([], status_from_row)
            .map_err(query_error("listing Helm releases"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(query_error("listing Helm releases"))
    }

    /// Shows release `name`, removed from the config, as waiting for its
    /// removal ([`super::REMOVAL_PENDING`]) with `message`.
    pub fn mark_release_removal_pending(&self, name: &str, at: i64, message: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE helm_releases SET ready = 0, reason = ?2, message = ?3, last_attempt_at = ?4
                 WHERE name = ?1",
                params![name, super::REMOVAL_PENDING, message, at],
            )
            .map_err(query_error("marking a removal pending"))?;
        Ok(())
    }

    /// Forgets release `name` (its events stay).
    pub fn remove_helm_release(&self, name: &str) -> Result<()> {
        self.conn
            .execute("DELETE FROM helm_releases WHERE name = ?1", params![name])
            .map_err(query_error("removing Helm release"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_row_is_written_whole_and_read_back() -> Result<()> {
        let store = Store::open_in_memory()?;
        assert_eq!(store.helm_release_status("redis")?, None);
        let status = HelmReleaseStatus {
            name: "redis".into(),
            chart: "chart/redis".into(),
            ready: true,
            reason: "InstallSucceeded".into(),
            release_revision: 3,
            release_name: "cache-redis".into(),
            snapshot: "{}".into(),
            deletion_policy: "delete".into(),
            ..HelmReleaseStatus::default()
        };
        store.save_helm_release(&status)?;
        assert_eq!(store.helm_release_status("redis")?, Some(status.clone()));
        assert_eq!(store.helm_release_statuses()?, vec![status]);
        store.remove_helm_release("redis")?;
        assert_eq!(store.helm_release_statuses()?, vec![]);
        Ok(())
    }
}
