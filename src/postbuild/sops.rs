//! SOPS decryption with age or OpenPGP keys, in memory: the data key from
//! the file's `sops.age` or `sops.pgp` entries, every value by AES-256-GCM with its path as
//! additional data, and the MAC — SHA-512 over the values in document
//! order, itself encrypted with `lastmodified` as additional data —
//! checked before anything decrypted is used.
//!
//! # Design
//! A document is a `serde_yaml::Value`, whose mappings keep their order
//! (the MAC depends on it). Manifests are decrypted after the build, where
//! kustomize has sorted and changed their fields (so, as in Flux, a MAC
//! cannot be checked there); their MAC is checked on the document of the
//! file they were read from, in the artifact, as written.
//!
//! OpenPGP data keys are decrypted with rpgp (the `pgp` crate) by secret
//! keys exported without a passphrase (`gpg --export-secret-keys --armor`);
//! no gpg program or agent is involved.
//!
//! # Current limitations
//! Cloud KMS (AWS, GCP, Azure, HuaweiCloud), Vault and Shamir key groups
//! are refused by name; `encrypted_comment_regex` and
//! `unencrypted_comment_regex` too (comments are not read).

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::{Aes256Gcm, AesGcm};
use base64::Engine as _;
use serde_yaml::{Mapping, Value as Yaml};
use sha2::{Digest, Sha512};

/// Why a document cannot be decrypted. Never holds a decrypted value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading decryption keys from {file}: {message}")]
    Keys { file: PathBuf, message: String },
    #[error("{0}")]
    Metadata(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("no key of the decryption key files matches its recipients ({recipients})")]
    NoMatchingKey { recipients: String },
    #[error("cannot decrypt the value at {path}: {message}")]
    Value { path: String, message: String },
    #[error("MAC mismatch: the file was changed after it was encrypted (tampered, or edited without sops)")]
    Mac,
    #[error("{0}")]
    Format(String),
}

/// The age identities and OpenPGP secret keys of the decryption key files.
pub struct Keys {
    identities: Vec<age::x25519::Identity>,
    pgp: Vec<pgp::composed::SignedSecretKey>,
    /// Data keys already unwrapped, by their armored age file: a manifest
    /// and the file it was read from share one.
    data_keys: std::sync::Mutex<std::collections::HashMap<String, [u8; 32]>>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keys({} age identities, {} OpenPGP keys)",
            self.identities.len(),
            self.pgp.len()
        )
    }
}

impl Keys {
    /// Reads `AGE-SECRET-KEY-1…` lines (comments and blank lines skipped),
    /// as `age-keygen` writes them.
    pub fn read(file: &Path) -> Result<Keys, Error> {
        let failed = |message: String| Error::Keys {
            file: file.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(file).map_err(|e| failed(e.to_string()))?;
        let mut identities = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let identity = age::x25519::Identity::from_str(line).map_err(|_| {
                failed(format!(
                    "line {} is not an age identity (AGE-SECRET-KEY-1…)",
                    index + 1
                ))
            })?;
            identities.push(identity);
        }
        if identities.is_empty() {
            return Err(failed("no age identity in the file".into()));
        }
        Ok(Keys::from_identities(identities))
    }

    pub fn from_identities(identities: Vec<age::x25519::Identity>) -> Keys {
        Keys {
            identities,
            pgp: Vec::new(),
            data_keys: Default::default(),
        }
    }

    /// The keys of a `decryption` table: age identities, OpenPGP secret
    /// keys, or both.
    pub fn load(
        age_key_file: Option<&Path>,
        pgp_keyring_file: Option<&Path>,
    ) -> Result<Keys, Error> {
        let mut keys = match age_key_file {
            Some(file) => Keys::read(file)?,
            None => Keys::from_identities(Vec::new()),
        };
        if let Some(file) = pgp_keyring_file {
            keys.pgp = read_pgp_secret_keys(file)?;
        }
        Ok(keys)
    }

    fn unwrap_data_key(&self, armored: &str) -> Option<[u8; 32]> {
        let mut cache = self
            .data_keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(key) = cache.get(armored) {
            return Some(*key);
        }
        let plain = match armored
            .trim_start()
            .starts_with("-----BEGIN PGP MESSAGE-----")
        {
            true => pgp_decrypt(armored, &self.pgp)?,
            false => age_decrypt(armored, self)?,
        };
        let key = <[u8; 32]>::try_from(plain.as_slice()).ok()?;
        cache.insert(armored.to_string(), key);
        Some(key)
    }
}

/// The formats SOPS encrypts, as Flux tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
    Dotenv,
    Binary,
}

impl Format {
    /// Flux's `formatForPath`: by extension, binary otherwise.
    pub fn for_path(path: &str) -> Format {
        let extension = Path::new(path)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        match extension {
            "yaml" | "yml" => Format::Yaml,
            "json" => Format::Json,
            "env" => Format::Dotenv,
            _ => Format::Binary,
        }
    }

    /// Bytes only an encrypted file of this format holds (Flux's markers).
    fn marker(self) -> &'static [u8] {
        match self {
            Format::Yaml => b"mac: ENC[",
            Format::Json | Format::Binary => b"\"mac\": \"ENC[",
            Format::Dotenv => b"sops_mac=ENC[",
        }
    }

    pub fn is_encrypted(self, bytes: &[u8]) -> bool {
        let marker = self.marker();
        bytes.windows(marker.len()).any(|w| w == marker)
    }
}

/// A whole SOPS file held as a Secret's data value (Flux's fallback for
/// generator files its source decryption missed): its format told by its
/// marker, written out in the format of the data key's extension.
/// `None` when it is not an encrypted file.
pub fn decrypt_embedded(
    bytes: &[u8],
    key_name: &str,
    keys: &Keys,
) -> Option<Result<Vec<u8>, Error>> {
    let output = Format::for_path(key_name);
    let input = [Format::Yaml, Format::Dotenv, Format::Json]
        .into_iter()
        .find(|f| f.is_encrypted(bytes))?;
    let input = match (input, output) {
        (Format::Json, Format::Binary) => Format::Binary,
        (input, _) => input,
    };
    if input == output || matches!(input, Format::Dotenv | Format::Binary) {
        return Some(decrypt_file(bytes.to_vec(), input, keys));
    }
    let converted = std::str::from_utf8(bytes)
        .map_err(|_| Error::Format("an encrypted file is not UTF-8".into()))
        .and_then(|text| {
            serde_yaml::from_str::<Yaml>(text)
                .map_err(|e| Error::Format(format!("not a SOPS document: {e}")))
        })
        .and_then(|mut tree| {
            decrypt_document(&mut tree, keys, true)?;
            emit(&tree, output)
        });
    Some(converted)
}

/// Decrypts a whole file of `format` and writes it back in that format;
/// a file without the format's SOPS marker is returned as it is.
pub fn decrypt_file(bytes: Vec<u8>, format: Format, keys: &Keys) -> Result<Vec<u8>, Error> {
    if !format.is_encrypted(&bytes) {
        return Ok(bytes);
    }
    match format {
        Format::Dotenv => decrypt_dotenv(&bytes, keys),
        Format::Yaml | Format::Json | Format::Binary => {
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Error::Format("an encrypted file is not UTF-8".into()))?;
            let mut tree: Yaml = serde_yaml::from_str(text)
                .map_err(|e| Error::Format(format!("not a SOPS document: {e}")))?;
            if format == Format::Binary {
                return decrypt_binary(&tree, keys);
            }
            decrypt_document(&mut tree, keys, true)?;
            emit(&tree, format)
        }
    }
}

fn emit(tree: &Yaml, format: Format) -> Result<Vec<u8>, Error> {
    let emitted = match format {
        Format::Json => serde_json::to_vec_pretty(tree).map_err(|e| e.to_string()),
        _ => serde_yaml::to_string(tree)
            .map(String::into_bytes)
            .map_err(|e| e.to_string()),
    };
    emitted.map_err(Error::Format)
}

/// A binary file: `{"data": ENC[…], "sops": …}`, its data any bytes.
fn decrypt_binary(tree: &Yaml, keys: &Keys) -> Result<Vec<u8>, Error> {
    let metadata = Metadata::parse(
        tree.get("sops")
            .ok_or_else(|| Error::Metadata("no sops metadata".into()))?,
    )?;
    let key = metadata.data_key(keys)?;
    let Some(Yaml::String(data)) = tree.get("data") else {
        return Err(Error::Format("a binary SOPS file has no data".into()));
    };
    let (bytes, _) = open_value(data, &key, "data:")?;
    let mut hash = Sha512::new();
    if metadata.mac_only_encrypted {
        hash.update(MAC_ONLY_ENCRYPTED_SEED);
    }
    hash.update(&bytes);
    metadata.check_mac(&key, upper_hex(&hash.finalize()))?;
    Ok(bytes)
}

/// Decrypts `document` (a mapping with a top-level `sops` key) in place and
/// removes its metadata; checks its MAC when `check_mac`.
pub fn decrypt_document(document: &mut Yaml, keys: &Keys, check_mac: bool) -> Result<(), Error> {
    let Yaml::Mapping(map) = document else {
        return Err(Error::Metadata(
            "an encrypted document is not a mapping".into(),
        ));
    };
    let metadata = map
        .remove("sops")
        .ok_or_else(|| Error::Metadata("no sops metadata".into()))?;
    let metadata = Metadata::parse(&metadata)?;
    let key = metadata.data_key(keys)?;
    let mut walk = Walk::new(&metadata, &key);
    for (name, value) in map.iter_mut() {
        let Some(name) = name.as_str() else {
            return Err(Error::Metadata("a key is not a string".into()));
        };
        walk.path.push(name.to_string());
        walk.value(value)?;
        walk.path.pop();
    }
    if check_mac {
        metadata.check_mac(&key, walk.mac())?;
    }
    Ok(())
}

/// Decrypts `document` and returns whether its MAC matches, without
/// changing it (for the file a manifest was read from).
pub fn verify_document(mut document: Yaml, keys: &Keys) -> Result<(), Error> {
    decrypt_document(&mut document, keys, true)
}

fn decrypt_dotenv(bytes: &[u8], keys: &Keys) -> Result<Vec<u8>, Error> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| Error::Format("an encrypted dotenv file is not UTF-8".into()))?;
    let mut entries = Vec::new();
    let mut metadata = Vec::new();
    for line in text.split('\n') {
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            entries.push(DotenvLine::Comment(comment.to_string()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| Error::Format("a dotenv line has no '='".into()))?;
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(flat) => metadata.push((flat.to_string(), value)),
            None => entries.push(DotenvLine::Entry(key.to_string(), value)),
        }
    }
    let metadata = Metadata::parse(&unflatten(&metadata))?;
    let key = metadata.data_key(keys)?;
    let mut walk = Walk::new(&metadata, &key);
    let mut out = String::new();
    for line in &entries {
        match line {
            DotenvLine::Comment(comment) => {
                let _ = writeln!(out, "#{}", metadata.comment(comment, &key));
            }
            DotenvLine::Entry(name, value) => {
                walk.path.push(name.clone());
                let mut value = Yaml::String(value.clone());
                walk.value(&mut value)?;
                walk.path.pop();
                let text = match value {
                    Yaml::String(s) => s.replace('\n', "\\n"),
                    other => scalar_text(&other),
                };
                let _ = writeln!(out, "{name}={text}");
            }
        }
    }
    metadata.check_mac(&key, walk.mac())?;
    Ok(out.into_bytes())
}

enum DotenvLine {
    Comment(String),
    Entry(String, String),
}

/// SOPS's flattened metadata (`age__list_0__map_enc`) as a tree.
fn unflatten(flat: &[(String, String)]) -> Yaml {
    let mut root = Yaml::Mapping(Mapping::new());
    for (path, value) in flat {
        let mut node = &mut root;
        let mut rest = path.as_str();
        loop {
            let (token, next) = next_token(rest);
            let is_last = next.is_empty();
            node = match token {
                Token::Key(key) => {
                    let Yaml::Mapping(map) = node else { break };
                    let entry = map.entry(Yaml::String(key.to_string()));
                    if is_last {
                        entry.or_insert(Yaml::String(value.clone()));
                        break;
                    }
                    entry.or_insert_with(|| empty_for(next))
                }
                Token::Index(index) => {
                    let Yaml::Sequence(items) = node else { break };
                    while items.len() <= index {
                        items.push(empty_for(next));
                    }
                    if is_last {
                        items[index] = Yaml::String(value.clone());
                        break;
                    }
                    &mut items[index]
                }
            };
            rest = next;
        }
    }
    root
}

enum Token<'a> {
    Key(&'a str),
    Index(usize),
}

const MAP_SEPARATOR: &str = "__map_";
const LIST_SEPARATOR: &str = "__list_";

/// The first token of a flattened path and the rest (starting with a separator).
fn next_token(path: &str) -> (Token<'_>, &str) {
    let (body, is_index) = if let Some(rest) = path.strip_prefix(MAP_SEPARATOR) {
        (rest, false)
    } else if let Some(rest) = path.strip_prefix(LIST_SEPARATOR) {
        (rest, true)
    } else {
        (path, false)
    };
    let end = [body.find(MAP_SEPARATOR), body.find(LIST_SEPARATOR)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    let (token, rest) = body.split_at(end);
    if is_index {
        (Token::Index(token.parse().unwrap_or(0)), rest)
    } else {
        (Token::Key(token), rest)
    }
}

fn empty_for(next: &str) -> Yaml {
    if next.starts_with(LIST_SEPARATOR) {
        Yaml::Sequence(Vec::new())
    } else {
        Yaml::Mapping(Mapping::new())
    }
}

/// What the `sops` metadata says about decrypting a document.
struct Metadata {
    mac: String,
    last_modified: String,
    unencrypted_suffix: Option<String>,
    encrypted_suffix: Option<String>,
    unencrypted_regex: Option<regex::Regex>,
    encrypted_regex: Option<regex::Regex>,
    mac_only_encrypted: bool,
    /// The armored age files holding the data key, with their recipients.
    age: Vec<(String, String)>,
    /// The armored OpenPGP messages holding the data key, with the
    /// fingerprints of their keys.
    pgp: Vec<(String, String)>,
    /// Other key kinds the data key is encrypted for.
    others: Vec<&'static str>,
}

/// Key kinds kedge cannot use, by their metadata key.
const OTHER_KEY_KINDS: [(&str, &str); 5] = [
    ("kms", "AWS KMS"),
    ("gcp_kms", "GCP KMS"),
    ("azure_kv", "Azure Key Vault"),
    ("hc_vault", "HashiCorp Vault"),
    ("hckms", "HuaweiCloud KMS"),
];

/// SHA-512 is seeded with these bytes when only encrypted values are in
/// the MAC (SOPS's `MACOnlyEncryptedInitialization`).
const MAC_ONLY_ENCRYPTED_SEED: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

impl Metadata {
    fn parse(sops: &Yaml) -> Result<Metadata, Error> {
        let text = |key: &str| sops.get(key).and_then(Yaml::as_str).map(str::to_string);
        let regex = |key: &str| -> Result<Option<regex::Regex>, Error> {
            text(key)
                .map(|r| {
                    regex::Regex::new(&r)
                        .map_err(|e| Error::Metadata(format!("sops.{key} {r:?}: {e}")))
                })
                .transpose()
        };
        for key in ["encrypted_comment_regex", "unencrypted_comment_regex"] {
            if sops.get(key).is_some() {
                return Err(Error::Unsupported(format!(
                    "sops.{key} is not supported by kedge"
                )));
            }
        }
        let groups = match sops.get("key_groups") {
            Some(Yaml::Sequence(groups)) => {
                if groups.len() > 1 {
                    return Err(Error::Unsupported(
                        "Shamir key groups (more than one key group) are not supported by kedge"
                            .into(),
                    ));
                }
                groups.iter().collect()
            }
            _ => vec![sops],
        };
        let mut age = Vec::new();
        let mut pgp = Vec::new();
        let mut others = Vec::new();
        for group in groups {
            age.extend(wrapped_data_keys(group, "age", "recipient"));
            pgp.extend(wrapped_data_keys(group, "pgp", "fp"));
            for (key, name) in OTHER_KEY_KINDS {
                if matches!(group.get(key), Some(Yaml::Sequence(s)) if !s.is_empty()) {
                    others.push(name);
                }
            }
        }
        Ok(Metadata {
            mac: text("mac").unwrap_or_default(),
            last_modified: text("lastmodified")
                .ok_or_else(|| Error::Metadata("sops.lastmodified is missing".into()))?,
            unencrypted_suffix: text("unencrypted_suffix"),
            encrypted_suffix: text("encrypted_suffix"),
            unencrypted_regex: regex("unencrypted_regex")?,
            encrypted_regex: regex("encrypted_regex")?,
            mac_only_encrypted: matches!(sops.get("mac_only_encrypted"), Some(Yaml::Bool(true)))
                || text("mac_only_encrypted").as_deref() == Some("true"),
            age,
            pgp,
            others,
        })
    }

    /// SOPS's rules, in its order: each later rule overrides the earlier.
    fn is_encrypted(&self, path: &[String]) -> bool {
        let mut encrypted = true;
        if let Some(suffix) = &self.unencrypted_suffix {
            if path.iter().any(|p| p.ends_with(suffix.as_str())) {
                encrypted = false;
            }
        }
        if let Some(suffix) = &self.encrypted_suffix {
            encrypted = path.iter().any(|p| p.ends_with(suffix.as_str()));
        }
        if let Some(regex) = &self.unencrypted_regex {
            if path.iter().any(|p| regex.is_match(p)) {
                encrypted = false;
            }
        }
        if let Some(regex) = &self.encrypted_regex {
            encrypted = path.iter().any(|p| regex.is_match(p));
        }
        encrypted
    }

    fn data_key(&self, keys: &Keys) -> Result<[u8; 32], Error> {
        if self.age.is_empty() && self.pgp.is_empty() {
            let kinds = if self.others.is_empty() {
                "no key at all".to_string()
            } else {
                self.others.join(", ")
            };
            return Err(Error::Unsupported(format!(
                "the data key is encrypted for {kinds}: kedge decrypts with age and OpenPGP keys only (add an age recipient with `sops updatekeys`)"
            )));
        }
        let wrapped = self.age.iter().chain(&self.pgp);
        if let Some(key) = wrapped
            .clone()
            .find_map(|(enc, _)| keys.unwrap_data_key(enc))
        {
            return Ok(key);
        }
        let recipients: Vec<&str> = wrapped.map(|(_, r)| r.as_str()).collect();
        Err(Error::NoMatchingKey {
            recipients: recipients.join(", "),
        })
    }

    /// A top-level comment: SOPS encrypts it (path "") unless the rules
    /// say otherwise, and keeps one it cannot decrypt as it is.
    fn comment(&self, comment: &str, key: &[u8; 32]) -> String {
        if !self.is_encrypted(&[]) {
            return comment.to_string();
        }
        match decrypt_value(comment, key, ":") {
            Ok(Plain::Text(text) | Plain::Str(text)) => text,
            _ => comment.to_string(),
        }
    }

    fn check_mac(&self, key: &[u8; 32], computed: String) -> Result<(), Error> {
        let stored = match decrypt_value(&self.mac, key, &self.last_modified)? {
            Plain::Str(mac) => mac,
            _ => return Err(Error::Mac),
        };
        if stored == computed {
            Ok(())
        } else {
            Err(Error::Mac)
        }
    }
}

/// The `(enc, who)` pairs of a key group's `kind` entries (`age` with its
/// `recipient`, `pgp` with its `fp`).
fn wrapped_data_keys(group: &Yaml, kind: &str, who: &str) -> Vec<(String, String)> {
    let Some(Yaml::Sequence(entries)) = group.get(kind) else {
        return Vec::new();
    };
    let field = |entry: &Yaml, name: &str| {
        entry
            .get(name)
            .and_then(Yaml::as_str)
            .unwrap_or_default()
            .to_string()
    };
    entries
        .iter()
        .map(|entry| (field(entry, "enc"), field(entry, who)))
        .collect()
}

/// The secret keys of an OpenPGP keyring file (armored or binary, as
/// `gpg --export-secret-keys` writes them, without a passphrase).
fn read_pgp_secret_keys(file: &Path) -> Result<Vec<pgp::composed::SignedSecretKey>, Error> {
    use pgp::composed::Deserializable as _;
    let failed = |message: String| Error::Keys {
        file: file.to_path_buf(),
        message,
    };
    let bytes = std::fs::read(file).map_err(|e| failed(e.to_string()))?;
    let (keys, _) = pgp::composed::SignedSecretKey::from_reader_many(bytes.as_slice())
        .map_err(|e| failed(format!("not OpenPGP secret keys: {e}")))?;
    let keys = keys
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("not OpenPGP secret keys: {e}")))?;
    if keys.is_empty() {
        return Err(failed("no OpenPGP secret key in the file".into()));
    }
    Ok(keys)
}

/// The data key of an armored OpenPGP message, by the first key that
/// opens it (an unprotected secret key: no passphrase is asked for).
fn pgp_decrypt(armored: &str, keys: &[pgp::composed::SignedSecretKey]) -> Option<Vec<u8>> {
    let password = pgp::types::Password::empty();
    keys.iter().find_map(|key| {
        let (message, _) = pgp::composed::Message::from_armor(armored.as_bytes()).ok()?;
        let mut message = message.decrypt(&password, key).ok()?;
        if message.is_compressed() {
            message = message.decompress().ok()?;
        }
        message.as_data_vec().ok()
    })
}

fn age_decrypt(armored: &str, keys: &Keys) -> Option<Vec<u8>> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).ok()?;
    let identities = keys.identities.iter().map(|i| i as &dyn age::Identity);
    let mut stream = decryptor.decrypt(identities).ok()?;
    let mut key = Vec::new();
    stream.read_to_end(&mut key).ok()?;
    Some(key)
}

/// A decrypted value with its SOPS type.
enum Plain {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Bytes(Vec<u8>),
    /// `comment` and `time`: kept as text.
    Text(String),
}

fn decrypt_value(encrypted: &str, key: &[u8; 32], additional_data: &str) -> Result<Plain, Error> {
    let failed = |message: &str| value_error(additional_data, message);
    let (opened, kind) = open_value(encrypted, key, additional_data)?;
    let text = || String::from_utf8(opened.clone()).map_err(|_| failed("not UTF-8"));
    let bad_type = || failed("the value does not parse as its type");
    Ok(match kind.as_str() {
        "str" => Plain::Str(text()?),
        "int" => Plain::Int(text()?.parse().map_err(|_| bad_type())?),
        "float" => Plain::Float(text()?.parse().map_err(|_| bad_type())?),
        "bool" => Plain::Bool(parse_go_bool(&text()?).ok_or_else(bad_type)?),
        "bytes" => Plain::Bytes(opened),
        "comment" | "time" => Plain::Text(text()?),
        _ => return Err(failed("unknown value type")),
    })
}

fn value_error(additional_data: &str, message: &str) -> Error {
    Error::Value {
        path: additional_data.trim_end_matches(':').replace(':', "."),
        message: message.to_string(),
    }
}

/// The plaintext bytes of an `ENC[AES256_GCM,…]` value and its type.
fn open_value(
    encrypted: &str,
    key: &[u8; 32],
    additional_data: &str,
) -> Result<(Vec<u8>, String), Error> {
    let failed = |message: &str| value_error(additional_data, message);
    if encrypted.is_empty() {
        return Ok((Vec::new(), "str".into()));
    }
    let fields = encrypted
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| failed("not a SOPS value (ENC[AES256_GCM,…])"))?;
    let mut data = None;
    let mut iv = None;
    let mut tag = None;
    let mut kind = None;
    for field in fields.split(',') {
        let (name, value) = field
            .split_once(':')
            .ok_or_else(|| failed("malformed ENC[] value"))?;
        let slot = match name {
            "data" => &mut data,
            "iv" => &mut iv,
            "tag" => &mut tag,
            "type" => &mut kind,
            _ => return Err(failed("malformed ENC[] value")),
        };
        *slot = Some(value);
    }
    let b64 = |v: Option<&str>| {
        base64::engine::general_purpose::STANDARD
            .decode(v.unwrap_or_default())
            .map_err(|_| failed("bad base64 in ENC[] value"))
    };
    let (mut sealed, iv, tag) = (b64(data)?, b64(iv)?, b64(tag)?);
    sealed.extend_from_slice(&tag);
    let payload = Payload {
        msg: &sealed,
        aad: additional_data.as_bytes(),
    };
    let opened = match iv.len() {
        32 => AesGcm::<Aes256, U32>::new(key.into()).decrypt(iv.as_slice().into(), payload),
        12 => Aes256Gcm::new(key.into()).decrypt(iv.as_slice().into(), payload),
        _ => return Err(failed("unsupported IV length")),
    }
    .map_err(|_| {
        failed("authentication failed (wrong data key, or the value or its path changed)")
    })?;
    Ok((opened, kind.unwrap_or("str").to_string()))
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// One walk over a document's values: decrypts them in place and hashes
/// them for the MAC, in document order.
struct Walk<'a> {
    metadata: &'a Metadata,
    key: &'a [u8; 32],
    path: Vec<String>,
    hash: Sha512,
}

impl<'a> Walk<'a> {
    fn new(metadata: &'a Metadata, key: &'a [u8; 32]) -> Walk<'a> {
        let mut hash = Sha512::new();
        if metadata.mac_only_encrypted {
            hash.update(MAC_ONLY_ENCRYPTED_SEED);
        }
        Walk {
            metadata,
            key,
            path: Vec::new(),
            hash,
        }
    }

    fn value(&mut self, value: &mut Yaml) -> Result<(), Error> {
        match value {
            Yaml::Null => Ok(()),
            Yaml::Mapping(map) => {
                for (name, item) in map.iter_mut() {
                    let name = match name {
                        Yaml::String(s) => s.clone(),
                        other => scalar_text(other),
                    };
                    self.path.push(name);
                    self.value(item)?;
                    self.path.pop();
                }
                Ok(())
            }
            Yaml::Sequence(items) => items.iter_mut().try_for_each(|item| self.value(item)),
            Yaml::Tagged(tagged) => self.value(&mut tagged.value),
            Yaml::String(_) | Yaml::Number(_) | Yaml::Bool(_) => self.leaf(value),
        }
    }

    fn leaf(&mut self, value: &mut Yaml) -> Result<(), Error> {
        if !self.metadata.is_encrypted(&self.path) {
            if !self.metadata.mac_only_encrypted {
                self.hash.update(mac_bytes(value));
            }
            return Ok(());
        }
        let Yaml::String(encrypted) = value else {
            return Err(Error::Value {
                path: self.path.join("."),
                message: "expected an encrypted string".into(),
            });
        };
        let additional_data = format!("{}:", self.path.join(":"));
        let plain = decrypt_value(encrypted, self.key, &additional_data)?;
        let (bytes, decrypted) = match plain {
            Plain::Str(s) => (s.clone().into_bytes(), Yaml::String(s)),
            Plain::Int(i) => (i.to_string().into_bytes(), Yaml::Number(i.into())),
            Plain::Float(f) => (go_float(f).into_bytes(), Yaml::Number(f.into())),
            Plain::Bool(b) => (go_mac_bool(b).into(), Yaml::Bool(b)),
            Plain::Bytes(b) => (
                b.clone(),
                Yaml::String(String::from_utf8_lossy(&b).into_owned()),
            ),
            Plain::Text(t) => (t.clone().into_bytes(), Yaml::String(t)),
        };
        self.hash.update(bytes);
        *value = decrypted;
        Ok(())
    }

    /// The MAC as SOPS writes it.
    fn mac(self) -> String {
        upper_hex(&self.hash.finalize())
    }
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(128), |mut hex, b| {
        let _ = write!(hex, "{b:02X}");
        hex
    })
}

/// What SOPS hashes for an unencrypted value (`sops.ToBytes`).
fn mac_bytes(value: &Yaml) -> Vec<u8> {
    match value {
        Yaml::Bool(b) => go_mac_bool(*b).as_bytes().to_vec(),
        other => scalar_text(other).into_bytes(),
    }
}

fn go_mac_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn scalar_text(value: &Yaml) -> String {
    match value {
        Yaml::String(s) => s.clone(),
        Yaml::Bool(b) => b.to_string(),
        Yaml::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => go_float(f),
            _ => n.to_string(),
        },
        _ => String::new(),
    }
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: shortest, no exponent.
fn go_float(f: f64) -> String {
    format!("{f}")
}
