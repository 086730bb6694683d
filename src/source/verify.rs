//! Signature verification of a fetched Git source (`verify = { … }`,
//! Flux's `spec.verify`): the commit, the annotated tag, or both must carry
//! a valid SSH or OpenPGP signature by a key of the configured files.
//!
//! # Design
//! It runs in [`super::sync`] between the fetch and the artifact, on every
//! sync (one object read and one signature check): a refused object makes
//! the sync fail, so no artifact of it is made and the last good one stays
//! current. Git signs an object by embedding the signature in it: a commit
//! in its `gpgsig` header, a tag after its message; gix splits the object
//! into the armored signature and the exact bytes it covers. The armor says
//! which format it is; [`ssh`] and [`pgp`] check it against the trusted
//! keys, which are read from their files at each sync, like credentials.
//!
//! # Current limitations
//! - OpenPGP: key and signature expiry are not checked (revocations are);
//!   X.509 (`gpgsm`) signatures are refused.
//! - SSH: certificates (`cert-authority`) and the `valid-after` /
//!   `valid-before` options are refused in the allowed signers file.

pub mod pgp;
pub mod ssh;

use std::path::{Path, PathBuf};

use gix::bstr::ByteSlice;

use super::git::FetchedCommit;
use super::{Error, Result};
use crate::config::{GitSource, GitVerify};

/// Why a commit or tag was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it is not signed")]
    Unsigned,
    #[error("it is a lightweight tag: there is no tag object to carry a signature")]
    LightweightTag,
    #[error("the source does not follow a tag (verify.mode needs ref.tag or ref.semver)")]
    NoTag,
    #[error("it is signed with {format}, which kedge does not verify")]
    UnsupportedFormat { format: &'static str },
    #[error("it has an {format} signature, and verify.{setting} is not configured")]
    NoTrustedKeys {
        format: &'static str,
        setting: &'static str,
    },
    #[error("its signature cannot be read: {0}")]
    Unreadable(String),
    #[error("it is signed by {key}, which is not in {}", .file.display())]
    UnknownKey { key: String, file: PathBuf },
    #[error("its signature by {key} does not verify: {detail}")]
    BadSignature { key: String, detail: String },
}

/// The commit or tag a verification is about, as its status names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedObject {
    Commit(gix::ObjectId),
    Tag {
        name: String,
        id: Option<gix::ObjectId>,
    },
}

impl std::fmt::Display for SignedObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignedObject::Commit(id) => write!(f, "commit {id}"),
            SignedObject::Tag { name, id: Some(id) } => write!(f, "tag {name} ({id})"),
            SignedObject::Tag { name, id: None } => write!(f, "tag {name}"),
        }
    }
}

/// An armored signature and the bytes of the object it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub armored: Vec<u8>,
    pub payload: Vec<u8>,
}

/// The signature of a raw commit object (its `gpgsig` header), if any.
pub fn commit_signature(data: &[u8]) -> Result<Option<Signed>, Refusal> {
    match gix::objs::CommitRefIter::signature(data, gix::hash::Kind::Sha1) {
        Ok(found) => Ok(found.map(|(armored, payload)| Signed {
            armored: armored.to_vec(),
            payload: payload.to_bstring().into(),
        })),
        Err(err) => Err(Refusal::Unreadable(err.to_string())),
    }
}

/// The signature of a raw tag object (after its message), if any.
pub fn tag_signature(data: &[u8]) -> Option<Signed> {
    gix::objs::TagRefIter::signature(data).map(|(signature, payload)| Signed {
        armored: signature.data.to_vec(),
        payload: payload.to_bstring().into(),
    })
}

/// The keys a source trusts, read from the files its `verify` names.
pub struct TrustedKeys {
    ssh: Option<ssh::AllowedSigners>,
    pgp: Option<pgp::Keyring>,
}

impl TrustedKeys {
    pub fn load(source: &GitSource, verify: &GitVerify) -> Result<TrustedKeys> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(super::credential_error(
                crate::config::SourceKind::Git,
                &source.name,
                path,
            ))
        };
        let unusable = |path: &Path, message: String| Error::TrustedKeys {
            source_name: source.name.clone(),
            path: path.to_path_buf(),
            message,
        };
        let ssh = match &verify.ssh_allowed_signers_file {
            Some(path) => Some(
                ssh::AllowedSigners::parse(path, &String::from_utf8_lossy(&read(path)?))
                    .map_err(|err| unusable(path, err))?,
            ),
            None => None,
        };
        let pgp = match &verify.gpg_keyring_file {
            Some(path) => {
                Some(pgp::Keyring::parse(path, &read(path)?).map_err(|err| unusable(path, err))?)
            }
            None => None,
        };
        Ok(TrustedKeys { ssh, pgp })
    }

    /// Checks `signed` and returns who signed it.
    pub fn verify(&self, signed: &Signed) -> Result<String, Refusal> {
        match gix::objs::signature::Format::from_signature(signed.armored.trim_start()) {
            Some(gix::objs::signature::Format::Ssh) => match &self.ssh {
                Some(signers) => signers.verify(&signed.armored, &signed.payload),
                None => Err(Refusal::NoTrustedKeys {
                    format: "SSH",
                    setting: "ssh_allowed_signers_file",
                }),
            },
            Some(gix::objs::signature::Format::OpenPgp) => match &self.pgp {
                Some(keyring) => keyring.verify(&signed.armored, &signed.payload),
                None => Err(Refusal::NoTrustedKeys {
                    format: "OpenPGP",
                    setting: "gpg_keyring_file",
                }),
            },
            Some(gix::objs::signature::Format::X509) => Err(Refusal::UnsupportedFormat {
                format: "X.509 (gpgsm)",
            }),
            None => Err(Refusal::Unreadable(
                "no SSH or OpenPGP armor in it".to_string(),
            )),
        }
    }
}

/// Verifies what `verify.mode` asks of `fetched`, in the repository it
/// was fetched into.
pub fn verify_fetched(
    repo: &gix::Repository,
    source: &GitSource,
    verify: &GitVerify,
    fetched: &FetchedCommit,
) -> Result<()> {
    let keys = TrustedKeys::load(source, verify)?;
    if verify.mode.verifies_tag() {
        let tag = fetched.tag.as_ref().ok_or_else(|| Error::Unverified {
            source_name: source.name.clone(),
            object: SignedObject::Commit(fetched.commit),
            refusal: Box::new(Refusal::NoTag),
        })?;
        let object = SignedObject::Tag {
            name: tag.name.clone(),
            id: tag.object,
        };
        let signed = match tag.object {
            Some(id) => read_object(repo, source, id).map(|data| tag_signature(&data)),
            None => Err(Refusal::LightweightTag),
        };
        check(source, &keys, object, signed)?;
    }
    if verify.mode.verifies_commit() {
        let signed =
            read_object(repo, source, fetched.commit).and_then(|data| commit_signature(&data));
        check(source, &keys, SignedObject::Commit(fetched.commit), signed)?;
    }
    Ok(())
}

fn check(
    source: &GitSource,
    keys: &TrustedKeys,
    object: SignedObject,
    signed: Result<Option<Signed>, Refusal>,
) -> Result<()> {
    let verified = signed
        .and_then(|signed| signed.ok_or(Refusal::Unsigned))
        .and_then(|signed| keys.verify(&signed));
    match verified {
        Ok(signer) => {
            tracing::debug!(source = %source.source_ref(), "{object} is signed by {signer}");
            Ok(())
        }
        Err(refusal) => Err(Error::Unverified {
            source_name: source.name.clone(),
            object,
            refusal: Box::new(refusal),
        }),
    }
}

fn read_object(
    repo: &gix::Repository,
    source: &GitSource,
    id: gix::ObjectId,
) -> Result<Vec<u8>, Refusal> {
    repo.find_object(id)
        .map(|object| object.data.clone())
        .map_err(|err| {
            Refusal::Unreadable(format!(
                "reading it from the repository of source {}: {}",
                source.name,
                super::git::describe(&err)
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNATURE: &str = "-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----";

    fn commit_with(signature_header: &str) -> Vec<u8> {
        format!(
            "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\
             author A <a@x> 1700000000 +0000\n\
             committer A <a@x> 1700000000 +0000\n\
             {signature_header}\
             \n\
             message\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_commit_signature_is_its_gpgsig_header_and_the_payload_is_the_commit_without_it() {
        let folded = SIGNATURE.replace('\n', "\n ");
        let data = commit_with(&format!("gpgsig {folded}\n"));
        let signed = commit_signature(&data)
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("a signature in {}", String::from_utf8_lossy(&data)));
        assert_eq!(
            String::from_utf8_lossy(&signed.armored),
            format!("{SIGNATURE}\n")
        );
        assert_eq!(signed.payload, commit_with(""));
    }

    #[test]
    fn a_commit_without_gpgsig_has_no_signature() {
        assert_eq!(commit_signature(&commit_with("")), Ok(None));
    }

    #[test]
    fn a_tag_signature_is_the_armor_after_its_message() {
        let head = "object 4b825dc642cb6eb9a060e54bf8d69288fbee4904\ntype commit\ntag v1\n\
                    tagger A <a@x> 1700000000 +0000\n\nrelease\n";
        let data = format!("{head}{SIGNATURE}\n");
        let signed = tag_signature(data.as_bytes());
        assert_eq!(
            signed,
            Some(Signed {
                armored: format!("{SIGNATURE}\n").into_bytes(),
                payload: head.as_bytes().to_vec(),
            })
        );
        assert_eq!(tag_signature(head.as_bytes()), None);
    }

    #[test]
    fn a_format_without_keys_is_refused_by_name() {
        let keys = TrustedKeys {
            ssh: None,
            pgp: None,
        };
        let signed = Signed {
            armored: SIGNATURE.as_bytes().to_vec(),
            payload: Vec::new(),
        };
        assert_eq!(
            keys.verify(&signed),
            Err(Refusal::NoTrustedKeys {
                format: "SSH",
                setting: "ssh_allowed_signers_file"
            })
        );
        let x509 = Signed {
            armored: b"-----BEGIN SIGNED MESSAGE-----\n".to_vec(),
            payload: Vec::new(),
        };
        assert!(matches!(
            keys.verify(&x509),
            Err(Refusal::UnsupportedFormat { .. })
        ));
    }
}
