//! `[agent] bundle_dir`: signed bundles dropped into a directory (a USB
//! stick's mount point) are imported.
//!
//! # Design
//! inotify (the notify crate) reports a file written or moved into the
//! directory at once; a rescan every [`RESCAN`] finds what inotify cannot
//! see, such as a filesystem mounted over the directory. A file is handed
//! out once its size and modification time held still for [`QUIET`] (a
//! copy in progress is not read half-written), and again only when they
//! change. Hidden files (`.name`, where copies are often written first)
//! are left alone. Whether a bundle is new for a source is the import's
//! business: an already imported one changes nothing.
//!
//! The watch runs on a task of its own and sends what it found: the
//! daemon's loop, which wakes every second for other work, would cancel a
//! watch waiting out [`QUIET`] inside it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long a file must stay unchanged before it is imported.
pub const QUIET: Duration = Duration::from_secs(1);
/// How often the directory is listed whatever inotify says.
pub const RESCAN: Duration = Duration::from_secs(10);

type Stamp = (u64, SystemTime);

/// Starts watching `dir` on a task of its own; the receiver gets the
/// bundle files to import, the task ends when it is dropped.
pub fn spawn(dir: &Path) -> mpsc::Receiver<Vec<PathBuf>> {
    let (found, receiver) = mpsc::channel(4);
    let mut watch = BundleWatch::start(dir);
    tokio::spawn(async move {
        loop {
            let files = watch.next().await;
            if found.send(files).await.is_err() {
                return;
            }
        }
    });
    receiver
}

/// A watch of the bundle directory.
struct BundleWatch {
    dir: PathBuf,
    _watcher: Option<RecommendedWatcher>,
    events: mpsc::Receiver<()>,
    rescan: tokio::time::Interval,
    /// The files handed out, as they were then.
    seen: BTreeMap<PathBuf, Stamp>,
}

impl BundleWatch {
    /// Watches `dir`; a directory that does not exist yet (nothing
    /// mounted) is found by the rescans.
    fn start(dir: &Path) -> BundleWatch {
        let (sender, events) = mpsc::channel(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = sender.try_send(());
            }
        })
        .and_then(|mut watcher| {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
            Ok(watcher)
        });
        let watcher = match watcher {
            Ok(watcher) => Some(watcher),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "watching the bundle directory; it is listed every {}s", RESCAN.as_secs());
                None
            }
        };
        BundleWatch {
            dir: dir.to_path_buf(),
            _watcher: watcher,
            events,
            rescan: tokio::time::interval(RESCAN),
            seen: BTreeMap::new(),
        }
    }

    /// The next bundle files to import: new or changed, and still for
    /// [`QUIET`].
    async fn next(&mut self) -> Vec<PathBuf> {
        loop {
            tokio::select! {
                _ = self.events.recv() => {}
                _ = self.rescan.tick() => {}
            }
            let before = self.changed();
            if before.is_empty() {
                continue;
            }
            tokio::time::sleep(QUIET).await;
            let after = self.changed();
            let settled: Vec<(PathBuf, Stamp)> = before
                .into_iter()
                .filter(|(path, stamp)| after.get(path) == Some(stamp))
                .collect();
            if settled.is_empty() {
                continue;
            }
            let files = settled.iter().map(|(path, _)| path.clone()).collect();
            self.seen.extend(settled);
            return files;
        }
    }

    /// Files whose stamp differs from when they were handed out.
    fn changed(&self) -> BTreeMap<PathBuf, Stamp> {
        list(&self.dir)
            .into_iter()
            .filter(|(path, stamp)| self.seen.get(path) != Some(stamp))
            .collect()
    }
}

/// The regular, visible files of `dir` and their stamps; nothing when it
/// cannot be listed.
fn list(dir: &Path) -> BTreeMap<PathBuf, Stamp> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|entry| {
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some((entry.path(), (meta.len(), meta.modified().ok()?)))
        })
        .collect()
}
