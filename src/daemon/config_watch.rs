//! Watching the config file (and the kubeconfig it names) for changes.
//!
//! # Design
//! Editors save by writing a temporary file and renaming it over the old
//! one, which replaces the inode a file watch would follow. So the
//! directory is watched, and any creation, write, rename or removal of an
//! entry with the config's file name counts. Changes are debounced
//! ([`QUIET`]) so that one save is one reload.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long the file must be left alone before a change is reported.
pub const QUIET: Duration = Duration::from_millis(200);

/// Errors of starting the watch.
#[derive(Debug, thiserror::Error)]
#[error("watching {} for changes to {}: {source}", dir.display(), file.to_string_lossy())]
pub struct WatchError {
    dir: PathBuf,
    file: OsString,
    #[source]
    source: notify::Error,
}

impl WatchError {
    fn of(path: &Path, source: notify::Error) -> WatchError {
        WatchError {
            dir: directory_of(path),
            file: path.file_name().map(OsString::from).unwrap_or_default(),
            source,
        }
    }
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A running watch; dropping it stops the watch.
pub struct ConfigWatch {
    _watcher: RecommendedWatcher,
    changes: mpsc::Receiver<()>,
    /// Set while a change waits for the file to be quiet.
    quiet_until: Option<Instant>,
}

impl ConfigWatch {
    /// Watches the directories of `paths` for changes to their entries
    /// (the config file, and the kubeconfig it names).
    pub fn start(paths: &[&Path]) -> Result<ConfigWatch, WatchError> {
        let (sender, changes) = mpsc::channel(1);
        let names: Vec<OsString> = paths
            .iter()
            .map(|path| path.file_name().map(OsString::from).unwrap_or_default())
            .collect();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                // By name: a same-named file beside the other costs one
                // reload that changes nothing.
                let ours = event.paths.iter().any(|p| {
                    names
                        .iter()
                        .any(|name| p.file_name() == Some(name.as_os_str()))
                });
                if ours && changes_content(&event.kind) {
                    // Full means a change is already pending: one reload covers both.
                    let _ = sender.try_send(());
                }
            })
            .map_err(|source| {
                WatchError::of(paths.first().copied().unwrap_or(Path::new(".")), source)
            })?;
        for path in paths {
            watcher
                .watch(&directory_of(path), RecursiveMode::NonRecursive)
                .map_err(|source| WatchError::of(path, source))?;
        }
        Ok(ConfigWatch {
            _watcher: watcher,
            changes,
            quiet_until: None,
        })
    }

    /// Resolves once the file changed and then stayed quiet for [`QUIET`].
    ///
    /// # Guarantees
    /// Cancel-safe: a change seen by a call dropped before it resolved
    /// (the main loop's `select!` does that) is reported by the next call,
    /// at the same deadline.
    pub async fn changed(&mut self) {
        loop {
            match self.quiet_until {
                None => match self.changes.recv().await {
                    Some(()) => self.quiet_until = Some(Instant::now() + QUIET),
                    None => return std::future::pending().await,
                },
                Some(until) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(until) => {
                            self.quiet_until = None;
                            return;
                        }
                        Some(()) = self.changes.recv() => {
                            self.quiet_until = Some(Instant::now() + QUIET);
                        }
                    }
                }
            }
        }
    }
}

/// Whether an event can change what the file reads as (not a mere read).
fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Other => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_do_not_count_as_changes() {
        assert!(!changes_content(&EventKind::Access(AccessKind::Read)));
        assert!(!changes_content(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(changes_content(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(changes_content(&EventKind::Create(
            notify::event::CreateKind::File
        )));
    }

    #[tokio::test]
    async fn a_file_renamed_over_the_config_is_seen() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("kedge.toml");
        std::fs::write(&config, "one")?;
        let mut watch = ConfigWatch::start(&[&config])?;
        std::fs::write(dir.path().join("other.toml"), "not ours")?;
        let unrelated = tokio::time::timeout(Duration::from_millis(500), watch.changed()).await;
        assert!(unrelated.is_err(), "another file's change is not reported");
        let temp = dir.path().join(".kedge.toml.swp");
        std::fs::write(&temp, "two")?;
        std::fs::rename(&temp, &config)?;
        tokio::time::timeout(Duration::from_secs(5), watch.changed()).await?;
        Ok(())
    }
}
