//! Signatures made by the real cosign CLI (built by scripts/cosign-cli.sh;
//! `KEDGE_COSIGN_BIN` overrides it) with fixed key pairs
//! (`tests/fixtures/cosign/keys/NAME.{key,pub}`, from `cosign
//! generate-key-pair` with an empty password; they protect nothing but
//! these tests).
//!
//! What `cosign sign --key` stored in the registry (the `.sig` image's one
//! layer: media type, annotations, simple-signing payload) is recorded
//! under `tests/fixtures/cosign/recorded/`, named by a digest of the
//! repository, the artifact's digest, the public key and cosign's version
//! (see [`super::recorded`]): a run that finds it needs no cosign. The
//! payload names the registry of the recording run (`127.0.0.1:PORT`, a
//! random port), which kedge does not check: it verifies the signature
//! over the payload bytes and the digest the payload names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use super::registry::Registry;

const SCRIPT: &str = "scripts/cosign-cli.sh";

/// The cosign binary, built once per test binary.
fn cosign() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        super::built_tool(SCRIPT, "KEDGE_COSIGN_BIN")
            .unwrap_or_else(|e| panic!("the cosign CLI is needed to record a signature: {e}"))
    })
}

/// The cosign version the script pins (its `VERSION=` line).
fn pinned_version() -> String {
    let script = super::repo_root().join(SCRIPT);
    let text =
        std::fs::read_to_string(&script).unwrap_or_else(|e| panic!("{}: {e}", script.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION="))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("{}: no VERSION= line", script.display()))
}

/// The fixed key pair `name` (`fleet` or `other`): its private key file.
pub fn private_key(name: &str) -> PathBuf {
    super::repo_root().join(format!("tests/fixtures/cosign/keys/{name}.key"))
}

/// The fixed key pair `name`: its public key file, as `verify` names it.
pub fn public_key(name: &str) -> PathBuf {
    super::repo_root().join(format!("tests/fixtures/cosign/keys/{name}.pub"))
}

/// One layer of a cosign `.sig` image, as cosign pushed it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Signature {
    pub media_type: String,
    pub annotations: BTreeMap<String, String>,
    /// The simple-signing payload, the bytes the signature covers.
    pub payload: String,
}

/// cosign's signature, by the key pair `key`, of the manifest `digest` in
/// `repository` of `registry` (where it must be when no recording exists).
pub fn signature(registry: &Registry, repository: &str, digest: &str, key: &str) -> Signature {
    let public = public_key(key);
    let public_pem = std::fs::read(&public).unwrap_or_else(|e| panic!("{}: {e}", public.display()));
    let version = pinned_version();
    let inputs: [&[u8]; 5] = [
        b"sign",
        repository.as_bytes(),
        digest.as_bytes(),
        &public_pem,
        version.as_bytes(),
    ];
    let recorded = super::recorded("cosign", &inputs, || {
        sign(registry, repository, digest, key)
    });
    serde_json::from_slice(&recorded).expect("a recorded cosign signature")
}

/// Runs `cosign sign` and reads back the layer it pushed, as JSON.
///
/// cosign adds a signature to the `.sig` image already there, so it
/// writes to a repository of its own (`COSIGN_REPOSITORY`): the one
/// layer read back is the signature it made now.
fn sign(registry: &Registry, repository: &str, digest: &str, key: &str) -> Vec<u8> {
    static RECORDINGS: AtomicUsize = AtomicUsize::new(0);
    let target = format!(
        "cosign-recording/{}",
        RECORDINGS.fetch_add(1, Ordering::Relaxed)
    );
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::new(cosign())
        .args(["sign", "--key"])
        .arg(private_key(key))
        .args(["--tlog-upload=false", "--yes"])
        .arg(format!("{}/{repository}@{digest}", registry.host()))
        .env("COSIGN_PASSWORD", "")
        .env("COSIGN_REPOSITORY", format!("{}/{target}", registry.host()))
        .env("HOME", home.path())
        .output()
        .expect("run cosign sign");
    assert!(
        out.status.success(),
        "cosign sign {repository}@{digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer = signature_layer(registry, &target, digest);
    serde_json::to_vec_pretty(&layer).expect("serialize the signature")
}

/// The one layer of `digest`'s `.sig` image in `repository`, through the
/// registry's HTTP API.
fn signature_layer(registry: &Registry, repository: &str, digest: &str) -> Signature {
    kedge::source::install_tls_provider();
    let http = reqwest::blocking::Client::new();
    let base = format!("http://{}/v2/{repository}", registry.host());
    let tag = kedge::source::oci::signature_tag(digest);
    let manifest: serde_json::Value = http
        .get(format!("{base}/manifests/{tag}"))
        .header(
            "Accept",
            "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("{repository}:{tag}: {e}"));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one signature in {manifest}");
    let layer = &layers[0];
    let blob_digest = layer["digest"].as_str().expect("layer digest");
    let payload = http
        .get(format!("{base}/blobs/{blob_digest}"))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .unwrap_or_else(|e| panic!("{repository} blob {blob_digest}: {e}"));
    let payload = String::from_utf8(payload.to_vec()).expect("a UTF-8 (JSON) payload");
    Signature {
        media_type: layer["mediaType"].as_str().expect("mediaType").to_string(),
        annotations: serde_json::from_value(layer["annotations"].clone())
            .expect("string annotations"),
        payload,
    }
}
