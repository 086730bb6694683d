//! Artifacts as deterministic `tar.gz` files, and their safe unpacking.
//!
//! # Guarantees
//! The same files give byte-identical archives: entries sorted by path,
//! mtime 0, uid/gid 0, no user or group names, mode 0644 or 0755 for files
//! and 0777 for symlinks, a gzip header without name or time. No `.git`.
//!
//! [`extract`] writes nothing outside its destination: entry paths must be
//! relative without `..`, a symlink must point inside the destination, and
//! no entry is written through a symlink or over an existing file. It
//! returns the [`Manifest`] of what it wrote. [`extract_verified`] unpacks
//! only an artifact whose bytes hash to its recorded digest.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::manifest::{Entry, Manifest};
use super::store::{self, hex, Damage};
use super::tree::{symlink_stays_inside, FileKind, ReadContext, TreeFile};
use super::{io_error, Artifact, Error, Limits, Result};

/// A writer that hashes what passes through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes what passes through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.size += read as u64;
        Ok(read)
    }
}

fn header(size: u64, mode: u32, kind: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_entry_type(kind);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Writes a deterministic `tar.gz`, entry by entry in path order, hashing
/// it as it goes and holding every entry to [`Limits`]: what any kind of
/// source builds its artifact with.
pub struct ArtifactWriter<'a> {
    tar: tar::Builder<GzEncoder<HashingWriter<BufWriter<File>>>>,
    dest: PathBuf,
    limits: Limits,
    total: u64,
    source_name: &'a str,
}

impl<'a> ArtifactWriter<'a> {
    /// Creates the file at `dest`; `source_name` names the source in errors.
    pub fn create(dest: &Path, limits: Limits, source_name: &'a str) -> Result<Self> {
        let file = File::create(dest).map_err(io_error("creating artifact", dest))?;
        let hashing = HashingWriter {
            inner: BufWriter::new(file),
            hasher: Sha256::new(),
        };
        let gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(hashing, Compression::default());
        Ok(ArtifactWriter {
            tar: tar::Builder::new(gzip),
            dest: dest.to_path_buf(),
            limits,
            total: 0,
            source_name,
        })
    }

    /// Refuses a file of `size` bytes at `path` when it is over a limit.
    pub fn check_size(&self, path: &str, size: u64) -> Result<()> {
        let too_large = |limit| Error::TooLarge {
            source_name: self.source_name.to_string(),
            path: path.to_string(),
            size,
            limit,
        };
        if size > self.limits.max_file_bytes {
            return Err(too_large(self.limits.max_file_bytes));
        }
        if self.total.saturating_add(size) > self.limits.max_total_bytes {
            return Err(too_large(
                self.limits.max_total_bytes.saturating_sub(self.total),
            ));
        }
        Ok(())
    }

    /// Appends a regular file of exactly `size` bytes read from `content`.
    pub fn append_file(
        &mut self,
        path: &str,
        executable: bool,
        size: u64,
        content: impl Read,
    ) -> Result<()> {
        self.check_size(path, size)?;
        let mode = if executable { 0o755 } else { 0o644 };
        let mut header = header(size, mode, tar::EntryType::Regular);
        self.tar
            .append_data(&mut header, path, content)
            .map_err(io_error("writing artifact", &self.dest))?;
        self.total = self.total.saturating_add(size);
        Ok(())
    }

    /// Appends a symlink; the caller has checked that it stays inside.
    pub fn append_symlink(&mut self, path: &str, target: &str) -> Result<()> {
        let mut header = header(0, 0o777, tar::EntryType::Symlink);
        self.tar
            .append_link(&mut header, path, target)
            .map_err(io_error("writing artifact", &self.dest))
    }

    /// Completes the file, syncs it to disk and returns its sha256.
    pub fn finish(self) -> Result<String> {
        let dest = self.dest;
        let gzip = self
            .tar
            .into_inner()
            .map_err(io_error("writing artifact", &dest))?;
        let mut hashing = gzip.finish().map_err(io_error("writing artifact", &dest))?;
        hashing
            .flush()
            .map_err(io_error("writing artifact", &dest))?;
        hashing
            .inner
            .get_ref()
            .sync_all()
            .map_err(io_error("syncing artifact", &dest))?;
        Ok(hex(&hashing.hasher.finalize()))
    }
}

/// One file of an archive built in memory: its path inside the archive,
/// mode and content.
pub struct MemoryFile {
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// Appends `files`, in the order given, to `writer`.
pub fn append_memory_files(files: &[MemoryFile], writer: &mut ArtifactWriter<'_>) -> Result<()> {
    for file in files {
        let executable = file.mode & 0o111 != 0;
        let size = file.content.len() as u64;
        writer.append_file(&file.path, executable, size, file.content.as_slice())?;
    }
    Ok(())
}

/// Appends `files` of `repo` to `writer`. Symlinks pointing outside the
/// tree are left out (with a warning); files over the limits fail the whole
/// artifact.
pub fn append_tree_files(
    repo: &gix::Repository,
    files: &[TreeFile],
    writer: &mut ArtifactWriter<'_>,
    context: &ReadContext<'_>,
) -> Result<()> {
    for file in files {
        append(repo, writer, file, context)?;
    }
    Ok(())
}

/// Appends one file of `repo`.
fn append(
    repo: &gix::Repository,
    writer: &mut ArtifactWriter<'_>,
    file: &TreeFile,
    context: &ReadContext<'_>,
) -> Result<()> {
    let size = repo
        .find_header(file.id)
        .map_err(|err| context.error(err))?
        .size();
    writer.check_size(&file.path, size)?;
    let blob = repo
        .find_object(file.id)
        .map_err(|err| context.error(err))?;
    match file.kind {
        FileKind::File { executable } => writer.append_file(
            &file.path,
            executable,
            blob.data.len() as u64,
            blob.data.as_slice(),
        ),
        FileKind::Symlink => {
            let target = String::from_utf8_lossy(&blob.data).into_owned();
            if !symlink_stays_inside(Path::new(&file.path), Path::new(&target)) {
                tracing::warn!(
                    source = context.source_name,
                    revision = context.revision,
                    path = %file.path,
                    target = %target,
                    "left a symlink pointing outside the repository out of the artifact"
                );
                return Ok(());
            }
            writer.append_symlink(&file.path, &target)
        }
    }
}

/// One entry of a `tar.gz` built elsewhere, held until all are read.
enum ForeignEntry {
    File { executable: bool, content: Vec<u8> },
    Symlink { target: String },
}

/// Appends the files of the `tar.gz` read from `reader` (built elsewhere:
/// an OCI layer) in path order. Entries are held to the rules of
/// unpacking: relative paths without `..`, symlinks pointing inside, only
/// files, directories and symlinks, no path twice or below a file, and the
/// writer's limits while reading. `origin` names it in errors.
pub fn append_tar_gz(
    origin: &Path,
    reader: impl Read,
    writer: &mut ArtifactWriter<'_>,
) -> Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let mut entries = std::collections::BTreeMap::new();
    let mut total: u64 = 0;
    for entry in archive
        .entries()
        .map_err(io_error(READING_FOREIGN, origin))?
    {
        let mut entry = entry.map_err(io_error(READING_FOREIGN, origin))?;
        let path = entry
            .path()
            .map_err(io_error(READING_FOREIGN, origin))?
            .into_owned();
        let relative = checked_relative(origin, &path)?;
        let Some(name) = relative.to_str().map(str::to_string) else {
            return Err(unsafe_entry(origin, &path, "is not UTF-8"));
        };
        let foreign = match entry.header().entry_type() {
            tar::EntryType::Directory => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                writer.check_size(&name, size)?;
                if total.saturating_add(size) > writer.limits.max_total_bytes {
                    return Err(Error::TooLarge {
                        source_name: writer.source_name.to_string(),
                        path: name,
                        size,
                        limit: writer.limits.max_total_bytes.saturating_sub(total),
                    });
                }
                total += size;
                let executable = entry.header().mode().is_ok_and(|m| m & 0o111 != 0);
                let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                entry
                    .by_ref()
                    .take(size)
                    .read_to_end(&mut content)
                    .map_err(io_error(READING_FOREIGN, origin))?;
                ForeignEntry::File {
                    executable,
                    content,
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(io_error(READING_FOREIGN, origin))?
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                if !symlink_stays_inside(&relative, Path::new(&target)) {
                    return Err(unsafe_entry(origin, &path, "is a symlink pointing outside"));
                }
                ForeignEntry::Symlink { target }
            }
            _ => {
                return Err(unsafe_entry(
                    origin,
                    &path,
                    "is neither a file, a directory nor a symlink",
                ))
            }
        };
        if name.is_empty() || entries.insert(name, foreign).is_some() {
            return Err(unsafe_entry(origin, &path, "appears twice"));
        }
    }
    for name in entries.keys() {
        let below_an_entry = Path::new(name)
            .ancestors()
            .skip(1)
            .filter_map(Path::to_str)
            .any(|parent| entries.contains_key(parent));
        if below_an_entry {
            return Err(unsafe_entry(
                origin,
                Path::new(name),
                "passes through a symlink or a file",
            ));
        }
    }
    for (name, entry) in entries {
        match entry {
            ForeignEntry::File {
                executable,
                content,
            } => writer.append_file(&name, executable, content.len() as u64, content.as_slice())?,
            ForeignEntry::Symlink { target } => writer.append_symlink(&name, &target)?,
        }
    }
    Ok(())
}

/// The action of an error reading a `tar.gz` built elsewhere.
pub const READING_FOREIGN: &str = "reading the tar.gz";

/// Appends the files under `dir` on disk in path order, leaving out `.git`
/// directories: symlinks must point inside, anything but files,
/// directories and symlinks is refused.
pub fn append_directory(dir: &Path, writer: &mut ArtifactWriter<'_>) -> Result<()> {
    let mut found = Vec::new();
    list_directory(dir, dir, &mut found)?;
    found.sort();
    for (name, path) in found {
        let meta = std::fs::symlink_metadata(&path).map_err(io_error("inspecting", &path))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_error("reading link", &path))?;
            if !symlink_stays_inside(Path::new(&name), &target) {
                return Err(unsafe_entry(
                    dir,
                    Path::new(&name),
                    "is a symlink pointing outside",
                ));
            }
            writer.append_symlink(&name, &target.to_string_lossy())?;
        } else {
            use std::os::unix::fs::PermissionsExt;
            let executable = meta.permissions().mode() & 0o111 != 0;
            let file = File::open(&path).map_err(io_error("reading", &path))?;
            writer.append_file(&name, executable, meta.len(), file)?;
        }
    }
    Ok(())
}

/// Files and symlinks under `dir`, as (path relative to `root`, full path).
fn list_directory(root: &Path, dir: &Path, found: &mut Vec<(String, PathBuf)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io_error("reading directory", dir))? {
        let entry = entry.map_err(io_error("reading directory", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_error("inspecting", &path))?;
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let Some(name) = relative.to_str().map(str::to_string) else {
            return Err(unsafe_entry(root, relative, "is not UTF-8"));
        };
        if kind.is_dir() {
            if entry.file_name() != ".git" {
                list_directory(root, &path, found)?;
            }
        } else if kind.is_file() || kind.is_symlink() {
            found.push((name, path));
        } else {
            return Err(unsafe_entry(
                root,
                relative,
                "is neither a file, a directory nor a symlink",
            ));
        }
    }
    Ok(())
}

fn unsafe_entry(artifact: &Path, entry: &Path, why: &'static str) -> Error {
    Error::UnsafeEntry {
        artifact: artifact.to_path_buf(),
        entry: entry.to_string_lossy().into_owned(),
        why,
    }
}

/// Unpacks the artifact at `artifact` into `dest` (created if missing) and
/// returns what it wrote. See the module's guarantees.
pub fn extract(artifact: &Path, dest: &Path) -> Result<Manifest> {
    let file = File::open(artifact).map_err(io_error("opening artifact", artifact))?;
    unpack(artifact, file, dest)
}

/// [`extract`], for an artifact whose bytes hash to `artifact.digest`: that
/// is checked before anything is unpacked, and again over the bytes the
/// unpacking read, so a file changed in between is refused too.
pub fn extract_verified(artifact: &Artifact, dest: &Path) -> Result<Manifest> {
    let damaged = |damage| Error::ArtifactDamaged {
        path: artifact.path.clone(),
        damage,
    };
    store::verify(artifact).map_err(damaged)?;
    let file = File::open(&artifact.path).map_err(io_error("opening artifact", &artifact.path))?;
    let mut reader = HashingReader {
        inner: file,
        hasher: Sha256::new(),
        size: 0,
    };
    let mut manifest = unpack(&artifact.path, &mut reader, dest)?;
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(io_error("reading artifact", &artifact.path))?;
    let actual = hex(&reader.hasher.finalize());
    if actual != artifact.digest {
        return Err(damaged(Damage::Changed {
            recorded: artifact.digest.clone(),
            actual,
            size: reader.size,
        }));
    }
    manifest.artifact = artifact.digest.clone();
    Ok(manifest)
}

/// The regular files of `artifact` (checked against its digest first)
/// whose relative path `wanted` accepts, by path, without unpacking it:
/// refused past `limit` bytes in all.
pub fn read_files(
    artifact: &Artifact,
    wanted: impl Fn(&str) -> bool,
    limit: u64,
) -> Result<Vec<(String, Vec<u8>)>> {
    store::verify(artifact).map_err(|damage| Error::ArtifactDamaged {
        path: artifact.path.clone(),
        damage,
    })?;
    let read_error = || io_error("reading artifact", &artifact.path);
    let file = File::open(&artifact.path).map_err(io_error("opening artifact", &artifact.path))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = Vec::new();
    let mut total = 0;
    for entry in archive.entries().map_err(read_error())? {
        let mut entry = entry.map_err(read_error())?;
        let path = entry.path().map_err(read_error())?.into_owned();
        let relative = checked_relative(&artifact.path, &path)?;
        let relative = relative.to_string_lossy().into_owned();
        let regular = matches!(
            entry.header().entry_type(),
            tar::EntryType::Regular | tar::EntryType::Continuous
        );
        if !regular || !wanted(&relative) {
            continue;
        }
        total += entry.size();
        if total > limit {
            return Err(Error::TooLarge {
                source_name: artifact.revision.clone(),
                path: relative,
                size: total,
                limit,
            });
        }
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).map_err(read_error())?;
        files.push((relative, bytes));
    }
    files.sort();
    Ok(files)
}

fn unpack(artifact: &Path, reader: impl Read, dest: &Path) -> Result<Manifest> {
    std::fs::create_dir_all(dest).map_err(io_error("creating directory", dest))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let entries = archive
        .entries()
        .map_err(io_error("reading artifact", artifact))?;
    let mut written = Manifest::default();
    for entry in entries {
        let mut entry = entry.map_err(io_error("reading artifact", artifact))?;
        let path = entry
            .path()
            .map_err(io_error("reading artifact", artifact))?
            .into_owned();
        let relative = checked_relative(artifact, &path)?;
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = dest.join(&relative);
        if let Some(parent) = relative.parent() {
            ensure_real_dirs(artifact, dest, parent, &path)?;
        }
        let key = relative.to_string_lossy().into_owned();
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let executable = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
                let file = write_file(artifact, &path, &target, &mut entry, executable)?;
                written.entries.insert(key, file);
            }
            tar::EntryType::Directory => {
                ensure_real_dirs(artifact, dest, &relative, &path)?;
                written.directories.insert(key);
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(io_error("reading artifact", artifact))?
                    .ok_or_else(|| unsafe_entry(artifact, &path, "is a symlink without a target"))?
                    .into_owned();
                if !symlink_stays_inside(&relative, &link) {
                    return Err(unsafe_entry(
                        artifact,
                        &path,
                        "is a symlink pointing outside the destination",
                    ));
                }
                std::os::unix::fs::symlink(&link, &target)
                    .map_err(io_error("creating symlink", &target))?;
                let target = link.to_string_lossy().into_owned();
                written.entries.insert(key, Entry::Symlink { target });
            }
            _ => {
                return Err(unsafe_entry(
                    artifact,
                    &path,
                    "is not a file, directory or symlink",
                ))
            }
        }
    }
    Ok(written)
}

/// The entry path as a relative path of normal components only.
fn checked_relative(artifact: &Path, path: &Path) -> Result<PathBuf> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => relative.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                return Err(unsafe_entry(artifact, path, "climbs out with '..'"))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(artifact, path, "is absolute"))
            }
        }
    }
    Ok(relative)
}

/// Creates `dest/relative` directory by directory, refusing to pass through
/// anything that is not a real directory (a symlink could lead outside).
fn ensure_real_dirs(artifact: &Path, dest: &Path, relative: &Path, entry: &Path) -> Result<()> {
    let mut current = dest.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_dir() => {}
            Ok(_) => {
                return Err(unsafe_entry(
                    artifact,
                    entry,
                    "passes through a symlink or a file",
                ))
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&current).map_err(io_error("creating directory", &current))?;
            }
            Err(err) => return Err(io_error("inspecting", &current)(err)),
        }
    }
    Ok(())
}

fn write_file(
    artifact: &Path,
    entry: &Path,
    target: &Path,
    content: &mut impl Read,
    executable: bool,
) -> Result<Entry> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(target)
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::AlreadyExists => {
                unsafe_entry(artifact, entry, "is in the artifact twice")
            }
            _ => io_error("creating file", target)(err),
        })?;
    let mut hashing = HashingWriter {
        inner: &mut file,
        hasher: Sha256::new(),
    };
    let size = std::io::copy(content, &mut hashing).map_err(io_error("writing file", target))?;
    Ok(Entry::File {
        size,
        sha256: hex(&hashing.hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_gz(build: impl FnOnce(&mut tar::Builder<GzEncoder<Vec<u8>>>)) -> Vec<u8> {
        let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
        build(&mut tar);
        match tar.into_inner().and_then(|gz| gz.finish()) {
            Ok(bytes) => bytes,
            Err(err) => panic!("building test archive: {err}"),
        }
    }

    fn extract_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Manifest>) {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("tempdir: {err}"),
        };
        let artifact = dir.path().join("a.tar.gz");
        if let Err(err) = std::fs::write(&artifact, bytes) {
            panic!("writing test artifact: {err}");
        }
        let result = extract(&artifact, &dir.path().join("out"));
        (dir, result)
    }

    #[test]
    fn extract_refuses_a_symlink_pointing_outside() {
        let bytes = tar_gz(|tar| {
            let mut h = header(0, 0o777, tar::EntryType::Symlink);
            let _ = tar.append_link(&mut h, "evil", "../../etc");
        });
        let (dir, result) = extract_bytes(&bytes);
        assert!(
            matches!(result, Err(Error::UnsafeEntry { .. })),
            "{result:?}"
        );
        assert!(!dir.path().join("out/evil").exists());
    }

    #[test]
    fn extract_refuses_to_write_through_a_symlink_inside() {
        let bytes = tar_gz(|tar| {
            let mut h = header(0, 0o777, tar::EntryType::Symlink);
            let _ = tar.append_link(&mut h, "here", ".");
            let mut h = header(3, 0o644, tar::EntryType::Regular);
            let _ = tar.append_data(&mut h, "here/file", &b"abc"[..]);
        });
        let (_dir, result) = extract_bytes(&bytes);
        assert!(matches!(result, Err(Error::UnsafeEntry { why, .. }) if why.contains("symlink")));
    }

    #[test]
    fn extract_writes_files_and_inside_symlinks() -> Result<()> {
        let bytes = tar_gz(|tar| {
            let mut h = header(3, 0o755, tar::EntryType::Regular);
            let _ = tar.append_data(&mut h, "bin/run.sh", &b"abc"[..]);
            let mut h = header(0, 0o777, tar::EntryType::Symlink);
            let _ = tar.append_link(&mut h, "bin/again.sh", "run.sh");
        });
        let (dir, result) = extract_bytes(&bytes);
        let manifest = result?;
        let out = dir.path().join("out");
        assert_eq!(
            std::fs::read_to_string(out.join("bin/again.sh")).unwrap_or_default(),
            "abc"
        );
        assert_eq!(
            manifest.entries["bin/again.sh"],
            Entry::Symlink {
                target: "run.sh".into()
            }
        );
        assert!(
            manifest.check(&out).is_ok(),
            "the manifest describes what was written"
        );
        Ok(())
    }

    #[test]
    fn extract_verified_refuses_bytes_that_are_not_the_recorded_digest() {
        let bytes = tar_gz(|tar| {
            let mut h = header(3, 0o644, tar::EntryType::Regular);
            let _ = tar.append_data(&mut h, "a.yaml", &b"abc"[..]);
        });
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.tar.gz");
        std::fs::write(&path, &bytes).expect("write artifact");
        let (digest, _) = store::sha256_of(&bytes[..]).expect("hash");
        let mut artifact = Artifact {
            revision: "main@sha1:0".into(),
            digest,
            path,
        };
        let out = dir.path().join("out");
        assert!(extract_verified(&artifact, &out).is_ok());

        artifact.digest = "0".repeat(64);
        let refused = dir.path().join("refused");
        let err = extract_verified(&artifact, &refused).expect_err("a digest mismatch");
        assert!(
            matches!(
                &err,
                Error::ArtifactDamaged {
                    damage: Damage::Changed { .. },
                    ..
                }
            ),
            "{err}"
        );
        assert!(!refused.exists(), "nothing unpacked");
    }
}
