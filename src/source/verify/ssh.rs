//! SSH signatures (SSHSIG, as `git` makes them with `gpg.format = ssh`)
//! against an allowed signers file (`gpg.ssh.allowedSignersFile`).
//!
//! A line of that file (ssh-keygen(1), ALLOWED SIGNERS) is
//! `principals [options] keytype base64-key [comment]`. kedge trusts every
//! key in it for namespace `git`, or for the namespaces its
//! `namespaces="…"` option lists; an option it does not implement
//! (`cert-authority`, `valid-after`, `valid-before`) refuses the file
//! rather than trusting more than it says.

use std::path::{Path, PathBuf};

use ssh_key::{HashAlg, PublicKey, SshSig};

use super::Refusal;

/// The namespace `git` signs commits and tags in.
const GIT_NAMESPACE: &str = "git";

/// One line of an allowed signers file.
#[derive(Debug, Clone)]
struct AllowedSigner {
    principals: String,
    /// `namespaces="…"`; `None`: any.
    namespaces: Option<Vec<String>>,
    key: PublicKey,
}

/// The keys of an allowed signers file.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    file: PathBuf,
    signers: Vec<AllowedSigner>,
}

impl AllowedSigners {
    /// Parses `text`, the content of `file`; an error names the line.
    pub fn parse(file: &Path, text: &str) -> Result<AllowedSigners, String> {
        let signers = parse_signers(file, text)?;
        if signers.is_empty() {
            return Err("it holds no key".to_string());
        }
        Ok(AllowedSigners {
            file: file.to_path_buf(),
            signers,
        })
    }

    /// The keys of every file in `dir` (ALLOWED SIGNERS lines or bare
    /// public keys, which any principal may use); an error names the file
    /// and line.
    pub fn read_dir(dir: &Path) -> Result<AllowedSigners, String> {
        let listing = std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        let mut files = Vec::new();
        for entry in listing {
            let path = entry
                .map_err(|err| format!("{}: {err}", dir.display()))?
                .path();
            if path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut signers = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file)
                .map_err(|err| format!("{}: {err}", file.display()))?;
            signers.extend(
                parse_signers(&file, &text).map_err(|err| format!("{}: {err}", file.display()))?,
            );
        }
        if signers.is_empty() {
            return Err(format!("{}: it holds no key", dir.display()));
        }
        Ok(AllowedSigners {
            file: dir.to_path_buf(),
            signers,
        })
    }

    /// Checks an armored SSH signature over `payload` made in namespace
    /// `git`; returns the signer.
    pub fn verify(&self, armored: &[u8], payload: &[u8]) -> Result<String, Refusal> {
        self.verify_in(GIT_NAMESPACE, armored, payload)
    }

    /// Checks an armored SSH signature over `payload` made in `namespace`;
    /// returns the signer.
    pub fn verify_in(
        &self,
        namespace: &str,
        armored: &[u8],
        payload: &[u8],
    ) -> Result<String, Refusal> {
        let signature =
            SshSig::from_pem(armored).map_err(|err| Refusal::Unreadable(err.to_string()))?;
        let key = describe_key(signature.public_key());
        let signer = self
            .signers
            .iter()
            .find(|signer| signer.key.key_data() == signature.public_key())
            .ok_or_else(|| Refusal::UnknownKey {
                key: key.clone(),
                file: self.file.clone(),
            })?;
        let bad = |detail: String| Refusal::BadSignature {
            key: key.clone(),
            detail,
        };
        if !signer.allows(namespace) {
            return Err(bad(format!(
                "the key of {} is not allowed namespace {namespace:?} in {}",
                signer.principals,
                self.file.display()
            )));
        }
        if signature.namespace() != namespace {
            return Err(bad(format!(
                "it is made for namespace {:?}, not {namespace:?}",
                signature.namespace()
            )));
        }
        signer
            .key
            .verify(namespace, payload, &signature)
            .map_err(|err| match err {
                ssh_key::Error::Crypto => {
                    bad("it does not match what it signs (changed after signing)".into())
                }
                other => bad(other.to_string()),
            })?;
        Ok(format!("{key} of {}", signer.principals))
    }
}

/// The keys of `text`, the content of `file`; an error names the line.
fn parse_signers(file: &Path, text: &str) -> Result<Vec<AllowedSigner>, String> {
    let mut signers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let signer = parse_line(line, file).map_err(|err| format!("line {}: {err}", index + 1))?;
        signers.push(signer);
    }
    Ok(signers)
}

impl AllowedSigner {
    fn allows(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|namespaces| namespaces.iter().any(|n| n == namespace))
    }
}

/// `SSH key SHA256:… (ssh-ed25519)`, as `ssh-keygen -l` names a key.
fn describe_key(key: &ssh_key::public::KeyData) -> String {
    format!(
        "SSH key {} ({})",
        key.fingerprint(HashAlg::Sha256),
        key.algorithm()
    )
}

/// A line of ALLOWED SIGNERS, or a bare public key (`ssh-ed25519 AAAA…
/// comment`, a `.pub` file's line), whose principal is then `file`.
fn parse_line(line: &str, file: &Path) -> Result<AllowedSigner, String> {
    let fields = split_fields(line)?;
    let mut fields = fields.iter().map(String::as_str).peekable();
    let principals = match fields.peek() {
        Some(first) if is_key_type(first) => file.display().to_string(),
        _ => fields.next().ok_or("no principals")?.to_string(),
    };
    let mut next = fields.next().ok_or("no key after the principals")?;
    let mut namespaces = None;
    if !is_key_type(next) {
        namespaces = parse_options(next)?;
        next = fields.next().ok_or("no key after the options")?;
    }
    let key_type = next;
    let key_data = fields.next().ok_or("no key data after the key type")?;
    let key = PublicKey::from_openssh(&format!("{key_type} {key_data}"))
        .map_err(|err| format!("bad {key_type} key: {err}"))?;
    Ok(AllowedSigner {
        principals,
        namespaces,
        key,
    })
}

/// Key types start with these, options never do.
fn is_key_type(field: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-"]
        .iter()
        .any(|prefix| field.starts_with(prefix))
}

/// The `namespaces` of an options field; every other option is refused.
fn parse_options(field: &str) -> Result<Option<Vec<String>>, String> {
    let mut namespaces = None;
    for option in split_outside_quotes(field, ',') {
        let (name, value) = option.split_once('=').unwrap_or((option.as_str(), ""));
        match name.to_ascii_lowercase().as_str() {
            "namespaces" => {
                let list = value.trim_matches('"');
                namespaces = Some(list.split(',').map(str::to_string).collect());
            }
            other => {
                return Err(format!(
                    "option {other:?} is not supported (kedge supports namespaces=\"…\")"
                ))
            }
        }
    }
    Ok(namespaces)
}

/// Whitespace-separated fields, where double quotes keep spaces in one.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !current.is_empty() {
                    fields.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if quoted {
        return Err("a quote is not closed".to_string());
    }
    if !current.is_empty() {
        fields.push(current);
    }
    Ok(fields)
}

fn split_outside_quotes(text: &str, separator: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            quoted = !quoted;
        }
        if c == separator && !quoted {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIClGi/mw+K5y71+JejBfplNGvCcM+op3UDv4BWXqWa3T";

    fn parse(text: &str) -> Result<AllowedSigners, String> {
        AllowedSigners::parse(Path::new("/etc/kedge/allowed_signers"), text)
    }

    #[test]
    fn lines_with_and_without_options_comments_and_blanks_are_read() {
        let text = format!(
            "# team keys\n\nalice@example.org {KEY} alice laptop\n\
             bob@example.org,*@ops.example.org namespaces=\"file,git\" {KEY}\n\
             carol@example.org namespaces=\"file\" {KEY}\n"
        );
        let signers = parse(&text).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(signers.signers.len(), 3);
        assert_eq!(signers.signers[0].principals, "alice@example.org");
        assert!(signers.signers[0].allows("git"));
        assert_eq!(
            signers.signers[1].namespaces,
            Some(vec!["file".to_string(), "git".to_string()])
        );
        assert!(signers.signers[1].allows("git"));
        assert!(!signers.signers[2].allows("git"));
    }

    #[test]
    fn unsupported_options_and_bad_keys_are_refused_with_their_line() {
        let ca = parse(&format!("\nalice@example.org cert-authority {KEY}\n"));
        assert!(
            ca.as_ref()
                .is_err_and(|err| err.starts_with("line 2:") && err.contains("cert-authority")),
            "{ca:?}"
        );
        let validity = parse(&format!("a@x valid-after=\"20240101\" {KEY}\n"));
        assert!(
            validity.as_ref().is_err_and(|e| e.contains("valid-after")),
            "{validity:?}"
        );
        let bad = parse("a@x ssh-ed25519 AAAAnotakey\n");
        assert!(
            bad.as_ref()
                .is_err_and(|e| e.starts_with("line 1: bad ssh-ed25519 key")),
            "{bad:?}"
        );
        let empty = parse("# nobody\n");
        assert!(empty.is_err_and(|e| e.contains("no key")));
    }

    #[test]
    fn an_unclosed_quote_is_refused() {
        let line = format!("a@x namespaces=\"git {KEY}");
        assert!(parse(&line).is_err_and(|e| e.contains("quote")));
    }

    #[test]
    fn a_signature_that_is_not_sshsig_is_unreadable() {
        let signers = parse(&format!("a@x {KEY}\n")).unwrap_or_else(|err| panic!("{err}"));
        let refusal = signers.verify(
            b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n",
            b"payload",
        );
        assert!(
            matches!(refusal, Err(Refusal::Unreadable(_))),
            "{refusal:?}"
        );
    }
}
