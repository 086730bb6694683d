//! Signed bundles imported on this node: the artifact each source's last
//! bundle gave it (what the rollback check and a bundle-only source's sync
//! read) and the history of imports (`kedge status`).

use std::path::PathBuf;

use rusqlite::{params, OptionalExtension, Row};

use super::{query_error, Result, Store};

/// The artifact the last imported bundle gave source `kind/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleArtifact {
    pub kind: String,
    pub name: String,
    pub sequence: i64,
    pub revision: String,
    pub digest: String,
    pub path: PathBuf,
    /// Milliseconds since the epoch.
    pub imported_at: i64,
    /// The file it came from.
    pub bundle: String,
}

/// One import of a bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleImport {
    /// Milliseconds since the epoch.
    pub at: i64,
    pub file: String,
    /// `sha256:<hex>` of the bundle's manifest.
    pub manifest_digest: String,
    pub sequence: i64,
    pub signer: String,
    /// `kind/name` of each source it gave an artifact, comma-separated.
    pub sources: String,
}

const ARTIFACT_COLUMNS: &str = "kind, name, sequence, revision, digest, path, imported_at, bundle";

fn artifact_from_row(row: &Row<'_>) -> rusqlite::Result<BundleArtifact> {
    Ok(BundleArtifact {
        kind: row.get(0)?,
        name: row.get(1)?,
        sequence: row.get(2)?,
        revision: row.get(3)?,
        digest: row.get(4)?,
        path: PathBuf::from(row.get::<_, String>(5)?),
        imported_at: row.get(6)?,
        bundle: row.get(7)?,
    })
}

impl Store {
    /// Records an import and the artifacts it gave, in one transaction.
    pub fn record_bundle_import(
        &mut self,
        import: &BundleImport,
        artifacts: &[BundleArtifact],
    ) -> Result<()> {
        let write = || query_error("recording bundle import");
        let tx = self.conn.transaction().map_err(write())?;
        tx.execute(
            "INSERT INTO bundle_imports (at, file, manifest_digest, sequence, signer, sources) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                import.at,
                import.file,
                import.manifest_digest,
                import.sequence,
                import.signer,
                import.sources
            ],
        )
        .map_err(write())?;
        for a in artifacts {
            tx.execute(
                &format!("INSERT OR REPLACE INTO bundle_artifacts ({ARTIFACT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    a.kind,
                    a.name,
                    a.sequence,
                    a.revision,
                    a.digest,
                    a.path.to_string_lossy(),
                    a.imported_at,
                    a.bundle
                ],
            )
            .map_err(write())?;
        }
        tx.commit().map_err(write())
    }

    /// What the last imported bundle gave source `kind/name`, if any.
    pub fn bundle_artifact(&self, kind: &str, name: &str) -> Result<Option<BundleArtifact>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM bundle_artifacts WHERE kind = ?1 AND name = ?2"
                ),
                params![kind, name],
                artifact_from_row,
            )
            .optional()
            .map_err(query_error("reading bundle artifact"))
    }

    /// The newest imports first, at most `limit`.
    pub fn bundle_imports(&self, limit: usize) -> Result<Vec<BundleImport>> {
        let read = || query_error("listing bundle imports");
        let mut statement = self
            .conn
            .prepare(
                "SELECT at, file, manifest_digest, sequence, signer, sources FROM bundle_imports ORDER BY id DESC LIMIT ?1",
            )
            .map_err(read())?;
        let rows = statement
            .query_map(params![limit as i64], |row| {
                Ok(BundleImport {
                    at: row.get(0)?,
                    file: row.get(1)?,
                    manifest_digest: row.get(2)?,
                    sequence: row.get(3)?,
                    signer: row.get(4)?,
                    sources: row.get(5)?,
                })
            })
            .map_err(read())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_replaces_the_artifact_of_its_sources_and_is_listed() -> Result<()> {
        let mut store = Store::open_in_memory()?;
        let artifact = |sequence: i64, digest: &str| BundleArtifact {
            kind: "git".into(),
            name: "fleet".into(),
            sequence,
            revision: "main@sha1:1".into(),
            digest: digest.into(),
            path: PathBuf::from(format!("/a/{digest}.tar.gz")),
            imported_at: sequence * 10,
            bundle: "/media/kedge/b.tar".into(),
        };
        let import = |sequence: i64| BundleImport {
            at: sequence * 10,
            file: "/media/kedge/b.tar".into(),
            manifest_digest: "sha256:m".into(),
            sequence,
            signer: "SSH key".into(),
            sources: "git/fleet".into(),
        };
        store.record_bundle_import(&import(1), &[artifact(1, "d1")])?;
        store.record_bundle_import(&import(2), &[artifact(2, "d2")])?;
        let current = store.bundle_artifact("git", "fleet")?;
        assert_eq!(current, Some(artifact(2, "d2")));
        assert_eq!(store.bundle_artifact("git", "other")?, None);
        let imports = store.bundle_imports(10)?;
        assert_eq!(
            imports.iter().map(|i| i.sequence).collect::<Vec<_>>(),
            [2, 1]
        );
        Ok(())
    }
}
