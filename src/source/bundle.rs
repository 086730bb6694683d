//! Signed offline bundles: the artifacts of several sources in one OCI
//! image layout tarball, signed with an SSH key, for nodes without a
//! network path to their Git servers and registries.
//!
//! # Format
//! A plain (uncompressed) tar of an OCI image layout: `oci-layout`,
//! `index.json`, then `blobs/sha256/<hex>` in digest order, every header
//! with mode 0644, owner 0 and time 0, so the same inputs give the same
//! bytes (`oras`, `skopeo` and `crane` read it). `index.json` names two
//! manifests:
//! - the bundle (artifact type [`BUNDLE_ARTIFACT_TYPE`]): its config is
//!   the [`Contents`] (sequence, created-at, and per source its revision
//!   and digest), its layers the artifacts as kedge stores them;
//! - its signature (artifact type [`SIGNATURE_ARTIFACT_TYPE`], `subject`
//!   the bundle manifest): one layer, an armored SSHSIG (`ssh-keygen -Y
//!   sign -n kedge-bundle`) over the bundle manifest's bytes, which name
//!   the digest of every other blob.
//!
//! # Guarantees
//! [`open`] trusts nothing before it is checked: only the layout's own
//! entries (no `..`, no absolute path, no link, no other file), every
//! blob's sha256 equal to its name, the signature made in namespace
//! [`SIGNATURE_NAMESPACE`] by a key of the trusted keys directory, every
//! artifact unpacking under the rules of [`archive::extract`]. Blobs are
//! written only into a staging directory under `state_dir/bundles/`, which
//! is removed unless [`Opened::into_store`] moves them into the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::store::{hex, ArtifactStore};
use super::sync::{recorded_artifact, SyncOutcome};
use super::verify::{ssh::AllowedSigners, Refusal as SignatureRefusal};
use super::{archive, store, Artifact};
use crate::config::{Source, SourceRef};
use crate::state::SourceStatus;

/// The namespace of a bundle's SSH signature.
pub const SIGNATURE_NAMESPACE: &str = "kedge-bundle";
/// The artifact type of the bundle's manifest.
pub const BUNDLE_ARTIFACT_TYPE: &str = "application/vnd.kedge.bundle.v1";
/// The media type of the bundle's config blob, its [`Contents`].
pub const CONTENTS_MEDIA_TYPE: &str = "application/vnd.kedge.bundle.contents.v1+json";
/// The media type of each artifact layer.
pub const ARTIFACT_MEDIA_TYPE: &str = "application/vnd.kedge.bundle.artifact.v1.tar+gzip";
/// The artifact type of the signature's manifest.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.kedge.bundle.signature.v1";
/// The media type of the armored SSHSIG layer.
pub const SIGNATURE_MEDIA_TYPE: &str = "application/vnd.kedge.bundle.signature.v1+sshsig";
const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
const EMPTY_JSON: &[u8] = b"{}";
const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;
const SOURCE_ANNOTATION: &str = "dev.kedge.bundle.source";
const REVISION_ANNOTATION: &str = "dev.kedge.bundle.revision";
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The largest JSON blob (index, manifest, contents, signature) read.
const MAX_METADATA_BYTES: u64 = 4 << 20;
/// The most entries a bundle's tar may hold.
const MAX_ENTRIES: usize = 10_000;
/// The build inputs recorded for an artifact published from a bundle.
const BUNDLE_INPUTS: &str = "bundle";

/// What a bundle carries, signed as the config blob of its manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contents {
    /// Grows with every bundle of a fleet; a node refuses a source's
    /// artifact from a bundle older than the one it imported last.
    pub sequence: u64,
    /// RFC 3339, seconds.
    pub created_at: String,
    pub artifacts: Vec<CarriedArtifact>,
}

/// One source's artifact in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarriedArtifact {
    /// `kind/name`.
    pub source: String,
    pub revision: String,
    /// `sha256:<hex>` of the artifact, the layer's digest.
    pub digest: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Manifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    #[serde(rename = "artifactType", default)]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    manifests: Vec<Descriptor>,
}

/// Why a bundle is refused. Nothing of a refused bundle reaches the store.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("it cannot be read as a tar archive (truncated?): {0}")]
    Unreadable(String),
    #[error("entry {entry:?} climbs out of the bundle (path traversal)")]
    PathTraversal { entry: String },
    #[error("entry {entry:?} is not part of an OCI image layout")]
    UnexpectedEntry { entry: String },
    #[error("entry {entry:?} appears twice")]
    Duplicate { entry: String },
    #[error("it holds more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("blob sha256:{name} holds other bytes (sha256:{actual}): it was tampered with")]
    Tampered { name: String, actual: String },
    #[error("blob {digest} ({what}) is missing: truncated?")]
    MissingBlob { digest: String, what: String },
    #[error("{what} is {size} bytes, over the {limit}-byte limit")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("{what}: {message}")]
    Malformed { what: String, message: String },
    #[error("it is not signed (no signature manifest for the bundle)")]
    Unsigned,
    #[error("its signature: {0}")]
    Signature(#[from] SignatureRefusal),
    #[error("trusted keys {}: {message}", dir.display())]
    TrustedKeys { dir: PathBuf, message: String },
    #[error("the artifact of {source_name} is unsafe: {message}")]
    UnsafeArtifact {
        source_name: String,
        message: String,
    },
    #[error("{source_name}: sequence {sequence} is older than {imported}, imported before (a downgrade; --allow-downgrade to force)")]
    Downgrade {
        source_name: String,
        sequence: u64,
        imported: u64,
    },
    #[error("{source_name}: sequence {sequence} was imported before with another artifact ({imported_digest}); a bundle needs a higher sequence")]
    Replay {
        source_name: String,
        sequence: u64,
        imported_digest: String,
    },
    #[error("{0}")]
    Io(String),
}

/// A refused bundle or a bundle that could not be written.
#[derive(Debug, thiserror::Error)]
#[error("bundle {}: {refusal}", file.display())]
pub struct Error {
    pub file: PathBuf,
    pub refusal: Refusal,
}

impl Error {
    fn new(file: &Path, refusal: Refusal) -> Error {
        Error {
            file: file.to_path_buf(),
            refusal,
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

/// One source's artifact to pack.
#[derive(Debug, Clone)]
pub struct Packed {
    pub source: SourceRef,
    pub artifact: Artifact,
}

/// What [`create`] needs besides the artifacts.
pub struct CreateOptions<'a> {
    /// An OpenSSH private key (`ssh-keygen -t ed25519`), not encrypted.
    pub sign_key: &'a Path,
    pub sequence: u64,
    pub created_at: SystemTime,
}

/// Writes a bundle of `artifacts` (each verified against its digest) to
/// `out`, through a temporary file beside it; returns its contents.
pub fn create(artifacts: &[Packed], options: &CreateOptions<'_>, out: &Path) -> Result<Contents> {
    let fail = |refusal| Error::new(out, refusal);
    let key = read_signing_key(options.sign_key).map_err(fail)?;
    let (layers, carried): (Vec<Descriptor>, Vec<CarriedArtifact>) = artifacts
        .iter()
        .map(artifact_layer)
        .collect::<Result<Vec<_>, Refusal>>()
        .map_err(fail)?
        .into_iter()
        .unzip();
    let created_at = humantime::format_rfc3339_seconds(options.created_at).to_string();
    let contents = Contents {
        sequence: options.sequence,
        created_at: created_at.clone(),
        artifacts: carried,
    };
    let contents_json = to_json(&contents);
    let manifest_json = to_json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.to_string(),
        artifact_type: Some(BUNDLE_ARTIFACT_TYPE.to_string()),
        config: memory_descriptor(CONTENTS_MEDIA_TYPE, &contents_json),
        layers,
        subject: None,
        annotations: BTreeMap::from([(CREATED_ANNOTATION.to_string(), created_at.clone())]),
    });
    let signature = key
        .sign(
            SIGNATURE_NAMESPACE,
            ssh_key::HashAlg::Sha512,
            &manifest_json,
        )
        .and_then(|sig| sig.to_pem(ssh_key::LineEnding::LF))
        .map_err(|err| {
            fail(Refusal::Io(format!(
                "signing with {}: {err}",
                options.sign_key.display()
            )))
        })?
        .into_bytes();
    let manifest = manifest_descriptor(&manifest_json, BUNDLE_ARTIFACT_TYPE, "bundle");
    let signature_manifest_json = to_json(&Manifest {
        schema_version: 2,
        media_type: MANIFEST_MEDIA_TYPE.to_string(),
        artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.to_string()),
        config: memory_descriptor(EMPTY_MEDIA_TYPE, EMPTY_JSON),
        layers: vec![memory_descriptor(SIGNATURE_MEDIA_TYPE, &signature)],
        subject: Some(Descriptor {
            artifact_type: Some(BUNDLE_ARTIFACT_TYPE.to_string()),
            ..memory_descriptor(MANIFEST_MEDIA_TYPE, &manifest_json)
        }),
        annotations: BTreeMap::from([(CREATED_ANNOTATION.to_string(), created_at)]),
    });
    let index = Index {
        schema_version: 2,
        media_type: Some(INDEX_MEDIA_TYPE.to_string()),
        manifests: vec![
            manifest,
            manifest_descriptor(
                &signature_manifest_json,
                SIGNATURE_ARTIFACT_TYPE,
                "signature",
            ),
        ],
    };
    let mut blobs: BTreeMap<String, BlobSource<'_>> = [
        contents_json,
        manifest_json,
        signature,
        signature_manifest_json,
        EMPTY_JSON.to_vec(),
    ]
    .into_iter()
    .map(|bytes| (hex(&Sha256::digest(&bytes)), BlobSource::Memory(bytes)))
    .collect();
    for packed in artifacts {
        blobs.insert(
            packed.artifact.digest.clone(),
            BlobSource::File(&packed.artifact.path),
        );
    }
    write_layout(out, &to_json(&index), &blobs)
        .map_err(|err| fail(Refusal::Io(err.to_string())))?;
    Ok(contents)
}

/// The layer of one artifact (verified against its digest) and its line
/// in the contents.
fn artifact_layer(packed: &Packed) -> Result<(Descriptor, CarriedArtifact), Refusal> {
    let artifact = &packed.artifact;
    store::verify(artifact).map_err(|damage| {
        Refusal::Io(format!(
            "artifact {} of {} {damage}",
            artifact.path.display(),
            packed.source
        ))
    })?;
    let size = std::fs::metadata(&artifact.path)
        .map_err(|err| Refusal::Io(format!("{}: {err}", artifact.path.display())))?
        .len();
    let digest = format!("sha256:{}", artifact.digest);
    let title = format!(
        "{}-{}.tar.gz",
        packed.source.kind.as_str(),
        packed.source.name
    );
    let layer = Descriptor {
        media_type: ARTIFACT_MEDIA_TYPE.to_string(),
        digest: digest.clone(),
        size,
        artifact_type: None,
        annotations: BTreeMap::from([
            (SOURCE_ANNOTATION.to_string(), packed.source.to_string()),
            (REVISION_ANNOTATION.to_string(), artifact.revision.clone()),
            (TITLE_ANNOTATION.to_string(), title),
        ]),
    };
    let carried = CarriedArtifact {
        source: packed.source.to_string(),
        revision: artifact.revision.clone(),
        digest,
        size,
    };
    Ok((layer, carried))
}

/// How `index.json` names a manifest: its artifact type and a ref name.
fn manifest_descriptor(json: &[u8], artifact_type: &str, ref_name: &str) -> Descriptor {
    Descriptor {
        artifact_type: Some(artifact_type.to_string()),
        annotations: BTreeMap::from([(REF_NAME_ANNOTATION.to_string(), ref_name.to_string())]),
        ..memory_descriptor(MANIFEST_MEDIA_TYPE, json)
    }
}

enum BlobSource<'a> {
    Memory(Vec<u8>),
    File(&'a Path),
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

fn memory_descriptor(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: format!("sha256:{}", hex(&Sha256::digest(bytes))),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

fn read_signing_key(path: &Path) -> Result<ssh_key::PrivateKey, Refusal> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| Refusal::Io(format!("signing key {}: {err}", path.display())))?;
    let key = ssh_key::PrivateKey::from_openssh(&text).map_err(|err| {
        Refusal::Io(format!(
            "signing key {}: not an OpenSSH private key: {err}",
            path.display()
        ))
    })?;
    if key.is_encrypted() {
        return Err(Refusal::Io(format!(
            "signing key {} is encrypted; kedge signs with an unencrypted key (keep it offline)",
            path.display()
        )));
    }
    Ok(key)
}

fn write_layout(
    out: &Path,
    index: &[u8],
    blobs: &BTreeMap<String, BlobSource<'_>>,
) -> std::io::Result<()> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".kedge-bundle-")
        .tempfile_in(&dir)?;
    {
        let mut tar = tar::Builder::new(std::io::BufWriter::new(temp.as_file_mut()));
        append_bytes(&mut tar, "oci-layout", OCI_LAYOUT)?;
        append_bytes(&mut tar, "index.json", index)?;
        for (digest, blob) in blobs {
            let path = format!("blobs/sha256/{digest}");
            match blob {
                BlobSource::Memory(bytes) => append_bytes(&mut tar, &path, bytes)?,
                BlobSource::File(file) => {
                    let file = File::open(file)?;
                    let size = file.metadata()?.len();
                    tar.append(&layout_header(&path, size)?, file)?;
                }
            }
        }
        tar.into_inner()?.flush()?;
    }
    temp.as_file().sync_all()?;
    temp.persist(out).map_err(|err| err.error)?;
    Ok(())
}

fn layout_header(path: &str, size: u64) -> std::io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(path)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    Ok(header)
}

fn append_bytes(
    tar: &mut tar::Builder<impl Write>,
    path: &str,
    bytes: &[u8],
) -> std::io::Result<()> {
    tar.append(&layout_header(path, bytes.len() as u64)?, bytes)
}

/// A verified bundle whose artifacts wait in a staging directory.
#[derive(Debug)]
pub struct Opened {
    pub file: PathBuf,
    pub contents: Contents,
    /// The key that signed it, as `ssh-keygen -l` names it.
    pub signer: String,
    /// sha256 of the bundle's manifest: names this bundle.
    pub manifest_digest: String,
    staging: tempfile::TempDir,
}

/// A source's artifact of an [`Opened`] bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried {
    pub source: SourceRef,
    pub revision: String,
    /// Lowercase hex, as the store names artifacts.
    pub digest: String,
}

impl Opened {
    /// The artifacts it carries, by source.
    pub fn carried(&self) -> Vec<Carried> {
        self.contents
            .artifacts
            .iter()
            .filter_map(|artifact| {
                Some(Carried {
                    source: SourceRef::parse(&artifact.source)?,
                    revision: artifact.revision.clone(),
                    digest: artifact.digest.strip_prefix("sha256:")?.to_string(),
                })
            })
            .collect()
    }

    /// Moves the artifacts of `sources` into the store (each renamed to
    /// its digest's name, so a reader sees all of a file or none) and
    /// returns them; the staging directory goes when `self` is dropped.
    pub fn into_store(&self, state_dir: &Path, sources: &[Carried]) -> Result<Vec<Artifact>> {
        let store = ArtifactStore::new(state_dir);
        let mut stored = Vec::new();
        for carried in sources {
            let (kind, name) = (carried.source.kind.as_str(), carried.source.name.as_str());
            let staged = self.staging.path().join(&carried.digest);
            let dir = store.source_dir(kind, name);
            std::fs::create_dir_all(&dir).map_err(|err| self.io(&dir, err))?;
            // A copy, not a rename: two sources may carry the same artifact.
            let temp = store
                .temp_path(kind, name)
                .map_err(|err| self.io(&dir, err))?;
            std::fs::copy(&staged, &temp).map_err(|err| self.io(&temp, err))?;
            let path = store
                .commit(kind, name, &temp, &carried.digest)
                .map_err(|err| self.io(&temp, err))?;
            stored.push(Artifact {
                revision: carried.revision.clone(),
                digest: carried.digest.clone(),
                path,
            });
        }
        Ok(stored)
    }

    fn io(&self, path: &Path, err: impl std::fmt::Display) -> Error {
        Error::new(
            &self.file,
            Refusal::Io(format!("{}: {err}", path.display())),
        )
    }
}

/// Reads and verifies the bundle at `file` against the keys in
/// `trusted_keys_dir`, staging its blobs under `state_dir/bundles/`.
pub fn open(file: &Path, trusted_keys_dir: &Path, state_dir: &Path) -> Result<Opened> {
    let fail = |refusal| Error::new(file, refusal);
    let trusted = AllowedSigners::read_dir(trusted_keys_dir).map_err(|message| {
        fail(Refusal::TrustedKeys {
            dir: trusted_keys_dir.to_path_buf(),
            message,
        })
    })?;
    let staging_root = state_dir.join("bundles");
    std::fs::create_dir_all(&staging_root)
        .map_err(|err| fail(Refusal::Io(format!("{}: {err}", staging_root.display()))))?;
    let staging = tempfile::Builder::new()
        .prefix(".incoming-")
        .tempdir_in(&staging_root)
        .map_err(|err| fail(Refusal::Io(format!("{}: {err}", staging_root.display()))))?;
    let layout = unpack_layout(file, staging.path()).map_err(fail)?;
    let checked = check_layout(&layout, staging.path(), &trusted).map_err(fail)?;
    check_artifacts(&checked.contents, staging.path(), state_dir).map_err(fail)?;
    Ok(Opened {
        file: file.to_path_buf(),
        contents: checked.contents,
        signer: checked.signer,
        manifest_digest: checked.manifest_digest,
        staging,
    })
}

/// The small files of the layout, read into memory, and the blobs staged.
struct Layout {
    index: Vec<u8>,
    oci_layout: Vec<u8>,
    blobs: BTreeMap<String, u64>,
}

fn unpack_layout(file: &Path, staging: &Path) -> Result<Layout, Refusal> {
    let unreadable = |err: std::io::Error| Refusal::Unreadable(err.to_string());
    let reader = File::open(file).map_err(|err| Refusal::Io(err.to_string()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(reader));
    let mut index = None;
    let mut oci_layout = None;
    let mut blobs = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        if seen.len() >= MAX_ENTRIES {
            return Err(Refusal::TooManyEntries);
        }
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = layout_path(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_dir() && (path == "blobs" || path == "blobs/sha256") {
            continue;
        }
        if !seen.insert(path.clone()) {
            return Err(Refusal::Duplicate { entry: raw });
        }
        if !matches!(kind, tar::EntryType::Regular | tar::EntryType::Continuous) {
            return Err(Refusal::UnexpectedEntry { entry: raw });
        }
        let size = entry.size();
        match path.as_str() {
            "index.json" => index = Some(read_small(&mut entry, &raw, size)?),
            "oci-layout" => oci_layout = Some(read_small(&mut entry, &raw, size)?),
            _ => {
                let name = path
                    .strip_prefix("blobs/sha256/")
                    .filter(|name| is_hex_digest(name))
                    .ok_or_else(|| Refusal::UnexpectedEntry { entry: raw.clone() })?;
                stage_blob(&mut entry, name, &staging.join(name))?;
                blobs.insert(name.to_string(), size);
            }
        }
    }
    Ok(Layout {
        index: index.ok_or_else(|| missing_file("index.json"))?,
        oci_layout: oci_layout.ok_or_else(|| missing_file("oci-layout"))?,
        blobs,
    })
}

fn missing_file(name: &str) -> Refusal {
    Refusal::Malformed {
        what: name.to_string(),
        message: "missing: not an OCI image layout, or truncated".to_string(),
    }
}

/// The entry's path without a leading `./`; a path climbing out or
/// absolute is refused.
fn layout_path(raw: &str) -> Result<String, Refusal> {
    let mut parts = Vec::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                return Err(Refusal::PathTraversal {
                    entry: raw.to_string(),
                })
            }
        }
    }
    Ok(parts.join("/"))
}

fn is_hex_digest(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn read_small(reader: &mut impl Read, what: &str, size: u64) -> Result<Vec<u8>, Refusal> {
    if size > MAX_METADATA_BYTES {
        return Err(Refusal::TooLarge {
            what: what.to_string(),
            size,
            limit: MAX_METADATA_BYTES,
        });
    }
    let mut bytes = Vec::new();
    reader
        .take(size)
        .read_to_end(&mut bytes)
        .map_err(|err| Refusal::Unreadable(err.to_string()))?;
    if bytes.len() as u64 != size {
        return Err(Refusal::Unreadable(format!("{what} ends early")));
    }
    Ok(bytes)
}

/// Copies a blob to `dest`, hashing it; its sha256 must be its name.
fn stage_blob(reader: &mut impl Read, name: &str, dest: &Path) -> Result<(), Refusal> {
    let mut out =
        File::create(dest).map_err(|err| Refusal::Io(format!("{}: {err}", dest.display())))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(Refusal::Unreadable(err.to_string())),
        };
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read])
            .map_err(|err| Refusal::Io(format!("{}: {err}", dest.display())))?;
    }
    let actual = hex(&hasher.finalize());
    if actual != name {
        return Err(Refusal::Tampered {
            name: name.to_string(),
            actual,
        });
    }
    Ok(())
}

struct Checked {
    contents: Contents,
    signer: String,
    manifest_digest: String,
}

/// The signature first, then everything the signed manifest names.
fn check_layout(
    layout: &Layout,
    staging: &Path,
    trusted: &AllowedSigners,
) -> Result<Checked, Refusal> {
    let _: serde_json::Value = parse_json(&layout.oci_layout, "oci-layout")?;
    let index: Index = parse_json(&layout.index, "index.json")?;
    let by_type = |wanted: &str| {
        index
            .manifests
            .iter()
            .find(|m| m.artifact_type.as_deref() == Some(wanted))
    };
    let bundle = by_type(BUNDLE_ARTIFACT_TYPE).ok_or_else(|| Refusal::Malformed {
        what: "index.json".to_string(),
        message: "it names no kedge bundle manifest".to_string(),
    })?;
    let manifest_bytes = read_blob(layout, staging, bundle, "the bundle manifest")?;
    let signature_manifest = by_type(SIGNATURE_ARTIFACT_TYPE).ok_or(Refusal::Unsigned)?;
    let signature_manifest: Manifest = parse_json(
        &read_blob(
            layout,
            staging,
            signature_manifest,
            "the signature manifest",
        )?,
        "the signature manifest",
    )?;
    if signature_manifest.subject.as_ref().map(|s| &s.digest) != Some(&bundle.digest) {
        return Err(Refusal::Unsigned);
    }
    let signature_layer = signature_manifest
        .layers
        .iter()
        .find(|layer| layer.media_type == SIGNATURE_MEDIA_TYPE)
        .ok_or(Refusal::Unsigned)?;
    let armored = read_blob(layout, staging, signature_layer, "the signature")?;
    let signer = trusted.verify_in(SIGNATURE_NAMESPACE, &armored, &manifest_bytes)?;
    let manifest: Manifest = parse_json(&manifest_bytes, "the bundle manifest")?;
    if manifest.config.media_type != CONTENTS_MEDIA_TYPE {
        return Err(malformed(
            "the bundle manifest",
            "its config is not a kedge bundle's contents",
        ));
    }
    let contents: Contents = parse_json(
        &read_blob(layout, staging, &manifest.config, "the contents")?,
        "the contents",
    )?;
    let layers: BTreeSet<(&str, u64)> = manifest
        .layers
        .iter()
        .map(|layer| (layer.digest.as_str(), layer.size))
        .collect();
    let mut sources = BTreeSet::new();
    for artifact in &contents.artifacts {
        let what = format!("the artifact of {}", artifact.source);
        if SourceRef::parse(&artifact.source).is_none() {
            return Err(malformed(
                &what,
                "not a kind/name of a source kind kedge knows",
            ));
        }
        if !sources.insert(&artifact.source) {
            return Err(malformed(&what, "the source appears twice"));
        }
        if !layers.contains(&(artifact.digest.as_str(), artifact.size)) {
            return Err(malformed(&what, "no layer of the manifest is it"));
        }
        let name = blob_name(&artifact.digest)?;
        if layout.blobs.get(name) != Some(&artifact.size) {
            return Err(Refusal::MissingBlob {
                digest: artifact.digest.clone(),
                what,
            });
        }
    }
    Ok(Checked {
        contents,
        signer,
        manifest_digest: bundle.digest.clone(),
    })
}

fn malformed(what: &str, message: &str) -> Refusal {
    Refusal::Malformed {
        what: what.to_string(),
        message: message.to_string(),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(bytes).map_err(|err| Refusal::Malformed {
        what: what.to_string(),
        message: err.to_string(),
    })
}

fn blob_name(digest: &str) -> Result<&str, Refusal> {
    digest
        .strip_prefix("sha256:")
        .filter(|name| is_hex_digest(name))
        .ok_or_else(|| malformed(digest, "not a sha256 digest"))
}

fn read_blob(
    layout: &Layout,
    staging: &Path,
    descriptor: &Descriptor,
    what: &str,
) -> Result<Vec<u8>, Refusal> {
    let name = blob_name(&descriptor.digest)?;
    match layout.blobs.get(name) {
        Some(&size) if size == descriptor.size => {}
        _ => {
            return Err(Refusal::MissingBlob {
                digest: descriptor.digest.clone(),
                what: what.to_string(),
            })
        }
    }
    let file = File::open(staging.join(name)).map_err(|err| Refusal::Io(err.to_string()))?;
    read_small(&mut std::io::BufReader::new(file), what, descriptor.size)
}

/// Unpacks every artifact of files once into scratch space under the
/// rules every unpacking follows: a bundle whose artifact would be refused
/// later is refused now. (A chart's artifact is the package Helm's loader
/// reads in memory; a Helm repository's, its index.)
fn check_artifacts(contents: &Contents, staging: &Path, state_dir: &Path) -> Result<(), Refusal> {
    for artifact in &contents.artifacts {
        let holds_files = SourceRef::parse(&artifact.source).is_some_and(|s| s.kind.holds_files());
        if !holds_files {
            continue;
        }
        let name = blob_name(&artifact.digest)?;
        let scratch = tempfile::Builder::new()
            .prefix(".check-")
            .tempdir_in(state_dir.join("bundles"))
            .map_err(|err| Refusal::Io(err.to_string()))?;
        archive::extract(&staging.join(name), scratch.path()).map_err(|err| {
            Refusal::UnsafeArtifact {
                source_name: artifact.source.clone(),
                message: err.to_string(),
            }
        })?;
    }
    Ok(())
}

/// The artifact a source's last imported bundle gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    pub artifact: Artifact,
    pub sequence: u64,
    /// Milliseconds since the epoch.
    pub imported_at: i64,
}

/// The outcome of a sync that a bundle decides: for a bundle-only source
/// always (its imported artifact, or an error when none was imported); for
/// another, when a bundle was imported after its last new artifact, which
/// the bundle's then replaces. `None`: fetch as usual.
pub(super) fn bundle_outcome(
    source: &Source,
    previous: Option<&SourceStatus>,
    imported: Option<&Imported>,
) -> Option<super::Result<SyncOutcome>> {
    let bundle_only = source.is_bundle_only();
    let Some(imported) = imported else {
        return bundle_only.then(|| {
            Err(super::Error::NoBundle {
                kind: source.kind(),
                source_name: source.name().to_string(),
            })
        });
    };
    let current = previous.and_then(recorded_artifact);
    let is_current = current
        .as_ref()
        .is_some_and(|c| c.digest == imported.artifact.digest);
    let newer = previous
        .and_then(|p| p.last_artifact_at)
        .is_none_or(|at| imported.imported_at > at);
    if !bundle_only && (is_current || !newer) {
        return None;
    }
    if let Err(damage) = store::verify(&imported.artifact) {
        return Some(Err(super::Error::ArtifactDamaged {
            path: imported.artifact.path.clone(),
            damage,
        }));
    }
    let artifact = imported.artifact.clone();
    let inputs = BUNDLE_INPUTS.to_string();
    Some(Ok(if is_current {
        SyncOutcome::Unchanged { artifact, inputs }
    } else {
        SyncOutcome::NewArtifact { artifact, inputs }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn sources() -> Config {
        let text = "[git.offline]\nurl = \"bundle:\"\n[git.online]\nurl = \"https://git.example.org/fleet.git\"\n";
        Config::parse(Path::new("kedge.toml"), text).unwrap_or_else(|err| panic!("{err}"))
    }

    fn status(digest: &str, last_artifact_at: i64) -> SourceStatus {
        SourceStatus {
            kind: "git".into(),
            name: "online".into(),
            url: String::new(),
            revision: Some("main@sha1:1".into()),
            artifact_digest: Some(digest.into()),
            artifact_path: Some(PathBuf::from("/nonexistent")),
            artifact_inputs: Some("i".into()),
            last_attempt_at: Some(last_artifact_at),
            last_success_at: Some(last_artifact_at),
            last_artifact_at: Some(last_artifact_at),
            ready: true,
            reason: "Succeeded".into(),
            message: String::new(),
            consecutive_failures: 0,
        }
    }

    #[test]
    fn a_bundle_decides_for_a_bundle_only_source_and_once_for_another() -> std::io::Result<()> {
        let config = sources();
        let offline = &config.sources
            [&SourceRef::parse("git/offline").unwrap_or_else(|| panic!("git/offline"))];
        let online = &config.sources
            [&SourceRef::parse("git/online").unwrap_or_else(|| panic!("git/online"))];
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("a.tar.gz");
        std::fs::write(&path, b"artifact")?;
        let imported = Imported {
            artifact: Artifact {
                revision: "main@sha1:2".into(),
                digest: hex(&Sha256::digest(b"artifact")),
                path,
            },
            sequence: 3,
            imported_at: 100,
        };
        let digest = imported.artifact.digest.clone();
        let new = |o: Option<super::super::Result<SyncOutcome>>| {
            matches!(o, Some(Ok(SyncOutcome::NewArtifact { .. })))
        };
        assert!(matches!(
            bundle_outcome(offline, None, None),
            Some(Err(super::super::Error::NoBundle { .. }))
        ));
        assert_eq!(bundle_outcome(online, None, None).map(|o| o.is_ok()), None);
        assert!(new(bundle_outcome(
            offline,
            Some(&status("old", 500)),
            Some(&imported)
        )));
        assert!(matches!(
            bundle_outcome(offline, Some(&status(&digest, 500)), Some(&imported)),
            Some(Ok(SyncOutcome::Unchanged { .. }))
        ));
        // Imported after the source's last new artifact: published once.
        assert!(new(bundle_outcome(
            online,
            Some(&status("old", 50)),
            Some(&imported)
        )));
        // A newer fetch, or the bundle's own artifact current: fetch as usual.
        assert!(bundle_outcome(online, Some(&status("newer", 500)), Some(&imported)).is_none());
        assert!(bundle_outcome(online, Some(&status(&digest, 50)), Some(&imported)).is_none());
        Ok(())
    }

    #[test]
    fn layout_paths_keep_their_parts_and_refuse_traversal() {
        assert_eq!(
            layout_path("./blobs/sha256/ab").ok().as_deref(),
            Some("blobs/sha256/ab")
        );
        assert!(matches!(
            layout_path("blobs/../../etc/passwd"),
            Err(Refusal::PathTraversal { .. })
        ));
        assert!(matches!(
            layout_path("/etc/passwd"),
            Err(Refusal::PathTraversal { .. })
        ));
    }
}
