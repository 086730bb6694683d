//! Unpacked artifacts, shared by every kustomization that builds from them,
//! and checked before each build.
//!
//! # Background
//! A new revision of a source wakes all of its kustomizations at once;
//! unpacking the artifact once per kustomization made twenty kustomizations
//! of one repository write its tree twenty times before any apply. And a
//! file deleted from a tree on disk made the next build declare one object
//! less, which the reconcile then pruned.
//!
//! # Design
//! Each artifact is unpacked once into `<dir>/<sha256>/`, under a lock, into
//! a temporary directory renamed into place when complete, so a reader sees
//! a whole tree or none. Only an artifact whose bytes match its sha256 is
//! unpacked; what was written is recorded in `<dir>/<sha256>.manifest`
//! (path → size and sha256, or symlink target).
//!
//! Before every build the tree is checked against that record: the first
//! time in this process by content (every file hashed), after that by the
//! `lstat` of every entry against the snapshot taken then, plus the content
//! of the files too recently changed for their times to show a further
//! change. A tree that fails (a file missing, added or changed) is removed
//! and unpacked again from the verified artifact. See `docs/BENCHMARKS.md`
//! for what each check costs.
//!
//! # Caveats
//! The [`KEEP`] most recently used trees stay; older ones are removed when a
//! new one is unpacked. A build still reading a tree that old fails and is
//! retried at its `retry_interval`.
//!
//! # Guarantees
//! [`Unpacker::confirm`] after a build catches a tree damaged while the
//! build read it, so that build's result is never applied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::source::manifest::{Manifest, Snapshot, TreeDamage};
use crate::source::{self, io_error, Artifact};

/// How many unpacked trees stay on disk.
pub const KEEP: usize = 4;

const MANIFEST: &str = "manifest";

/// A tree checked by content in this process, and its `lstat` then.
#[derive(Debug)]
struct Verified {
    manifest: Manifest,
    snapshot: Snapshot,
}

/// The unpacked trees under one directory.
#[derive(Debug)]
pub struct Unpacker {
    dir: PathBuf,
    /// Trees checked by content since start, by digest; the lock also
    /// serialises unpacking.
    verified: Mutex<HashMap<String, Verified>>,
}

impl Unpacker {
    pub fn new(dir: PathBuf) -> Unpacker {
        Unpacker {
            dir,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The directory holding `artifact` unpacked and intact, unpacking it
    /// (again) if needed. Blocking: call it from the blocking pool.
    pub fn unpacked(&self, artifact: &Artifact) -> Result<PathBuf, source::Error> {
        let tree = self.dir.join(&artifact.digest);
        let manifest_path = self.manifest_path(&artifact.digest);
        let mut verified = self.verified();
        if tree.is_dir() {
            match check(&tree, &manifest_path, &artifact.digest, &mut verified) {
                Ok(()) => {
                    touch(&manifest_path);
                    return Ok(tree);
                }
                Err(damage) => {
                    tracing::warn!(
                        tree = %tree.display(),
                        artifact = %artifact.path.display(),
                        "unpacked tree is damaged: {damage}; unpacking it again"
                    );
                    verified.remove(&artifact.digest);
                    std::fs::remove_dir_all(&tree)
                        .map_err(io_error("removing damaged unpacked tree", &tree))?;
                }
            }
        }
        let partial = self.dir.join(format!("{}.partial", artifact.digest));
        let _ = std::fs::remove_dir_all(&partial);
        let manifest = match source::extract_verified(artifact, &partial) {
            Ok(manifest) => manifest,
            Err(err) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(err);
            }
        };
        manifest.write(&manifest_path).map_err(io_error(
            "writing the manifest of an unpacked tree",
            &manifest_path,
        ))?;
        std::fs::rename(&partial, &tree)
            .map_err(io_error("moving unpacked artifact into place", &tree))?;
        touch(&manifest_path);
        if let Ok(snapshot) = Snapshot::take(&tree) {
            let digest = artifact.digest.clone();
            verified.insert(digest, Verified { manifest, snapshot });
        }
        self.remove_old(&artifact.digest, &mut verified);
        Ok(tree)
    }

    /// Checks, without repairing it, that the tree of `artifact` is still as
    /// recorded: after a build read it.
    pub fn confirm(&self, artifact: &Artifact) -> Result<(), TreeDamage> {
        let tree = self.dir.join(&artifact.digest);
        let mut verified = self.verified();
        check(
            &tree,
            &self.manifest_path(&artifact.digest),
            &artifact.digest,
            &mut verified,
        )
    }

    fn verified(&self) -> std::sync::MutexGuard<'_, HashMap<String, Verified>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn manifest_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.{MANIFEST}"))
    }

    /// Removes all but the [`KEEP`] most recently used trees (by their
    /// manifest's mtime), and leftovers: interrupted unpacks, trees without
    /// a manifest.
    fn remove_old(&self, current: &str, verified: &mut HashMap<String, Verified>) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut trees = Vec::new();
        let mut leftovers = Vec::new();
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if let Some(digest) = name.strip_suffix(&format!(".{MANIFEST}")) {
                if digest != current {
                    let used = path
                        .metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH);
                    trees.push((used, digest.to_string()));
                }
            } else if name != current && !self.manifest_path(name).exists() {
                leftovers.push(path);
            }
        }
        trees.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        for (_, digest) in trees.into_iter().skip(KEEP - 1) {
            verified.remove(&digest);
            let _ = std::fs::remove_dir_all(self.dir.join(&digest));
            let _ = std::fs::remove_file(self.manifest_path(&digest));
        }
        for path in leftovers {
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}

/// Checks `tree` against what was recorded when it was unpacked: by
/// content the first time, then by snapshot (see the module's design).
fn check(
    tree: &Path,
    manifest_path: &Path,
    digest: &str,
    verified: &mut HashMap<String, Verified>,
) -> Result<(), TreeDamage> {
    if let Some(known) = verified.get_mut(digest) {
        let now = Snapshot::take(tree)?;
        if let Some(damage) = known.snapshot.first_difference(&now) {
            return Err(damage);
        }
        for key in now.unsettled() {
            known.manifest.check_path(tree, key)?;
        }
        known.snapshot = now;
        return Ok(());
    }
    let manifest = Manifest::read(manifest_path)
        .filter(|m| m.artifact == digest)
        .ok_or_else(|| TreeDamage {
            path: ".".to_string(),
            what: format!("has no readable manifest at {}", manifest_path.display()),
        })?;
    let snapshot = manifest.check(tree)?;
    verified.insert(digest.to_string(), Verified { manifest, snapshot });
    Ok(())
}

/// Marks a tree as used now, for [`Unpacker::remove_old`]. The kernel
/// stamps files with a clock that ticks every few milliseconds, so trees
/// used in a row could tie and the most recent be removed: every use gets
/// a time strictly after the previous one's, set to the nanosecond.
fn touch(manifest: &Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_USE: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    let previous = LAST_USE
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(now.max(last.saturating_add(1)))
        })
        .unwrap_or(now);
    let stamp = now.max(previous.saturating_add(1));
    if let Ok(file) = std::fs::File::options().append(true).open(manifest) {
        let _ = file.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(stamp));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An artifact of `files` in `dir`, named by its real sha256.
    fn artifact(dir: &Path, files: &[(&str, &str)]) -> Artifact {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for (path, content) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(content.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            builder
                .append_data(&mut header, path, content.as_bytes())
                .expect("append");
        }
        let bytes = builder
            .into_inner()
            .and_then(|gz| gz.finish())
            .expect("finish artifact");
        let (digest, _) = source::store::sha256_of(&bytes[..]).expect("hash");
        let path = dir.join(format!("{digest}.tar.gz"));
        std::fs::write(&path, bytes).expect("write artifact");
        Artifact {
            revision: format!("main@sha1:{}", &digest[..40]),
            digest,
            path,
        }
    }

    fn read(tree: &Path, path: &str) -> Option<String> {
        std::fs::read_to_string(tree.join(path)).ok()
    }

    #[test]
    fn an_artifact_is_unpacked_once_and_old_trees_are_removed() -> Result<(), source::Error> {
        let scratch = tempfile::tempdir().expect("tempdir");
        let unpacker = Unpacker::new(scratch.path().join("unpacked"));
        let first = artifact(scratch.path(), &[("apps/a.yaml", "one")]);
        let tree = unpacker.unpacked(&first)?;
        assert_eq!(read(&tree, "apps/a.yaml").as_deref(), Some("one"));
        let inode = |tree: &Path| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata(tree.join("apps/a.yaml"))
                .map(|m| m.ino())
                .ok()
        };
        let unpacked_once = inode(&tree);
        assert_eq!(unpacker.unpacked(&first)?, tree);
        assert_eq!(inode(&tree), unpacked_once, "an intact tree is reused");

        for index in 1..=KEEP {
            unpacker.unpacked(&artifact(scratch.path(), &[("n", &index.to_string())]))?;
        }
        let names: Vec<String> = std::fs::read_dir(scratch.path().join("unpacked"))
            .expect("list")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        assert_eq!(
            names.len(),
            2 * KEEP,
            "trees and their manifests: {names:?}"
        );
        assert!(!tree.exists(), "the oldest tree is gone");
        Ok(())
    }

    #[test]
    fn a_file_deleted_added_or_changed_in_a_tree_is_restored_before_the_next_build(
    ) -> Result<(), source::Error> {
        let scratch = tempfile::tempdir().expect("tempdir");
        let unpacked = scratch.path().join("unpacked");
        let fleet = artifact(
            scratch.path(),
            &[("apps/a.yaml", "kind: A"), ("apps/b.yaml", "kind: B")],
        );
        let unpacker = Unpacker::new(unpacked.clone());
        let tree = unpacker.unpacked(&fleet)?;
        // Each damage seen by this process (snapshot) and by a restarted one (content).
        for restarted in [false, true] {
            let fresh;
            let unpacker = if restarted {
                fresh = Unpacker::new(unpacked.clone());
                &fresh
            } else {
                &unpacker
            };
            std::fs::remove_file(tree.join("apps/b.yaml")).expect("delete b");
            assert_eq!(unpacker.unpacked(&fleet)?, tree);
            assert_eq!(read(&tree, "apps/b.yaml").as_deref(), Some("kind: B"));

            std::fs::write(tree.join("apps/c.yaml"), "kind: C").expect("add c");
            unpacker.unpacked(&fleet)?;
            assert_eq!(read(&tree, "apps/c.yaml"), None, "an added file is dropped");

            std::fs::write(tree.join("apps/a.yaml"), "kind: Z").expect("change a");
            unpacker.unpacked(&fleet)?;
            assert_eq!(read(&tree, "apps/a.yaml").as_deref(), Some("kind: A"));

            std::fs::remove_dir_all(tree.join("apps")).expect("delete the directory");
            unpacker.unpacked(&fleet)?;
            assert_eq!(read(&tree, "apps/a.yaml").as_deref(), Some("kind: A"));
        }
        std::fs::remove_file(unpacked.join(format!("{}.manifest", fleet.digest)))
            .expect("lose the manifest");
        std::fs::remove_file(tree.join("apps/b.yaml")).expect("delete b");
        Unpacker::new(unpacked).unpacked(&fleet)?;
        assert_eq!(read(&tree, "apps/b.yaml").as_deref(), Some("kind: B"));
        Ok(())
    }

    #[test]
    fn confirm_reports_a_tree_damaged_after_its_check_and_leaves_the_repair_to_the_next_build(
    ) -> Result<(), source::Error> {
        let scratch = tempfile::tempdir().expect("tempdir");
        let unpacker = Unpacker::new(scratch.path().join("unpacked"));
        let fleet = artifact(
            scratch.path(),
            &[("a.yaml", "kind: A"), ("b.yaml", "kind: B")],
        );
        let tree = unpacker.unpacked(&fleet)?;
        assert_eq!(unpacker.confirm(&fleet), Ok(()));

        std::fs::remove_file(tree.join("b.yaml")).expect("delete b during a build");
        let damage = unpacker.confirm(&fleet).expect_err("b is gone");
        assert_eq!(damage.path, "b.yaml");
        assert_eq!(read(&tree, "b.yaml"), None, "confirm repairs nothing");
        unpacker.unpacked(&fleet)?;
        assert_eq!(read(&tree, "b.yaml").as_deref(), Some("kind: B"));
        Ok(())
    }

    #[test]
    fn a_damaged_artifact_is_never_unpacked_and_the_error_names_it() {
        let scratch = tempfile::tempdir().expect("tempdir");
        let unpacker = Unpacker::new(scratch.path().join("unpacked"));
        let fleet = artifact(scratch.path(), &[("apps/a.yaml", "kind: A")]);
        std::fs::write(&fleet.path, [0x1f, 0x8b, 7, 7, 7, 7]).expect("damage the artifact");

        let err = unpacker.unpacked(&fleet).expect_err("a damaged artifact");
        let message = err.to_string();
        assert_eq!(err.reason(), "ArtifactFailed");
        assert!(
            message.contains(&fleet.path.display().to_string())
                && message.contains("sha256")
                && !message.contains("gzip"),
            "{message}"
        );
        assert!(!scratch.path().join("unpacked").join(&fleet.digest).exists());

        std::fs::remove_file(&fleet.path).expect("lose the artifact");
        let message = unpacker.unpacked(&fleet).expect_err("missing").to_string();
        assert!(message.ends_with("is missing"), "{message}");
    }
}
