//! What happens to built objects between the build and the apply, in
//! Flux's order for each object: SOPS decryption (`decryption`), then
//! variable substitution (`substitute`, `substitute_from`, `strict`).
//! A step over JSON objects, so a kustomization and (later) a Helm
//! release's manifests take the same one.
//!
//! # Guarantees
//! Decrypted values stay in memory: no error, log line or event holds one
//! (errors name the object, the file and the field only). Objects
//! annotated or labelled `kustomize.toolkit.fluxcd.io/substitute: disabled`
//! (or `kedge.dev/substitute`) are not substituted;
//! `kustomize.toolkit.fluxcd.io/decrypt: disabled` (or `kedge.dev/decrypt`)
//! leaves an object encrypted.

pub mod envsubst;
mod generator;
pub mod sops;
mod substitute;
mod vars;

use std::path::Path;

use serde_json::Value;

pub use generator::SecretFiles;
pub use substitute::substitute;
pub use vars::{load_variables, parse_dotenv, VarsError};

/// Why the post-build step failed for an object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("decryption of {object}{}: {source}", file.as_ref().map(|f| format!(" (from {f})")).unwrap_or_default())]
    Decrypt {
        object: String,
        file: Option<String>,
        source: sops::Error,
    },
    #[error("substitution in {object}: {source}")]
    Substitute {
        object: String,
        source: envsubst::Error,
    },
    #[error("substitution in {object}: the result is not valid YAML: {message}")]
    SubstitutedYaml { object: String, message: String },
}

/// `Kind/namespace/name` (or `Kind/name`) of a manifest, for messages.
pub fn describe(object: &Value) -> String {
    let text = |path: &[&str]| {
        path.iter()
            .try_fold(object, |v, k| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let kind = text(&["kind"]);
    let name = text(&["metadata", "name"]);
    match text(&["metadata", "namespace"]) {
        namespace if namespace.is_empty() => format!("{kind}/{name}"),
        namespace => format!("{kind}/{namespace}/{name}"),
    }
}

/// Whether `object` carries `<prefix>/<feature>: disabled` as a label or an
/// annotation, for Flux's prefix or kedge's.
fn disabled(object: &Value, feature: &str, labels_too: bool) -> bool {
    let fields: &[&str] = if labels_too {
        &["annotations", "labels"]
    } else {
        &["annotations"]
    };
    ["kustomize.toolkit.fluxcd.io", "kedge.dev"]
        .iter()
        .any(|prefix| {
            let key = format!("{prefix}/{feature}");
            fields.iter().any(|field| {
                object
                    .get("metadata")
                    .and_then(|m| m.get(field))
                    .and_then(|m| m.get(&key))
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
            })
        })
}

/// Decrypts `object` in place when it holds SOPS metadata, after checking
/// the MAC of the document it was read from (`origin`, shown as
/// `shown_origin`). Returns whether it was decrypted.
pub fn decrypt(
    object: &mut Value,
    origin: Option<&Path>,
    shown_origin: Option<String>,
    keys: &sops::Keys,
) -> Result<bool, Error> {
    if disabled(object, "decrypt", false) {
        return Ok(false);
    }
    if object.get("sops").is_none() {
        return decrypt_secret_data(object, keys);
    }
    let failed = |source| Error::Decrypt {
        object: describe(object),
        file: shown_origin.clone(),
        source,
    };
    let mac = object
        .get("sops")
        .and_then(|s| s.get("mac"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let source = origin
        .ok_or_else(|| {
            failed(sops::Error::Metadata(
                "not read from a file: its MAC cannot be checked".into(),
            ))
        })
        .and_then(|file| source_document(file, &mac).map_err(failed))?;
    sops::verify_document(source, keys).map_err(failed)?;
    let mut tree =
        serde_yaml::to_value(&*object).map_err(|e| failed(sops::Error::Format(e.to_string())))?;
    sops::decrypt_document(&mut tree, keys, false).map_err(failed)?;
    *object =
        serde_json::to_value(&tree).map_err(|e| failed(sops::Error::Format(e.to_string())))?;
    Ok(true)
}

/// A Secret whose `data` values are whole SOPS files (a generator read
/// them as they are): each decrypted, in the format its key names.
fn decrypt_secret_data(object: &mut Value, keys: &sops::Keys) -> Result<bool, Error> {
    use base64::Engine as _;
    if object.get("kind").and_then(Value::as_str) != Some("Secret") {
        return Ok(false);
    }
    let described = describe(object);
    let Some(Value::Object(data)) = object.get_mut("data") else {
        return Ok(false);
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let mut decrypted = false;
    for (key, value) in data.iter_mut() {
        let Some(bytes) = value.as_str().and_then(|v| engine.decode(v).ok()) else {
            continue;
        };
        let Some(plain) = sops::decrypt_embedded(&bytes, key, keys) else {
            continue;
        };
        let plain = plain.map_err(|source| Error::Decrypt {
            object: format!("{described} data.{key}"),
            file: None,
            source,
        })?;
        *value = Value::String(engine.encode(plain));
        decrypted = true;
    }
    Ok(decrypted)
}

/// What `kedge build` shows of a decrypted object: every value outside
/// `apiVersion`, `kind` and `metadata` replaced by Flux's `**SOPS**`.
pub fn mask(object: &mut Value) {
    fn leaves(value: &mut Value) {
        match value {
            Value::Object(map) => map.values_mut().for_each(leaves),
            Value::Array(items) => items.iter_mut().for_each(leaves),
            other => *other = Value::String(MASK.into()),
        }
    }
    if let Value::Object(map) = object {
        for (key, value) in map.iter_mut() {
            if !matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                leaves(value);
            }
        }
    }
}

const MASK: &str = "**SOPS**";

/// Flux's limit on an encrypted file.
const MAX_ENCRYPTED_FILE: u64 = 5 << 20;

/// The document of `file` whose `sops.mac` is `mac`, in its order.
fn source_document(file: &Path, mac: &str) -> Result<serde_yaml::Value, sops::Error> {
    let unreadable = |why: String| sops::Error::Format(format!("reading the file: {why}"));
    let size = std::fs::metadata(file)
        .map_err(|e| unreadable(e.to_string()))?
        .len();
    if size > MAX_ENCRYPTED_FILE {
        return Err(unreadable(format!(
            "{size} bytes, more than the {MAX_ENCRYPTED_FILE} an encrypted file may have"
        )));
    }
    let text = std::fs::read_to_string(file).map_err(|e| unreadable(e.to_string()))?;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let Ok(document) = <serde_yaml::Value as serde::Deserialize>::deserialize(document) else {
            continue;
        };
        let found = document
            .get("sops")
            .and_then(|s| s.get("mac"))
            .and_then(serde_yaml::Value::as_str)
            == Some(mac);
        if found {
            return Ok(document);
        }
    }
    Err(sops::Error::Mac)
}
