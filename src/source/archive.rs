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

/// Writes `files` of `repo` as a `tar.gz` at `dest` and returns its sha256.
/// Symlinks pointing outside the tree are left out (with a warning);
/// files over `limits` fail the whole artifact.
pub fn write_artifact(
    repo: &gix::Repository,
    files: &[TreeFile],
    dest: &Path,
    limits: Limits,
    context: &ReadContext<'_>,
) -> Result<String> {
    let mut tar = start_archive(dest)?;
    let mut total: u64 = 0;
    for file in files {
        total = total.saturating_add(append(repo, &mut tar, file, limits, total, context)?);
    }
    finish_archive(tar, dest)
}

type ArtifactWriter = tar::Builder<GzEncoder<HashingWriter<BufWriter<File>>>>;

/// A deterministic `tar.gz` being written to `dest`, hashed as it goes.
fn start_archive(dest: &Path) -> Result<ArtifactWriter> {
    let file = File::create(dest).map_err(io_error("creating artifact", dest))?;
    let hashing = HashingWriter {
        inner: BufWriter::new(file),
        hasher: Sha256::new(),
    };
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(hashing, Compression::default());
    Ok(tar::Builder::new(gzip))
}

/// Ends the archive, syncs it to disk and returns its sha256.
fn finish_archive(tar: ArtifactWriter, dest: &Path) -> Result<String> {
    let gzip = tar
        .into_inner()
        .map_err(io_error("writing artifact", dest))?;
    let mut hashing = finish(gzip).map_err(io_error("writing artifact", dest))?;
    hashing
        .flush()
        .map_err(io_error("writing artifact", dest))?;
    hashing
        .inner
        .get_ref()
        .sync_all()
        .map_err(io_error("syncing artifact", dest))?;
    Ok(hex(&hashing.hasher.finalize()))
}

/// One file of an archive built in memory: its path inside the archive,
/// mode and content.
pub struct MemoryFile {
    pub path: String,
    pub mode: u32,
    pub content: Vec<u8>,
}

/// Writes `files`, in the order given, as a deterministic `tar.gz` at
/// `dest` (the same headers as [`write_artifact`]) and returns its sha256.
pub fn write_memory_files(files: &[MemoryFile], dest: &Path) -> Result<String> {
    let mut tar = start_archive(dest)?;
    for file in files {
        let mut header = header(
            file.content.len() as u64,
            file.mode,
            tar::EntryType::Regular,
        );
        tar.append_data(&mut header, &file.path, file.content.as_slice())
            .map_err(io_error("writing artifact", dest))?;
    }
    finish_archive(tar, dest)
}

fn finish<W: Write>(gzip: GzEncoder<W>) -> std::io::Result<W> {
    gzip.finish()
}

/// Appends one file and returns how many bytes of content it added.
fn append<W: Write>(
    repo: &gix::Repository,
    tar: &mut tar::Builder<W>,
    file: &TreeFile,
    limits: Limits,
    total_so_far: u64,
    context: &ReadContext<'_>,
) -> Result<u64> {
    let size = repo
        .find_header(file.id)
        .map_err(|err| context.error(err))?
        .size();
    let too_large = |limit| Error::TooLarge {
        source_name: context.source_name.to_string(),
        path: file.path.clone(),
        size,
        limit,
    };
    if size > limits.max_file_bytes {
        return Err(too_large(limits.max_file_bytes));
    }
    if total_so_far.saturating_add(size) > limits.max_total_bytes {
        return Err(too_large(
            limits.max_total_bytes.saturating_sub(total_so_far),
        ));
    }
    let blob = repo
        .find_object(file.id)
        .map_err(|err| context.error(err))?;
    let write_error = |err: std::io::Error| context.message(format!("adding {}: {err}", file.path));
    match file.kind {
        FileKind::File { executable } => {
            let mode = if executable { 0o755 } else { 0o644 };
            let mut header = header(blob.data.len() as u64, mode, tar::EntryType::Regular);
            tar.append_data(&mut header, &file.path, blob.data.as_slice())
                .map_err(write_error)?;
            Ok(size)
        }
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
                return Ok(0);
            }
            let mut header = header(0, 0o777, tar::EntryType::Symlink);
            tar.append_link(&mut header, &file.path, &target)
                .map_err(write_error)?;
            Ok(0)
        }
    }
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
