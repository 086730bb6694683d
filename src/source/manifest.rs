//! What an unpacked artifact holds, recorded when it is unpacked, so that a
//! tree on disk is checked before a build trusts it.
//!
//! # Background
//! A file deleted from an unpacked tree made the next build declare one
//! object less, and the reconcile pruned it from the cluster although Git
//! still declared it.
//!
//! # Design
//! [`Manifest`] maps each relative path to its size and sha256 (files) or
//! its target (symlinks), with the artifact digest it came from.
//! [`Manifest::check`] walks the tree without following symlinks: a file
//! or symlink missing, added or changed, or a directory no entry needs,
//! is [`TreeDamage`]. [`Snapshot`] is the cheap check between full ones:
//! the `lstat` of every entry (inode, size, mtime, ctime), which any write,
//! rename, deletion or addition changes (ctime cannot be set back).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::store::sha256_of;

/// One file or symlink of an unpacked tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Entry {
    File { size: u64, sha256: String },
    Symlink { target: String },
}

/// The files and symlinks of an unpacked artifact, by relative path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The sha256 of the artifact the tree was unpacked from.
    pub artifact: String,
    pub entries: BTreeMap<String, Entry>,
    /// Directories the artifact lists itself (those of the entries are
    /// implied).
    #[serde(default)]
    pub directories: BTreeSet<String>,
}

/// How an unpacked tree differs from its manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path} {what}")]
pub struct TreeDamage {
    /// Relative to the tree ("." for the tree itself).
    pub path: String,
    pub what: String,
}

fn damage(path: &str, what: impl Into<String>) -> TreeDamage {
    TreeDamage {
        path: if path.is_empty() { "." } else { path }.to_string(),
        what: what.into(),
    }
}

/// The manifest's key of `path` under `root`.
fn key(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

impl Manifest {
    pub fn new(artifact: &str) -> Manifest {
        Manifest {
            artifact: artifact.to_string(),
            ..Manifest::default()
        }
    }

    /// Reads a manifest written by [`Manifest::write`]; `None` when it is
    /// missing or unreadable (the tree is then unpacked again).
    pub fn read(path: &Path) -> Option<Manifest> {
        let text = std::fs::read(path).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// Writes the manifest to `path` through a temporary file renamed into
    /// place, so a reader sees a whole manifest or none.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let temp = path.with_extension("manifest-partial");
        std::fs::write(&temp, serde_json::to_vec(self)?)?;
        std::fs::rename(&temp, path)
    }

    /// Every directory of the tree, the root ("") included.
    fn all_directories(&self) -> BTreeSet<String> {
        let mut dirs = BTreeSet::from([String::new()]);
        dirs.extend(self.directories.iter().cloned());
        for path in self.entries.keys().chain(&self.directories) {
            let mut parent = Path::new(path).parent();
            while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
                dirs.insert(dir.to_string_lossy().into_owned());
                parent = dir.parent();
            }
        }
        dirs
    }

    /// Checks `tree` against the manifest by content: every file is read
    /// and hashed. Returns the tree's [`Snapshot`] when it matches.
    pub fn check(&self, tree: &Path) -> Result<Snapshot, TreeDamage> {
        let directories = self.all_directories();
        let mut snapshot = Snapshot::started();
        let mut seen = 0;
        let mut pending = vec![tree.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let dir_key = key(tree, &dir);
            if !directories.contains(&dir_key) {
                return Err(damage(
                    &dir_key,
                    "is a directory the artifact does not have",
                ));
            }
            snapshot.record(&dir_key, &dir)?;
            for path in list(&dir, &dir_key)? {
                let path_key = key(tree, &path);
                let meta = std::fs::symlink_metadata(&path)
                    .map_err(|err| damage(&path_key, format!("cannot be inspected: {err}")))?;
                if meta.is_dir() {
                    pending.push(path);
                    continue;
                }
                self.check_entry(&path_key, &path, &meta)?;
                snapshot.record(&path_key, &path)?;
                seen += 1;
            }
        }
        if seen != self.entries.len() {
            if let Some(missing) = self
                .entries
                .keys()
                .find(|k| !snapshot.entries.contains_key(*k))
            {
                return Err(damage(missing, "is missing"));
            }
        }
        Ok(snapshot)
    }

    /// Checks the content of one entry of `tree`.
    pub fn check_path(&self, tree: &Path, key: &str) -> Result<(), TreeDamage> {
        let path = tree.join(key);
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|err| damage(key, format!("cannot be inspected: {err}")))?;
        self.check_entry(key, &path, &meta)
    }

    fn check_entry(
        &self,
        key: &str,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> Result<(), TreeDamage> {
        match (self.entries.get(key), meta.file_type()) {
            (None, _) => Err(damage(key, "is not in the artifact")),
            (Some(Entry::File { size, sha256 }), kind) if kind.is_file() => {
                if meta.len() != *size {
                    return Err(damage(key, format!("is {} bytes, not {size}", meta.len())));
                }
                let file = std::fs::File::open(path)
                    .map_err(|err| damage(key, format!("cannot be read: {err}")))?;
                let (actual, _) =
                    sha256_of(file).map_err(|err| damage(key, format!("cannot be read: {err}")))?;
                if actual != *sha256 {
                    return Err(damage(key, "was changed"));
                }
                Ok(())
            }
            (Some(Entry::Symlink { target }), kind) if kind.is_symlink() => {
                let actual = std::fs::read_link(path)
                    .map_err(|err| damage(key, format!("cannot be read: {err}")))?;
                if actual != Path::new(target) {
                    return Err(damage(key, "points elsewhere"));
                }
                Ok(())
            }
            (Some(_), _) => Err(damage(key, "changed its kind")),
        }
    }
}

fn list(dir: &Path, dir_key: &str) -> Result<Vec<PathBuf>, TreeDamage> {
    let listing = |err: std::io::Error| damage(dir_key, format!("cannot be listed: {err}"));
    std::fs::read_dir(dir)
        .map_err(listing)?
        .map(|entry| entry.map(|e| e.path()).map_err(listing))
        .collect()
}

/// What `lstat` says of an entry: any change to it or its content changes
/// one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    is_dir: bool,
    inode: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// How long before a snapshot an entry must have last changed for the
/// snapshot to vouch for it: a change within the same tick of the
/// file system's clock (up to a second on some) leaves its times as they were.
const SETTLE_NS: i128 = 2_000_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// The `lstat` of every entry of a tree (directories included).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, Stat>,
    /// When it was taken, in nanoseconds since the epoch.
    taken_at: i128,
}

impl Snapshot {
    fn record(&mut self, key: &str, path: &Path) -> Result<(), TreeDamage> {
        let meta = std::fs::symlink_metadata(path)
            .map_err(|err| damage(key, format!("cannot be inspected: {err}")))?;
        self.entries.insert(
            key.to_string(),
            Stat {
                is_dir: meta.is_dir(),
                inode: meta.ino(),
                size: meta.size(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
                ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
            },
        );
        Ok(())
    }

    fn started() -> Snapshot {
        Snapshot {
            entries: BTreeMap::new(),
            taken_at: now_ns(),
        }
    }

    /// The files and symlinks that changed too shortly before the snapshot
    /// for it to vouch for them: a change in the same tick of the clock
    /// would not show in their times (Git's "racy" index entries). Their
    /// content must be checked.
    pub fn unsettled(&self) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(_, stat)| !stat.is_dir)
            .filter(|(_, stat)| stat.mtime_ns.max(stat.ctime_ns) + SETTLE_NS >= self.taken_at)
            .map(|(key, _)| key.as_str())
            .collect()
    }

    /// Takes the snapshot of `tree` as it is now (no content is read).
    pub fn take(tree: &Path) -> Result<Snapshot, TreeDamage> {
        let mut snapshot = Snapshot::started();
        let mut pending = vec![tree.to_path_buf()];
        while let Some(dir) = pending.pop() {
            let dir_key = key(tree, &dir);
            snapshot.record(&dir_key, &dir)?;
            for path in list(&dir, &dir_key)? {
                let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
                if is_dir {
                    pending.push(path);
                } else {
                    snapshot.record(&key(tree, &path), &path)?;
                }
            }
        }
        Ok(snapshot)
    }

    /// The first entry that differs between two snapshots of one tree:
    /// one gone or added first (a directory's times change with them too),
    /// then a file or symlink changed, then a directory.
    pub fn first_difference(&self, now: &Snapshot) -> Option<TreeDamage> {
        if let Some(gone) = self.entries.keys().find(|k| !now.entries.contains_key(*k)) {
            return Some(damage(gone, "is missing"));
        }
        if let Some(added) = now.entries.keys().find(|k| !self.entries.contains_key(*k)) {
            return Some(damage(added, "is not in the artifact"));
        }
        let changed = |dirs: bool| {
            self.entries
                .iter()
                .filter(|(_, stat)| stat.is_dir == dirs)
                .find(|(key, stat)| now.entries.get(*key) != Some(*stat))
                .map(|(key, _)| damage(key, "was changed"))
        };
        changed(false).or_else(|| changed(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree_with(files: &[(&str, &str)]) -> (tempfile::TempDir, Manifest) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut manifest = Manifest::new("d0");
        for (path, content) in files {
            let full = dir.path().join(path);
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(&full, content).expect("write");
            let (sha256, size) = sha256_of(content.as_bytes()).expect("hash");
            manifest
                .entries
                .insert(path.to_string(), Entry::File { size, sha256 });
        }
        (dir, manifest)
    }

    #[test]
    fn a_whole_tree_passes_and_each_kind_of_damage_is_named() {
        let (dir, manifest) = tree_with(&[("apps/a.yaml", "a"), ("apps/b.yaml", "b"), ("c", "c")]);
        let tree = dir.path();
        let snapshot = manifest.check(tree).expect("intact");
        assert_eq!(
            snapshot.first_difference(&Snapshot::take(tree).expect("snapshot")),
            None
        );
        assert_eq!(
            snapshot.unsettled(),
            ["apps/a.yaml", "apps/b.yaml", "c"],
            "just written: their content is checked until they settle"
        );

        std::fs::write(tree.join("apps/a.yaml"), "A").expect("same size, other bytes");
        assert_eq!(
            manifest.check(tree),
            Err(damage("apps/a.yaml", "was changed"))
        );
        std::fs::write(tree.join("apps/a.yaml"), "a").expect("restore");

        std::fs::remove_file(tree.join("apps/b.yaml")).expect("rm");
        assert_eq!(
            manifest.check(tree),
            Err(damage("apps/b.yaml", "is missing"))
        );
        std::fs::write(tree.join("apps/b.yaml"), "b").expect("restore");

        std::fs::write(tree.join("apps/extra.yaml"), "x").expect("add");
        assert_eq!(
            manifest.check(tree),
            Err(damage("apps/extra.yaml", "is not in the artifact"))
        );
        std::fs::remove_file(tree.join("apps/extra.yaml")).expect("rm");

        std::fs::create_dir(tree.join("new")).expect("mkdir");
        assert!(manifest.check(tree).is_err());
    }

    #[test]
    fn a_snapshot_sees_a_deletion_an_addition_and_a_rewrite() {
        let (dir, manifest) = tree_with(&[("apps/a.yaml", "a"), ("apps/b.yaml", "b")]);
        let tree = dir.path();
        // Written long ago: a rewrite now shows in its mtime whatever the clock's tick.
        let long_ago = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        let file = std::fs::File::options()
            .write(true)
            .open(tree.join("apps/a.yaml"))
            .expect("open");
        file.set_modified(long_ago).expect("set mtime");
        let before = manifest.check(tree).expect("intact");
        assert_eq!(manifest.check_path(tree, "apps/a.yaml"), Ok(()));

        std::fs::write(tree.join("apps/a.yaml"), "A").expect("rewrite");
        let now = Snapshot::take(tree).expect("snapshot");
        assert_eq!(
            before.first_difference(&now),
            Some(damage("apps/a.yaml", "was changed"))
        );

        let before = Snapshot::take(tree).expect("snapshot");
        std::fs::remove_file(tree.join("apps/b.yaml")).expect("rm");
        let now = Snapshot::take(tree).expect("snapshot");
        assert_eq!(
            before.first_difference(&now),
            Some(damage("apps/b.yaml", "is missing"))
        );

        let before = now;
        std::fs::write(tree.join("added.yaml"), "x").expect("add");
        let now = Snapshot::take(tree).expect("snapshot");
        assert_eq!(
            before.first_difference(&now),
            Some(damage("added.yaml", "is not in the artifact"))
        );
    }

    #[test]
    fn a_manifest_survives_a_round_trip_through_its_file() {
        let (dir, mut manifest) = tree_with(&[("a", "a")]);
        manifest
            .entries
            .insert("link".into(), Entry::Symlink { target: "a".into() });
        let path = dir.path().join("m.manifest");
        manifest.write(&path).expect("write");
        assert_eq!(Manifest::read(&path), Some(manifest));
        assert_eq!(Manifest::read(&dir.path().join("none")), None);
    }
}
