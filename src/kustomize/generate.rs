//! `configMapGenerator` and `secretGenerator`: objects made from literals,
//! files and env files, and the content hash kustomize appends to their
//! names.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::kustomization::{GeneratorArgs, GeneratorOptions};
use super::resource::{Behavior, Resource};
use super::secret_sources::{self, SecretSource};
use super::Error;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ConfigMap,
    Secret,
}

impl Kind {
    fn field(self) -> &'static str {
        match self {
            Kind::ConfigMap => "configMapGenerator",
            Kind::Secret => "secretGenerator",
        }
    }
}

/// Makes one object from generator arguments; `global` is the
/// kustomization's `generatorOptions`.
pub fn generate(
    kind: Kind,
    args: &GeneratorArgs,
    global: Option<&GeneratorOptions>,
    dir: &Path,
    file: &Path,
) -> Result<Resource, Error> {
    let field = kind.field();
    let pairs = collect_pairs(args, dir, file, field)?;
    let mut data = Map::new();
    let mut binary = Map::new();
    for (key, bytes) in pairs {
        if data.contains_key(&key) || binary.contains_key(&key) {
            return Err(Error::field(
                file,
                field,
                format!("{}: key '{key}' is set more than once", args.name),
            ));
        }
        match (kind, String::from_utf8(bytes)) {
            (Kind::ConfigMap, Ok(text)) => {
                data.insert(key, Value::String(text));
            }
            (Kind::ConfigMap, Err(e)) => {
                binary.insert(key, Value::String(base64_lines(e.as_bytes())));
            }
            (Kind::Secret, Ok(text)) => {
                data.insert(key, Value::String(base64_lines(text.as_bytes())));
            }
            (Kind::Secret, Err(e)) => {
                data.insert(key, Value::String(base64_lines(e.as_bytes())));
            }
        }
    }
    let mut metadata = Map::new();
    metadata.insert("name".into(), Value::String(args.name.clone()));
    if !args.namespace.is_empty() {
        metadata.insert("namespace".into(), Value::String(args.namespace.clone()));
    }
    let options = merge_options(args.options.as_ref(), global);
    if !options.labels.is_empty() {
        metadata.insert("labels".into(), json!(options.labels));
    }
    if !options.annotations.is_empty() {
        metadata.insert("annotations".into(), json!(options.annotations));
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), json!("v1"));
    object.insert("metadata".into(), Value::Object(metadata));
    match kind {
        Kind::ConfigMap => {
            object.insert("kind".into(), json!("ConfigMap"));
            if !data.is_empty() {
                object.insert("data".into(), Value::Object(data));
            }
            if !binary.is_empty() {
                object.insert("binaryData".into(), Value::Object(binary));
            }
        }
        Kind::Secret => {
            object.insert("kind".into(), json!("Secret"));
            let secret_type = args.secret_type.clone().unwrap_or_else(|| "Opaque".into());
            object.insert("type".into(), Value::String(secret_type));
            // A secret always has data, if empty (and it counts in the hash).
            object.insert("data".into(), Value::Object(data));
        }
    }
    if options.immutable == Some(true) {
        object.insert("immutable".into(), json!(true));
    }
    let mut resource = Resource::new(Value::Object(object));
    resource.origin = Some(super::resource::Origin::Generated {
        file: file.to_path_buf(),
        kind: match kind {
            Kind::ConfigMap => "ConfigMapGenerator".into(),
            Kind::Secret => "SecretGenerator".into(),
        },
        name: None,
        namespace: None,
    });
    resource.needs_hash = options.disable_name_suffix_hash != Some(true);
    // kustomize reads any other value (`add`) as unspecified: create.
    resource.behavior = match args.behavior.as_deref() {
        Some("merge") => Behavior::Merge,
        Some("replace") => Behavior::Replace,
        _ => Behavior::Create,
    };
    Ok(resource)
}

/// Generator options override the kustomization's `generatorOptions`.
fn merge_options(
    local: Option<&GeneratorOptions>,
    global: Option<&GeneratorOptions>,
) -> GeneratorOptions {
    let mut merged = global.cloned().unwrap_or_default();
    if let Some(local) = local {
        merged.labels.extend(local.labels.clone());
        merged.annotations.extend(local.annotations.clone());
        if local.disable_name_suffix_hash.is_some() {
            merged.disable_name_suffix_hash = local.disable_name_suffix_hash;
        }
        if local.immutable.is_some() {
            merged.immutable = local.immutable;
        }
    }
    merged
}

fn collect_pairs(
    args: &GeneratorArgs,
    dir: &Path,
    file: &Path,
    field: &str,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let mut pairs = Vec::new();
    let env_files = args.envs.iter().chain(args.env.iter());
    for env in env_files {
        let text = read(dir, env, file, field)?;
        let full = dir.join(env);
        let text = secret_source(field, env, file, text, SecretSource::Env { path: &full })?;
        let text = String::from_utf8_lossy(&text);
        for (key, value) in
            parse_env(&text).map_err(|m| Error::field(file, field, format!("{env}: {m}")))?
        {
            pairs.push((key, value.into_bytes()));
        }
    }
    for literal in &args.literals {
        let (key, value) = literal.split_once('=').ok_or_else(|| {
            Error::field(file, field, format!("literal '{literal}' is not KEY=VALUE"))
        })?;
        pairs.push((key.to_string(), strip_quotes(value).as_bytes().to_vec()));
    }
    for source in &args.files {
        let (key, path) = match source.split_once('=') {
            Some((key, path)) => (key.to_string(), path),
            None => {
                let key = Path::new(source)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| source.clone());
                (key, source.as_str())
            }
        };
        let bytes = read(dir, path, file, field)?;
        let full = dir.join(path);
        let source = SecretSource::File {
            key: &key,
            path: &full,
        };
        let bytes = secret_source(field, path, file, bytes, source)?;
        pairs.push((key, bytes));
    }
    Ok(pairs)
}

fn read(dir: &Path, path: &str, file: &Path, field: &str) -> Result<Vec<u8>, Error> {
    let full = dir.join(path);
    super::build::check_within(dir, &full, file, field)?;
    std::fs::read(&full).map_err(|source| Error::Read {
        file: file.to_path_buf(),
        field: field.to_string(),
        path: full,
        source,
    })
}

/// A secret generator's file through the build's reader (SOPS decryption).
fn secret_source(
    field: &str,
    path: &str,
    file: &Path,
    bytes: Vec<u8>,
    source: SecretSource<'_>,
) -> Result<Vec<u8>, Error> {
    if field != Kind::Secret.field() {
        return Ok(bytes);
    }
    secret_sources::read(source, bytes)
        .map_err(|m| Error::field(file, field, format!("{path}: {m}")))
}

fn strip_quotes(value: &str) -> &str {
    let bytes = value.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[0] == bytes[bytes.len() - 1]
    {
        &value[1..value.len() - 1]
    } else {
        value
    }
}

/// `KEY=VALUE` lines; blank lines and `#` comments are skipped, a line
/// without `=` is a key with an empty value.
fn parse_env(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_start_matches('\u{feff}').trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("line {}: invalid key '{key}'", number + 1));
        }
        pairs.push((key.to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// Base64 split into lines of 70 characters, each ending in a newline,
/// when longer than one line (kustomize's encoding of secret data).
fn base64_lines(bytes: &[u8]) -> String {
    const LINE: usize = 70;
    let encoded = base64(bytes);
    if encoded.len() < LINE {
        return encoded;
    }
    let mut out = String::new();
    for chunk in encoded.as_bytes().chunks(LINE) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out
}

pub fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// kustomize's name suffix: the sha256 of a JSON encoding of the kind and
/// data, its first 10 hex digits with some letters swapped so it cannot
/// look like a number or a word. kustomize looks the name up under a key
/// literally named `metadata/name`, so the name it hashes is always empty.
pub fn content_hash(value: &Value) -> String {
    let name = json!("");
    let field = |key: &str| value.get(key).cloned().unwrap_or(json!(""));
    let mut m: BTreeMap<&str, Value> = BTreeMap::new();
    m.insert("name", name);
    m.insert("data", field("data"));
    match value.get("kind").and_then(Value::as_str) {
        Some("Secret") => {
            m.insert("kind", json!("Secret"));
            m.insert("type", field("type"));
            if value.get("stringData").is_some_and(Value::is_object) {
                m.insert("stringData", field("stringData"));
            }
        }
        _ => {
            m.insert("kind", json!("ConfigMap"));
            if value.get("binaryData").is_some_and(Value::is_object) {
                m.insert("binaryData", field("binaryData"));
            }
        }
    }
    let encoded = go_json(&json!(m));
    let digest = Sha256::digest(encoded.as_bytes());
    let hex: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    hex.chars()
        .map(|c| match c {
            '0' => 'g',
            '1' => 'h',
            '3' => 'k',
            'a' => 'm',
            'e' => 't',
            other => other,
        })
        .collect()
}

/// JSON as Go's encoding/json writes it: sorted keys, and `<`, `>`, `&`,
/// U+2028 and U+2029 escaped.
fn go_json(value: &Value) -> String {
    serde_json::to_string(value)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b"apple"), "YXBwbGU=");
        assert_eq!(base64(b"falcon"), "ZmFsY29u");
        assert_eq!(base64(b"everest"), "ZXZlcmVzdA==");
    }

    #[test]
    fn hash_matches_kustomize_for_a_literal_config_map() {
        // From kustomize's own corpus: configmaps__TestDataIsSingleQuote.
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test"}, "data": {"TEST": "'"}});
        assert_eq!(content_hash(&cm), "m8t7bmb6g2");
    }
}
