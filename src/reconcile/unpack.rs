//! Unpacked artifacts, shared by every kustomization that builds from them.
//!
//! # Background
//! A new revision of a source wakes all of its kustomizations at once;
//! unpacking the artifact once per kustomization made twenty kustomizations
//! of one repository write its tree twenty times before any apply.
//!
//! # Design
//! Each artifact is unpacked once into `<dir>/<sha256>/`, under a lock, into
//! a temporary directory renamed into place when complete, so a reader sees
//! a whole tree or none. Builds only read it.
//!
//! # Caveats
//! The [`KEEP`] most recently used trees stay; older ones are removed when a
//! new one is unpacked. A build still reading a tree that old fails and is
//! retried at its `retry_interval`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::source::{self, Artifact};

/// How many unpacked trees stay on disk.
pub const KEEP: usize = 4;

/// The unpacked trees under one directory.
#[derive(Debug)]
pub struct Unpacker {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Unpacker {
    pub fn new(dir: PathBuf) -> Unpacker {
        Unpacker {
            dir,
            lock: Mutex::new(()),
        }
    }

    /// The directory holding `artifact` unpacked, unpacking it first if no
    /// run has. Blocking: call it from the blocking pool.
    pub fn unpacked(&self, artifact: &Artifact) -> Result<PathBuf, source::Error> {
        let tree = self.dir.join(&artifact.digest);
        let _guard = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if tree.is_dir() {
            touch(&tree);
            return Ok(tree);
        }
        let partial = self.dir.join(format!("{}.partial", artifact.digest));
        let _ = std::fs::remove_dir_all(&partial);
        source::extract(&artifact.path, &partial)?;
        std::fs::rename(&partial, &tree).map_err(|e| source::Error::Io {
            action: "moving unpacked artifact into place",
            path: tree.clone(),
            source: e,
        })?;
        self.remove_old(&tree);
        Ok(tree)
    }

    /// Removes all but the [`KEEP`] most recently used trees (and leftovers
    /// of interrupted unpacks).
    fn remove_old(&self, current: &Path) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut trees: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p != current)
            .map(|p| {
                (
                    p.metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    p,
                )
            })
            .collect();
        trees.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
        for (_, path) in trees.into_iter().skip(KEEP - 1) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Marks a tree as used now, for [`Unpacker::remove_old`].
fn touch(tree: &Path) {
    if let Ok(dir) = std::fs::File::open(tree) {
        let _ = dir.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(dir: &Path, digest: &str, content: &str) -> Artifact {
        let path = dir.join(format!("{digest}.tar.gz"));
        let file = std::fs::File::create(&path).expect("create artifact");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, "apps/a.yaml", content.as_bytes())
            .expect("append");
        builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish artifact");
        Artifact {
            revision: format!("main@sha1:{digest}"),
            digest: digest.to_string(),
            path,
        }
    }

    #[test]
    fn an_artifact_is_unpacked_once_and_old_trees_are_removed() -> Result<(), source::Error> {
        let scratch = tempfile::tempdir().expect("tempdir");
        let unpacker = Unpacker::new(scratch.path().join("unpacked"));
        let first = artifact(scratch.path(), "d0", "one");
        let tree = unpacker.unpacked(&first)?;
        assert_eq!(
            std::fs::read_to_string(tree.join("apps/a.yaml"))
                .ok()
                .as_deref(),
            Some("one")
        );
        // A second call reuses the tree: a file added to it is still there.
        std::fs::write(tree.join("marker"), "").expect("marker");
        assert_eq!(unpacker.unpacked(&first)?, tree);
        assert!(tree.join("marker").exists());

        for index in 1..=KEEP {
            unpacker.unpacked(&artifact(scratch.path(), &format!("d{index}"), "n"))?;
        }
        let left = std::fs::read_dir(scratch.path().join("unpacked"))
            .expect("list")
            .count();
        assert_eq!(left, KEEP);
        assert!(!tree.exists(), "the oldest tree is gone");
        Ok(())
    }
}
