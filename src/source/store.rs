//! Where artifacts live: `state_dir/artifacts/KIND/NAME/<sha256>.tar.gz`,
//! and whether one still holds what its name and record say.
//!
//! # Design
//! An artifact is trusted only after its bytes hash to its recorded
//! sha256 ([`verify`]): before it is unpacked and at every sync of its
//! source, which rebuilds one that fails.

pub use crate::config::hex;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::archive::ArtifactWriter;
use super::{io_error, Artifact, Limits, Result};
use crate::state;

/// How many artifacts of one source are kept, the current one included.
pub const KEPT_PER_SOURCE: usize = 3;

/// The artifact directory of a state directory.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    pub fn new(state_dir: &Path) -> ArtifactStore {
        ArtifactStore {
            root: state_dir.join("artifacts"),
        }
    }

    /// The directory of one source's artifacts.
    pub fn source_dir(&self, kind: &str, name: &str) -> PathBuf {
        self.root.join(kind).join(name)
    }

    /// A fresh path inside the source's directory to write an artifact to
    /// before it is named by its digest; no two calls share one.
    pub fn temp_path(&self, kind: &str, name: &str) -> Result<PathBuf> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = self.source_dir(kind, name);
        std::fs::create_dir_all(&dir).map_err(io_error("creating artifact directory", &dir))?;
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        Ok(dir.join(format!(".incoming-{}-{unique}.tar.gz", std::process::id())))
    }

    /// Names the file written at `temp` by its `digest` and returns the
    /// final path. A file already there is replaced (atomically): it may
    /// be a damaged copy that this one repairs.
    pub fn commit(&self, kind: &str, name: &str, temp: &Path, digest: &str) -> Result<PathBuf> {
        let path = self.source_dir(kind, name).join(format!("{digest}.tar.gz"));
        std::fs::rename(temp, &path).map_err(io_error("storing artifact", &path))?;
        Ok(path)
    }

    /// Writes an artifact of source `kind/name` with `fill` and names it by
    /// its digest; a failed or partial one never takes that name.
    pub fn build(
        &self,
        kind: &str,
        name: &str,
        limits: Limits,
        fill: impl FnOnce(&mut ArtifactWriter<'_>) -> Result<()>,
    ) -> Result<(String, PathBuf)> {
        let temp = self.temp_path(kind, name)?;
        let written = ArtifactWriter::create(&temp, limits, name).and_then(|mut writer| {
            fill(&mut writer)?;
            writer.finish()
        });
        match written {
            Ok(digest) => {
                let path = self.commit(kind, name, &temp, &digest)?;
                Ok((digest, path))
            }
            Err(err) => {
                let _ = std::fs::remove_file(&temp);
                Err(err)
            }
        }
    }

    /// Removes old artifacts of a source, keeping `current` and the newest
    /// others up to [`KEPT_PER_SOURCE`] in all.
    pub fn collect_garbage(&self, kind: &str, name: &str, current: &Path) -> Result<usize> {
        let dir = self.source_dir(kind, name);
        let listing = match std::fs::read_dir(&dir) {
            Ok(listing) => listing,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(io_error("listing artifacts", &dir)(err)),
        };
        let mut others = Vec::new();
        for entry in listing {
            let entry = entry.map_err(io_error("listing artifacts", &dir))?;
            let path = entry.path();
            let is_artifact = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".tar.gz") && !n.starts_with('.'));
            if !is_artifact || path == current {
                continue;
            }
            let modified = entry
                .metadata()
                .and_then(|m| m.modified())
                .map_err(io_error("inspecting artifact", &path))?;
            others.push((modified, path));
        }
        others.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        let mut removed = 0;
        for (_, path) in others.into_iter().skip(KEPT_PER_SOURCE.saturating_sub(1)) {
            std::fs::remove_file(&path).map_err(io_error("removing old artifact", &path))?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// What is wrong with a stored artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    Missing,
    Unreadable(String),
    /// Its bytes do not hash to the recorded digest.
    Changed {
        recorded: String,
        actual: String,
        size: u64,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Missing => write!(f, "is missing"),
            Damage::Unreadable(why) => write!(f, "cannot be read: {why}"),
            Damage::Changed {
                recorded,
                actual,
                size,
            } => write!(
                f,
                "is damaged: its {size} bytes have sha256 {actual}, not the recorded {recorded}"
            ),
        }
    }
}

/// Checks that the file of `artifact` hashes to its recorded digest.
pub fn verify(artifact: &Artifact) -> Result<(), Damage> {
    let file = match std::fs::File::open(&artifact.path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(Damage::Missing),
        Err(err) => return Err(Damage::Unreadable(err.to_string())),
    };
    let (actual, size) = sha256_of(file).map_err(|err| Damage::Unreadable(err.to_string()))?;
    if actual == artifact.digest {
        Ok(())
    } else {
        Err(Damage::Changed {
            recorded: artifact.digest.clone(),
            actual,
            size,
        })
    }
}

/// The sha256 (lowercase hex) of everything `reader` yields, and its length.
pub fn sha256_of(mut reader: impl Read) -> std::io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => {
                hasher.update(&buffer[..read]);
                size += read as u64;
            }
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok((hex(&hasher.finalize()), size))
}

/// The last good artifact of source `kind/name` recorded in `store`, whether
/// or not its file is still there (and intact: see [`verify`]). This is
/// what a reconciler unpacks.
pub fn latest_artifact(
    store: &state::Store,
    kind: &str,
    name: &str,
) -> Result<Option<Artifact>, state::Error> {
    let Some(status) = store.source_status(kind, name)? else {
        return Ok(None);
    };
    Ok(
        match (
            status.revision,
            status.artifact_digest,
            status.artifact_path,
        ) {
            (Some(revision), Some(digest), Some(path)) => Some(Artifact {
                revision,
                digest,
                path,
            }),
            _ => None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_collection_keeps_the_current_and_the_newest_others() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io_error("tempdir", Path::new("/tmp")))?;
        let store = ArtifactStore::new(dir.path());
        let source_dir = store.source_dir("git", "fleet");
        std::fs::create_dir_all(&source_dir).map_err(io_error("mkdir", &source_dir))?;
        let mut paths = Vec::new();
        for index in 0..5 {
            let path = source_dir.join(format!("{index:064}.tar.gz"));
            std::fs::write(&path, b"x").map_err(io_error("write", &path))?;
            let time =
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000 + index);
            let file = std::fs::File::options()
                .write(true)
                .open(&path)
                .map_err(io_error("open", &path))?;
            file.set_modified(time).map_err(io_error("touch", &path))?;
            paths.push(path);
        }
        let removed = store.collect_garbage("git", "fleet", &paths[0])?;
        assert_eq!(removed, 2);
        assert!(
            paths[0].exists(),
            "the current artifact stays even when oldest"
        );
        assert!(paths[4].exists() && paths[3].exists());
        assert!(!paths[2].exists() && !paths[1].exists());
        Ok(())
    }
}
