//! The files of one commit, read from the object database: no checkout, so
//! nothing on disk is followed, whatever the repository holds.

use std::path::{Component, Path, PathBuf};

use gix::objs::tree::EntryKind;

use super::ignore::{IgnoreRules, SOURCEIGNORE};
use super::{Error, Result};

/// What a tree entry is, as far as an artifact cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File { executable: bool },
    Symlink,
}

/// One file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// Relative to the repository root, `/`-separated, valid UTF-8.
    pub path: String,
    pub kind: FileKind,
    pub id: gix::ObjectId,
}

/// Every file and symlink of `commit`'s tree, sorted by path. Submodules
/// are left out.
pub fn list_files(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    context: &ReadContext<'_>,
) -> Result<Vec<TreeFile>> {
    let tree_id = repo
        .find_commit(commit)
        .and_then(|commit| commit.tree_id())
        .map(|id| id.detach())
        .map_err(|err| context.error(err))?;
    let mut files = Vec::new();
    walk(repo, tree_id, "", context, &mut files)?;
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

/// Names the source and revision in errors.
pub struct ReadContext<'a> {
    pub source_name: &'a str,
    pub revision: &'a str,
}

impl ReadContext<'_> {
    pub(crate) fn error<E: std::error::Error + 'static>(&self, err: E) -> Error {
        self.message(super::git::describe(&err))
    }

    pub(crate) fn message(&self, message: String) -> Error {
        Error::ReadTree {
            source_name: self.source_name.to_string(),
            revision: self.revision.to_string(),
            message,
        }
    }
}

fn walk(
    repo: &gix::Repository,
    tree_id: gix::ObjectId,
    prefix: &str,
    context: &ReadContext<'_>,
    files: &mut Vec<TreeFile>,
) -> Result<()> {
    let tree = repo.find_tree(tree_id).map_err(|err| context.error(err))?;
    let decoded = tree.decode().map_err(|err| context.error(err))?;
    for entry in &decoded.entries {
        let name = std::str::from_utf8(entry.filename).map_err(|_| {
            context.message(format!(
                "{prefix}{:?} is not a UTF-8 file name",
                entry.filename
            ))
        })?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
            return Err(context.message(format!("{prefix}{name:?} is not a safe file name")));
        }
        let path = format!("{prefix}{name}");
        let id = entry.oid.to_owned();
        let kind = match entry.mode.kind() {
            EntryKind::Tree => {
                walk(repo, id, &format!("{path}/"), context, files)?;
                continue;
            }
            EntryKind::Blob => FileKind::File { executable: false },
            EntryKind::BlobExecutable => FileKind::File { executable: true },
            EntryKind::Link => FileKind::Symlink,
            EntryKind::Commit => continue,
        };
        files.push(TreeFile { path, kind, id });
    }
    Ok(())
}

/// The `.sourceignore` files of the tree as `(directory, content)`.
pub fn sourceignores(
    repo: &gix::Repository,
    files: &[TreeFile],
    context: &ReadContext<'_>,
) -> Result<Vec<(PathBuf, String)>> {
    let mut found = Vec::new();
    for file in files {
        let path = Path::new(&file.path);
        if path.file_name().and_then(|n| n.to_str()) != Some(SOURCEIGNORE)
            || file.kind == FileKind::Symlink
        {
            continue;
        }
        let blob = repo
            .find_object(file.id)
            .map_err(|err| context.error(err))?;
        let content = String::from_utf8_lossy(&blob.data).into_owned();
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        found.push((dir, content));
    }
    Ok(found)
}

/// The files that stay in the artifact under `rules`.
pub fn select(files: Vec<TreeFile>, rules: &IgnoreRules) -> Vec<TreeFile> {
    files
        .into_iter()
        .filter(|file| !rules.is_ignored(Path::new(&file.path)))
        .collect()
}

/// Whether a symlink at `link_path` (relative to the root) pointing to
/// `target` stays inside the root, judged on the paths alone.
pub fn symlink_stays_inside(link_path: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: usize = link_path.parent().map_or(0, |parent| {
        parent
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .count()
    });
    for component in target.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_climbing_out_of_the_root_are_outside() {
        assert!(symlink_stays_inside(
            Path::new("apps/base"),
            Path::new("../common/base")
        ));
        assert!(symlink_stays_inside(
            Path::new("a/b/c"),
            Path::new("../../x")
        ));
        assert!(!symlink_stays_inside(
            Path::new("a/b/c"),
            Path::new("../../../x")
        ));
        assert!(!symlink_stays_inside(
            Path::new("link"),
            Path::new("/etc/passwd")
        ));
        assert!(!symlink_stays_inside(Path::new("link"), Path::new("..")));
    }
}
