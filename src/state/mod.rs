//! SQLite schema and migrations; the only code that writes SQL.
//!
//! # Design
//! One database, `state_dir/kedge.db`, in WAL mode so `kedge status` can
//! read while the daemon writes. The schema is an ordered list of
//! migrations applied in code; `PRAGMA user_version` records how many have
//! run. A later module adds its tables by appending a migration, never by
//! editing one that has shipped.
//!
//! Nothing secret is ever written here: URLs are stored with their userinfo
//! redacted, credentials stay in their files.

mod agent;
mod alerts;
mod bundles;
mod events;
mod helm_releases;
mod kustomizations;
mod sources;
mod unsaved;

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

pub use agent::{AgentProblem, CONFIG_FROM_REFUSED, CONFIG_REFUSED};
pub use alerts::QueuedAlert;
pub use bundles::{BundleArtifact, BundleImport};
pub use events::{Event, Severity};
pub use helm_releases::HelmReleaseStatus;
pub use kustomizations::{KustomizationOutcome, KustomizationStatus, REMOVAL_PENDING};
pub use sources::{SourceOutcome, SourceStatus};

/// The schema, one migration per entry, applied in order.
const MIGRATIONS: &[&str] = &[
    // 1: sources and the event history.
    "CREATE TABLE sources (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        url TEXT NOT NULL,
        revision TEXT,
        artifact_digest TEXT,
        artifact_path TEXT,
        artifact_inputs TEXT,
        last_attempt_at INTEGER,
        last_success_at INTEGER,
        last_artifact_at INTEGER,
        ready INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT 'Progressing',
        message TEXT NOT NULL DEFAULT '',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        severity TEXT NOT NULL,
        reason TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_by_object ON events (kind, name, id);",
    // 2: kustomizations and their inventories.
    "CREATE TABLE kustomizations (
        name TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        ready INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT 'Progressing',
        message TEXT NOT NULL DEFAULT '',
        last_applied_revision TEXT,
        last_attempted_revision TEXT,
        last_attempt_at INTEGER,
        last_success_at INTEGER,
        last_duration_ms INTEGER,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        deletion_policy TEXT NOT NULL DEFAULT 'delete'
    );
    CREATE TABLE inventory (
        kustomization TEXT NOT NULL,
        object_id TEXT NOT NULL,
        revision TEXT NOT NULL,
        PRIMARY KEY (kustomization, object_id)
    );",
    // 3: the daemon's own problems (a refused config) and suspensions
    // made from the CLI, which outlive restarts.
    "CREATE TABLE agent_problems (
        key TEXT PRIMARY KEY,
        at INTEGER NOT NULL,
        message TEXT NOT NULL
    );
    CREATE TABLE suspensions (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (kind, name)
    );",
    // 4: Helm releases: status, where kedge installed each, and the
    // snapshot of its last Helm action.
    "CREATE TABLE helm_releases (
        name TEXT PRIMARY KEY,
        chart TEXT NOT NULL,
        ready INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT 'Progressing',
        message TEXT NOT NULL DEFAULT '',
        last_applied_revision TEXT,
        last_attempted_revision TEXT,
        release_revision INTEGER NOT NULL DEFAULT 0,
        last_attempt_at INTEGER,
        last_success_at INTEGER,
        last_duration_ms INTEGER,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        deletion_policy TEXT NOT NULL DEFAULT 'delete',
        release_name TEXT NOT NULL DEFAULT '',
        target_namespace TEXT NOT NULL DEFAULT '',
        storage_namespace TEXT NOT NULL DEFAULT '',
        chart_name TEXT NOT NULL DEFAULT '',
        snapshot TEXT NOT NULL DEFAULT ''
    );",
    // 5: the digest of the objects a kustomization last applied, so that
    // drift mode `detect` applies only what the declared state changes.
    "ALTER TABLE kustomizations ADD COLUMN applied_digest TEXT;",
    // 6: alerts waiting to be delivered (or retried), so they survive a
    // restart and a network outage.
    "CREATE TABLE alert_queue (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        alert TEXT NOT NULL,
        event TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL
    );
    CREATE INDEX alert_queue_by_due ON alert_queue (next_attempt_at, id);",
    // 7: the last good config read from `[agent] config_from`, used after
    // a restart while its source is unreachable.
    "CREATE TABLE config_layer (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        layer TEXT NOT NULL,
        at INTEGER NOT NULL
    );",
    // 8: signed bundles: the artifact (and sequence) each source's last
    // imported bundle gave it, and the history of imports.
    "CREATE TABLE bundle_artifacts (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        revision TEXT NOT NULL,
        digest TEXT NOT NULL,
        path TEXT NOT NULL,
        imported_at INTEGER NOT NULL,
        bundle TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE TABLE bundle_imports (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        file TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        sequence INTEGER NOT NULL,
        signer TEXT NOT NULL,
        sources TEXT NOT NULL
    );",
];

/// How many events the history keeps; older ones are dropped on insert.
pub const EVENT_HISTORY_LIMIT: i64 = 1000;

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database file could not be opened or created.
    #[error("opening state database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("creating state directory {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A schema migration failed.
    #[error("migrating state database to version {version}: {source}")]
    Migrate {
        version: usize,
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer kedge.
    #[error("state database has schema version {found}, newer than this kedge ({known})")]
    TooNew { found: i64, known: usize },
    /// The database file was deleted or replaced while open: writes would
    /// go to a file nobody reads.
    #[error("state database {path} was {what} while kedge had it open")]
    Replaced { path: PathBuf, what: &'static str },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn query_error(what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Query { what, source }
}

/// The state database.
pub struct Store {
    conn: Connection,
    /// Outcomes whose write failed, newer than their rows.
    unsaved: std::cell::RefCell<unsaved::Unsaved>,
    /// The file opened, to notice it being deleted or replaced.
    file: Option<FileIdentity>,
}

/// Which file a path named when it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileIdentity {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl FileIdentity {
    fn of(path: &Path) -> std::io::Result<FileIdentity> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path)?;
        Ok(FileIdentity {
            path: path.to_path_buf(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_error = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        let mut store = Store::migrated(conn)?;
        store.file = FileIdentity::of(path).ok();
        Ok(store)
    }

    /// Whether the database file is still the one opened: `Err` when it was
    /// deleted or replaced (restored from a backup, say) meanwhile.
    pub fn check_file(&self) -> Result<()> {
        let Some(opened) = &self.file else {
            return Ok(());
        };
        let replaced = |what| Error::Replaced {
            path: opened.path.clone(),
            what,
        };
        match FileIdentity::of(&opened.path) {
            Ok(now) if now == *opened => Ok(()),
            Ok(_) => Err(replaced("replaced")),
            Err(_) => Err(replaced("deleted")),
        }
    }

    /// Whether the database holds nothing of any kustomization or source:
    /// a new file, or one that lost its contents.
    pub fn is_empty(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM kustomizations)
                    AND NOT EXISTS (SELECT 1 FROM inventory)
                    AND NOT EXISTS (SELECT 1 FROM sources)",
                [],
                |row| row.get(0),
            )
            .map_err(query_error("checking for an empty database"))
    }

    /// Opens an existing database without writing to it, for `kedge status`
    /// while the daemon runs (or not).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let open_error = |source| Error::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_error)?;
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::TooNew {
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        Ok(Store {
            conn,
            unsaved: Default::default(),
            file: None,
        })
    }

    /// A private database in memory, for tests.
    pub fn open_in_memory() -> Result<Store> {
        let conn = Connection::open_in_memory().map_err(|source| Error::Open {
            path: PathBuf::from(":memory:"),
            source,
        })?;
        Store::migrated(conn)
    }

    fn migrated(mut conn: Connection) -> Result<Store> {
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(query_error("reading schema version"))?;
        if version > MIGRATIONS.len() as i64 {
            return Err(Error::TooNew {
                found: version,
                known: MIGRATIONS.len(),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            let version = index + 1;
            let migrate = |source| Error::Migrate { version, source };
            let tx = conn.transaction().map_err(migrate)?;
            tx.execute_batch(sql).map_err(migrate)?;
            tx.pragma_update(None, "user_version", version as i64)
                .map_err(migrate)?;
            tx.commit().map_err(migrate)?;
        }
        Ok(Store {
            conn,
            unsaved: Default::default(),
            file: None,
        })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(query_error("reading schema version"))
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp stored.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_database_is_migrated_to_the_latest_version() -> Result<()> {
        let store = Store::open_in_memory()?;
        assert_eq!(store.schema_version()?, MIGRATIONS.len() as i64);
        Ok(())
    }

    #[test]
    fn reopening_a_database_keeps_its_rows_and_runs_no_migration_twice() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|source| Error::CreateDir {
            path: PathBuf::from("tempdir"),
            source,
        })?;
        let path = dir.path().join("kedge.db");
        {
            let store = Store::open(&path)?;
            store.record_event(&Event::new(
                "git",
                "fleet",
                Severity::Info,
                "Succeeded",
                "hello",
            ))?;
        }
        let store = Store::open(&path)?;
        assert_eq!(store.schema_version()?, MIGRATIONS.len() as i64);
        assert_eq!(store.events("git", "fleet", 10)?.len(), 1);
        Ok(())
    }
}
