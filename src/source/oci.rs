//! OCI artifact sources (kind `oci`, Flux's OCIRepository): an artifact in
//! Flux's format — config media type [`FLUX_CONFIG_MEDIA_TYPE`], one
//! [`FLUX_CONTENT_MEDIA_TYPE`] layer — pulled from a registry through the
//! one registry client ([`Registry`]), and `kedge push artifact`, which
//! makes the same artifact from a directory.
//!
//! # Design
//! A poll resolves the reference to a manifest digest with one HEAD
//! request (a `semver` range lists the tags first; a `digest` needs no
//! request). The revision is `TAG@sha256:<manifest digest>` (`sha256:…`
//! for a digest): an unchanged one with the same inputs (layer selector,
//! key, limits) and an intact artifact ends the sync there, without a
//! download. Otherwise the manifest and its selected layer are pulled
//! (size and digest checked), the signature is verified when a key is
//! configured, and the layer goes through the artifact writer: `extract`
//! appends its files ([`archive::append_tar_gz`], the unpacking rules),
//! `copy` makes it the artifact's one file.
//!
//! # Verification
//! cosign's "simple signing" format, offline: the tag
//! `sha256-<hex>.sig` of the same repository holds layers whose payload
//! names the signed manifest digest and whose annotation
//! `dev.cosignproject.cosign/signature` is a base64 ECDSA P-256 SHA-256
//! signature over the payload. One signature by the configured public key
//! for this digest is enough; none, or none valid, refuses the sync before
//! any artifact exists. Checked with ring, already in the tree.
//!
//! # Current limitations
//! - Signatures in cosign's newer bundle format (OCI referrers), keyless
//!   signatures (Fulcio, Rekor) and key types other than ECDSA P-256 are not
//!   verified: such an artifact is refused as unsigned.
//! - A damaged artifact is rebuilt by the next sync, over the network.
//! - An extracted layer is held in memory while its entries are sorted
//!   (bounded by the limits).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::archive::{self, ArtifactWriter, READING_FOREIGN};
use super::helm_oci::{registry_auth, Connection, Registry};
use super::store::{hex, ArtifactStore};
use super::sync::{ignore_and_limits_fingerprint, unchanged_artifact};
use super::{Artifact, Error, Limits, Result, SyncOutcome};
use crate::config::{LayerOperation, OciRef, OciSource, SourceKind};
use crate::state::SourceStatus;

pub use crate::config::FLUX_CONTENT_MEDIA_TYPE;
/// The config media type of Flux's artifacts.
pub const FLUX_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.flux.config.v1+json";
/// The media type of a cosign "simple signing" payload layer.
pub const COSIGN_PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature of the payload.
pub const COSIGN_SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation whose value names a copied layer's file.
const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// A signature payload is a small JSON document.
const MAX_PAYLOAD_BYTES: u64 = 64 << 10;
const KIND: SourceKind = SourceKind::Oci;

/// Resolves `source`'s reference and returns its current artifact,
/// pulling only when the manifest digest (or an input) changed.
pub fn sync_oci_source(
    source: &OciSource,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    limits: Limits,
) -> Result<SyncOutcome> {
    let registry = connect(source)?;
    let repository = registry.repository("");
    let key = source
        .cosign_public_key_file
        .as_deref()
        .map(|file| CosignKey::read(source, file))
        .transpose()?;
    let inputs = inputs(source, key.as_ref(), limits);
    let (tag, digest) = resolve(&registry, &repository, source)?;
    let revision = match &tag {
        Some(tag) => format!("{tag}@{digest}"),
        None => digest.clone(),
    };
    if let Some(artifact) = previous.and_then(|p| unchanged_artifact(p, &revision, &inputs)) {
        return Ok(SyncOutcome::Unchanged { artifact, inputs });
    }
    let reference = registry.at_digest(&repository, &digest);
    let manifest = registry
        .image_manifest(&reference)?
        .ok_or_else(|| registry.error(&revision, "no such manifest"))?;
    if let Some(key) = &key {
        verify_signature(&registry, &repository, &digest, key, source)?;
    }
    let layer = select_layer(source, &manifest, &revision)?;
    let blob = registry.blob(&reference, layer, limits.max_total_bytes)?;
    let artifact = store_layer(source, state_dir, limits, &blob, layer, revision)?;
    Ok(SyncOutcome::NewArtifact { artifact, inputs })
}

fn connect(source: &OciSource) -> Result<Registry> {
    let auth = registry_auth(
        KIND,
        &source.name,
        source.username.as_deref(),
        source.password_file.as_deref(),
        None,
    )?;
    let connection = Connection {
        url: &source.url,
        auth,
        ca_file: source.ca_file.as_deref(),
        insecure: source.insecure,
        timeout: source.timeout,
    };
    Registry::connect(connection, KIND, &source.name)
}

/// What the artifact is built from besides the manifest: a change of
/// either builds (and verifies) again.
fn inputs(source: &OciSource, key: Option<&CosignKey>, limits: Limits) -> String {
    let operation = match source.layer_selector.operation {
        LayerOperation::Extract => "extract",
        LayerOperation::Copy => "copy",
    };
    let parts = [
        source.layer_selector.media_type.clone(),
        operation.to_string(),
        key.map(|key| key.fingerprint.clone()).unwrap_or_default(),
    ];
    ignore_and_limits_fingerprint(&parts, limits)
}

/// The tag followed (`None` for a digest) and the manifest digest.
fn resolve(
    registry: &Registry,
    repository: &str,
    source: &OciSource,
) -> Result<(Option<String>, String)> {
    let tag = match &source.reference {
        OciRef::Digest(digest) => return Ok((None, digest.clone())),
        OciRef::Tag(tag) => tag.clone(),
        OciRef::Semver(range) => {
            let tags = registry.tags(repository)?;
            let (index, _) = range
                .highest(tags.iter().map(String::as_str))
                .ok_or_else(|| {
                    registry.error(
                        &format!("resolving semver {range}"),
                        format!("no tag of {repository} is in range"),
                    )
                })?;
            tags[index].clone()
        }
    };
    let digest = registry.digest_of(&registry.tagged(repository, &tag))?;
    Ok((Some(tag), digest))
}

fn select_layer<'m>(
    source: &OciSource,
    manifest: &'m OciImageManifest,
    revision: &str,
) -> Result<&'m OciDescriptor> {
    let wanted = &source.layer_selector.media_type;
    manifest
        .layers
        .iter()
        .find(|layer| &layer.media_type == wanted)
        .ok_or_else(|| Error::OciArtifact {
            source_name: source.name.clone(),
            url: source.url.clone(),
            message: format!("{revision} has no layer of media type {wanted} (layer_selector)"),
        })
}

fn store_layer(
    source: &OciSource,
    state_dir: &Path,
    limits: Limits,
    blob: &[u8],
    layer: &OciDescriptor,
    revision: String,
) -> Result<Artifact> {
    let origin = PathBuf::from(format!("{}@{}", source.url, layer.digest));
    let fill = |writer: &mut ArtifactWriter<'_>| match source.layer_selector.operation {
        LayerOperation::Extract => archive::append_tar_gz(&origin, blob, writer),
        LayerOperation::Copy => {
            writer.append_file(&copied_name(layer), false, blob.len() as u64, blob)
        }
    };
    let built = ArtifactStore::new(state_dir).build(KIND.as_str(), &source.name, limits, fill);
    let (digest, path) = built.map_err(|err| match err {
        Error::Io {
            action: READING_FOREIGN,
            source: cause,
            ..
        } => Error::OciArtifact {
            source_name: source.name.clone(),
            url: source.url.clone(),
            message: format!("layer {} is not a tar.gz: {cause}", layer.digest),
        },
        other => other,
    })?;
    Ok(Artifact {
        revision,
        digest,
        path,
    })
}

/// The file name of a copied layer: its title annotation when that is a
/// plain file name, else `layer`.
fn copied_name(layer: &OciDescriptor) -> String {
    layer
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(TITLE_ANNOTATION))
        .filter(|title| {
            !title.is_empty() && *title != "." && *title != ".." && !title.contains(['/', '\0'])
        })
        .cloned()
        .unwrap_or_else(|| "layer".to_string())
}

/// A cosign public key: ECDSA P-256, PEM (`cosign generate-key-pair`).
pub struct CosignKey {
    path: PathBuf,
    /// The uncompressed point, as ring reads it.
    point: Vec<u8>,
    /// sha256 of the point, a build input.
    fingerprint: String,
}

/// The DER of a P-256 SubjectPublicKeyInfo up to the point: the
/// algorithm (id-ecPublicKey, prime256v1) and the bit string's header.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl CosignKey {
    fn read(source: &OciSource, path: &Path) -> Result<CosignKey> {
        let pem = super::read_credential_file(KIND, &source.name, path)?;
        CosignKey::parse(path, &pem).map_err(|why| Error::Verification {
            source_name: source.name.clone(),
            url: source.url.clone(),
            message: format!("{}: {why}", path.display()),
        })
    }

    /// The key in the PEM `PUBLIC KEY` block `pem`.
    pub fn parse(path: &Path, pem: &[u8]) -> std::result::Result<CosignKey, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "not a PEM file".to_string())?;
        let body = text
            .split("-----BEGIN PUBLIC KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END PUBLIC KEY-----").next())
            .ok_or_else(|| "no PEM PUBLIC KEY block".to_string())?;
        let base64: String = body.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map_err(|err| format!("bad PEM: {err}"))?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX)
            .filter(|point| point.len() == 65 && point[0] == 4)
            .ok_or_else(|| "not an ECDSA P-256 public key (cosign's key type)".to_string())?;
        Ok(CosignKey {
            path: path.to_path_buf(),
            point: point.to_vec(),
            fingerprint: hex(&Sha256::digest(point)),
        })
    }

    /// Whether `signature` (base64 DER) signs `payload` with this key.
    pub fn verifies(&self, payload: &[u8], signature: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            &self.point,
        )
        .verify(payload, &signature)
        .is_ok()
    }
}

/// The tag cosign stores the signatures of manifest `digest` under.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replace(':', "-"))
}

/// The parts of a cosign "simple signing" payload that are checked.
#[derive(Deserialize)]
struct SimpleSigning {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: SignedImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct SignedImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// Whether `payload` is a cosign signature payload for `digest`.
fn payload_names(payload: &[u8], digest: &str) -> bool {
    serde_json::from_slice::<SimpleSigning>(payload).is_ok_and(|signed| {
        signed.critical.kind == "cosign container image signature"
            && signed.critical.image.digest == digest
    })
}

/// Refuses `digest` unless its `.sig` tag holds a payload for it signed
/// by `key`.
fn verify_signature(
    registry: &Registry,
    repository: &str,
    digest: &str,
    key: &CosignKey,
    source: &OciSource,
) -> Result<()> {
    let refused = |message: String| Error::Verification {
        source_name: source.name.clone(),
        url: source.url.clone(),
        message,
    };
    let tag = signature_tag(digest);
    let reference = registry.tagged(repository, &tag);
    let Some(manifest) = registry.image_manifest(&reference)? else {
        return Err(refused(format!(
            "{digest} is not signed: the repository has no {tag}"
        )));
    };
    let mut checked = 0;
    for layer in manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == COSIGN_PAYLOAD_MEDIA_TYPE)
    {
        let Some(signature) = layer
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(COSIGN_SIGNATURE_ANNOTATION))
        else {
            continue;
        };
        checked += 1;
        let payload = registry.blob(&reference, layer, MAX_PAYLOAD_BYTES)?;
        if key.verifies(&payload, signature) && payload_names(&payload, digest) {
            return Ok(());
        }
    }
    Err(refused(if checked == 0 {
        format!("{digest} is not signed: {tag} holds no cosign signature")
    } else {
        format!(
            "none of the {checked} signature(s) in {tag} is a signature of {digest} by the key in {}",
            key.path.display()
        )
    }))
}

/// What `kedge push artifact` pushes, and where.
pub struct Push<'a> {
    /// `oci://HOST[:PORT]/REPOSITORY[:TAG]` (tag `latest` if none).
    pub url: &'a str,
    pub dir: &'a Path,
    /// Where the files come from (`org.opencontainers.image.source`).
    pub source: &'a str,
    /// Their revision there (`org.opencontainers.image.revision`).
    pub revision: &'a str,
    pub username: Option<&'a str>,
    pub password_file: Option<&'a Path>,
    pub ca_file: Option<&'a Path>,
    pub insecure: bool,
    pub timeout: Duration,
}

/// The creation time written into pushed manifests: a fixed one, so the
/// same tree gives the same manifest digest (Flux's `--reproducible`).
const REPRODUCIBLE_CREATED: &str = "1970-01-01T00:00:00Z";
/// Names errors of `kedge push artifact`.
const PUSH: &str = "push";

/// Pushes the files of `push.dir` as a Flux artifact and returns
/// `oci://…:TAG@sha256:<manifest digest>`.
pub fn push_artifact(push: &Push<'_>) -> Result<String> {
    let (base, tag) = split_tag(push.url);
    let auth = registry_auth(KIND, PUSH, push.username, push.password_file, None)?;
    let connection = Connection {
        url: base,
        auth,
        ca_file: push.ca_file,
        insecure: push.insecure,
        timeout: push.timeout,
    };
    let registry = Registry::connect(connection, KIND, PUSH)?;
    let repository = registry.repository("");
    let layer = ImageLayer::new(
        directory_layer(push.dir)?,
        FLUX_CONTENT_MEDIA_TYPE.to_string(),
        None,
    );
    let config = Config::new(b"{}".to_vec(), FLUX_CONFIG_MEDIA_TYPE.to_string(), None);
    let annotations = BTreeMap::from([
        (
            "org.opencontainers.image.created".to_string(),
            REPRODUCIBLE_CREATED.to_string(),
        ),
        (
            "org.opencontainers.image.source".to_string(),
            push.source.to_string(),
        ),
        (
            "org.opencontainers.image.revision".to_string(),
            push.revision.to_string(),
        ),
    ]);
    let layers = [layer];
    let manifest = OciImageManifest::build(&layers, &config, Some(annotations));
    let reference = registry.tagged(&repository, tag);
    registry.push(&reference, &layers, config, manifest)?;
    let digest = registry.digest_of(&reference)?;
    Ok(format!("{base}:{tag}@{digest}"))
}

/// `oci://HOST/REPO:TAG` → (`oci://HOST/REPO`, `TAG`); `latest` if none.
/// A colon before the repository's first slash is the port's.
fn split_tag(url: &str) -> (&str, &str) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let Some(slash) = url[after_scheme..].find('/').map(|i| after_scheme + i) else {
        return (url, "latest");
    };
    match url[slash..].rfind(':').map(|i| slash + i) {
        Some(colon) => (&url[..colon], &url[colon + 1..]),
        None => (url, "latest"),
    }
}

/// The deterministic `tar.gz` of the files under `dir` (no `.git`).
fn directory_layer(dir: &Path) -> Result<Vec<u8>> {
    let temp = tempfile::NamedTempFile::new()
        .map_err(super::io_error("creating a file in", &std::env::temp_dir()))?;
    let mut writer = ArtifactWriter::create(temp.path(), Limits::default(), PUSH)?;
    archive::append_directory(dir, &mut writer)?;
    writer.finish()?;
    std::fs::read(temp.path()).map_err(super::io_error("reading", temp.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_url_names_its_tag_after_the_repository_not_the_port() {
        assert_eq!(
            split_tag("oci://127.0.0.1:5000/fleet/edge:v1"),
            ("oci://127.0.0.1:5000/fleet/edge", "v1")
        );
        assert_eq!(
            split_tag("oci://127.0.0.1:5000/fleet/edge"),
            ("oci://127.0.0.1:5000/fleet/edge", "latest")
        );
        assert_eq!(
            split_tag("oci://registry.local/edge"),
            ("oci://registry.local/edge", "latest")
        );
    }

    #[test]
    fn a_signature_payload_must_name_the_digest_and_cosigns_type() {
        let digest = format!("sha256:{}", "a".repeat(64));
        let payload = |kind: &str, digest: &str| {
            format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"r/x"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{kind}"}},"optional":null}}"#
            )
        };
        assert!(payload_names(
            payload("cosign container image signature", &digest).as_bytes(),
            &digest
        ));
        let other = format!("sha256:{}", "b".repeat(64));
        assert!(!payload_names(
            payload("cosign container image signature", &other).as_bytes(),
            &digest
        ));
        assert!(!payload_names(
            payload("other", &digest).as_bytes(),
            &digest
        ));
    }

    #[test]
    fn a_key_that_is_not_p256_is_refused_by_name() {
        let pem = b"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";
        let err = CosignKey::parse(Path::new("/k.pub"), pem).err();
        assert_eq!(
            err.as_deref(),
            Some("not an ECDSA P-256 public key (cosign's key type)")
        );
    }

    #[test]
    fn a_signature_by_the_key_verifies_and_a_changed_payload_does_not() {
        use ring::rand::SystemRandom;
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("key pair");
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(pair.public_key().as_ref());
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        );
        let key = CosignKey::parse(Path::new("/k.pub"), pem.as_bytes()).expect("a P-256 key");
        let signature = pair.sign(&rng, b"payload").expect("signature");
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature.as_ref());
        assert!(key.verifies(b"payload", &encoded));
        assert!(!key.verifies(b"payloaD", &encoded));
        assert!(!key.verifies(b"payload", "not base64"));
    }
}
