//! OpenPGP signatures (as `git` makes them with `gpg`) against a keyring
//! file of public keys, armored or binary (`gpg --export [--armor]`).
//!
//! Every key in the file is trusted, as its primary key or a signing
//! subkey bound to it; a revoked key or subkey is not. A signature names
//! its key by fingerprint or key id (issuer subpackets); kedge looks only
//! for that key.

use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;

use super::Refusal;

/// The public keys of a keyring file.
#[derive(Debug, Clone)]
pub struct Keyring {
    file: PathBuf,
    keys: Vec<SignedPublicKey>,
}

impl Keyring {
    /// Parses `bytes`, the content of `file`: binary keys, or armored
    /// blocks (several, when exports were concatenated).
    pub fn parse(file: &Path, bytes: &[u8]) -> Result<Keyring, String> {
        let not_keys = |err: pgp::errors::Error| format!("not OpenPGP public keys: {err}");
        let mut keys = Vec::new();
        for input in armored_blocks(bytes).unwrap_or_else(|| vec![bytes]) {
            let (parsed, _) = SignedPublicKey::from_reader_many(input).map_err(not_keys)?;
            for key in parsed {
                keys.push(key.map_err(not_keys)?);
            }
        }
        if keys.is_empty() {
            return Err("it holds no key".to_string());
        }
        Ok(Keyring {
            file: file.to_path_buf(),
            keys,
        })
    }

    /// Checks an armored detached signature over `payload`; returns the
    /// signer.
    pub fn verify(&self, armored: &[u8], payload: &[u8]) -> Result<String, Refusal> {
        let (signature, _) = DetachedSignature::from_armor_single(armored)
            .map_err(|err| Refusal::Unreadable(err.to_string()))?;
        let signature = signature.signature;
        let named = issuer(&signature);
        let (key, signer) = self.find(&signature).ok_or_else(|| Refusal::UnknownKey {
            key: named.clone(),
            file: self.file.clone(),
        })?;
        let bad = |detail: String| Refusal::BadSignature {
            key: named.clone(),
            detail,
        };
        if let Some(revoked) = key.revoked() {
            return Err(bad(format!(
                "{revoked} is revoked in {}",
                self.file.display()
            )));
        }
        key.verify(&signature, payload).map_err(bad)?;
        Ok(signer)
    }

    /// The key (primary or signing subkey) `signature` names, with a
    /// description of it.
    fn find(&self, signature: &Signature) -> Option<(Candidate<'_>, String)> {
        for key in &self.keys {
            let owner = key
                .details
                .users
                .first()
                .map(|user| String::from_utf8_lossy(user.id.id()).into_owned())
                .unwrap_or_default();
            if names(signature, key) {
                let description = format!("OpenPGP key {:X} of {owner}", key.fingerprint());
                return Some((Candidate::Primary(key), description));
            }
            for subkey in &key.public_subkeys {
                if names(signature, &subkey.key) {
                    let description = format!(
                        "OpenPGP subkey {:X} of key {:X} of {owner}",
                        subkey.key.fingerprint(),
                        key.fingerprint()
                    );
                    return Some((Candidate::Subkey(key, subkey), description));
                }
            }
        }
        None
    }
}

/// A key of the keyring a signature names.
enum Candidate<'a> {
    Primary(&'a SignedPublicKey),
    Subkey(&'a SignedPublicKey, &'a pgp::composed::SignedPublicSubKey),
}

impl Candidate<'_> {
    /// What is revoked, if anything: the key or the subkey.
    fn revoked(&self) -> Option<&'static str> {
        match self {
            Candidate::Primary(key) if !key.details.revocation_signatures.is_empty() => {
                Some("the key")
            }
            Candidate::Subkey(key, _) if !key.details.revocation_signatures.is_empty() => {
                Some("the key")
            }
            Candidate::Subkey(_, subkey)
                if subkey
                    .signatures
                    .iter()
                    .any(|s| s.typ() == Some(SignatureType::SubkeyRevocation)) =>
            {
                Some("the subkey")
            }
            _ => None,
        }
    }

    fn verify(&self, signature: &Signature, payload: &[u8]) -> Result<(), String> {
        match self {
            Candidate::Primary(key) => signature
                .verify(&key.primary_key, payload)
                .map_err(|err| err.to_string()),
            Candidate::Subkey(key, subkey) => {
                subkey
                    .verify_bindings(&key.primary_key)
                    .map_err(|err| format!("the subkey is not bound to its key: {err}"))?;
                if !subkey.signatures.iter().any(|s| s.key_flags().sign()) {
                    return Err("the subkey is not a signing key".to_string());
                }
                signature
                    .verify(&subkey.key, payload)
                    .map_err(|err| err.to_string())
            }
        }
    }
}

/// The armored blocks of `bytes`, each from its BEGIN line; `None` when
/// there is none (binary keys).
fn armored_blocks(bytes: &[u8]) -> Option<Vec<&[u8]>> {
    const BEGIN: &[u8] = b"-----BEGIN PGP PUBLIC KEY BLOCK-----";
    let starts: Vec<usize> = (0..bytes.len())
        .filter(|&at| bytes[at..].starts_with(BEGIN))
        .collect();
    if starts.is_empty() {
        return None;
    }
    let ends = starts.iter().skip(1).copied().chain([bytes.len()]);
    Some(
        starts
            .iter()
            .zip(ends)
            .map(|(&start, end)| &bytes[start..end])
            .collect(),
    )
}

/// Whether `signature` names `key` by fingerprint or key id.
fn names(signature: &Signature, key: &impl KeyDetails) -> bool {
    let fingerprint = key.fingerprint();
    let key_id = key.legacy_key_id();
    signature
        .issuer_fingerprint()
        .into_iter()
        .any(|f| *f == fingerprint)
        || signature
            .issuer_key_id()
            .into_iter()
            .any(|id| *id == key_id)
}

/// How a signature names its key: fingerprint, else key id.
fn issuer(signature: &Signature) -> String {
    if let Some(fingerprint) = signature.issuer_fingerprint().first() {
        return format!("OpenPGP key {fingerprint:X}");
    }
    match signature.issuer_key_id().first() {
        Some(id) => format!("OpenPGP key id {}", id.to_string().to_uppercase()),
        None => "an OpenPGP key it does not name".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Keyring, String> {
        Keyring::parse(Path::new("/etc/kedge/keyring.asc"), bytes)
    }

    #[test]
    fn a_file_without_keys_is_refused() {
        assert!(parse(b"").is_err());
        assert!(parse(b"not a key\n").is_err());
        let signature = b"-----BEGIN PGP SIGNATURE-----\n\n-----END PGP SIGNATURE-----\n";
        assert!(parse(signature).is_err());
    }

    #[test]
    fn concatenated_armored_exports_are_all_read() {
        let twice = format!("{TEST_KEY}\n{TEST_KEY}");
        let keyring = parse(twice.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(keyring.keys.len(), 2);
    }

    #[test]
    fn an_armored_public_key_is_read_with_its_user() {
        let keyring = parse(TEST_KEY.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(keyring.keys.len(), 1);
        let user = keyring.keys[0]
            .details
            .users
            .first()
            .map(|u| u.id.id().to_vec());
        assert_eq!(
            user.as_deref(),
            Some(&b"kedge test <test@kedge.invalid>"[..])
        );
    }

    #[test]
    fn a_signature_that_is_not_openpgp_is_unreadable() {
        let keyring = parse(TEST_KEY.as_bytes()).unwrap_or_else(|err| panic!("{err}"));
        let refusal = keyring.verify(
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAA\n-----END PGP SIGNATURE-----\n",
            b"x",
        );
        assert!(
            matches!(refusal, Err(Refusal::Unreadable(_))),
            "{refusal:?}"
        );
    }

    /// `gpg --quick-generate-key 'kedge test <test@kedge.invalid>' ed25519 sign`,
    /// exported with `gpg --export --armor`.
    const TEST_KEY: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----

mDMEaw2kqxYJKwYBBAHaRw8BAQdAXDDS1leseE2RiH6ZMOa+2UwS4t3v68u28rzX
Se06dP+0H2tlZGdlIHRlc3QgPHRlc3RAa2VkZ2UuaW52YWxpZD6IkAQTFggAOBYh
BF7iHv4uPxxGCmt66D2zZeSS/Z/XBQJrDaSrAhsDBQsJCAcCBhUKCQgLAgQWAgMB
Ah4BAheAAAoJED2zZeSS/Z/X8koBAIG8QodS78hcvnlV/k6R+fUrM7ewqNCWuL/N
Xe3XVE7tAQC6dpP/LS5jL/3qewowsi2/ut9G4TPjreSTodjS+AEQAg==
=KV3D
-----END PGP PUBLIC KEY BLOCK-----
";
}
