//! The real sops CLI (built by scripts/sops-cli.sh; `KEDGE_SOPS_BIN`
//! overrides it) and age keys for the SOPS tests.
//!
//! What the CLI printed is recorded under `tests/fixtures/sops/recorded/`,
//! named by a digest of everything it was given (key, file name, content,
//! flags, `.sops.yaml` rule): a run finds it there and needs no sops, so CI
//! does not build it. A test whose input changes records anew, building
//! sops once; commit the new recordings. The age keys are fixed
//! (`tests/fixtures/sops/keys/`) for the digests to stay the same; they
//! protect nothing but these fixtures.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The sops binary, built once per test binary.
pub fn sops() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        super::built_tool("scripts/sops-cli.sh", "KEDGE_SOPS_BIN")
            .unwrap_or_else(|e| panic!("the sops CLI is needed: {e}"))
    })
}

/// An age key pair, its identity copied to `dir/NAME.agekey`.
pub struct AgeKey {
    pub recipient: String,
    pub file: PathBuf,
}

impl AgeKey {
    /// The fixed test key `name` (`fleet` or `other`).
    pub fn fixture(dir: &Path, name: &str) -> AgeKey {
        let fixed = super::repo_root().join(format!("tests/fixtures/sops/keys/{name}.agekey"));
        let text =
            std::fs::read_to_string(&fixed).unwrap_or_else(|e| panic!("{}: {e}", fixed.display()));
        let identity: age::x25519::Identity = text
            .lines()
            .find(|l| l.starts_with("AGE-SECRET-KEY-"))
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{}: no age identity", fixed.display()));
        let file = dir.join(format!("{name}.agekey"));
        std::fs::write(&file, text).expect("write age key");
        AgeKey {
            recipient: identity.to_public().to_string(),
            file,
        }
    }
}

/// The recorded output of sops for `inputs`, or `run`'s, recorded.
fn recorded(inputs: &[&[u8]], run: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    super::recorded("sops", inputs, run)
}

/// `plaintext` (whose format `sops` tells by `name`'s extension) encrypted
/// for `key` by the real sops, with extra `args` (`--encrypted-regex …`).
pub fn encrypt(key: &AgeKey, name: &str, plaintext: &[u8], args: &[&str]) -> Vec<u8> {
    encrypt_with_rule(key, name, plaintext, args, "")
}

/// As [`encrypt`], the keys and `rule` (more keys of a `.sops.yaml`
/// creation rule, e.g. `mac_only_encrypted: true`, which has no flag)
/// given in a `.sops.yaml`.
pub fn encrypt_with_rule(
    key: &AgeKey,
    name: &str,
    plaintext: &[u8],
    args: &[&str],
    rule: &str,
) -> Vec<u8> {
    let flags = args.join("\0");
    let inputs: [&[u8]; 6] = [
        b"encrypt",
        key.recipient.as_bytes(),
        name.as_bytes(),
        plaintext,
        flags.as_bytes(),
        rule.as_bytes(),
    ];
    recorded(&inputs, || sops_encrypt(key, name, plaintext, args, rule))
}

fn sops_encrypt(key: &AgeKey, name: &str, plaintext: &[u8], args: &[&str], rule: &str) -> Vec<u8> {
    let config = format!(
        "creation_rules:\n- age: {}\n{}",
        key.recipient,
        rule.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    run_sops("encrypt", args, name, plaintext, &[], Some(&config))
}

/// Runs `sops ACTION ARGS… NAME` with `env` in a fresh directory holding
/// `input` as `name` (and `.sops.yaml`, if given); returns what it printed.
fn run_sops(
    action: &str,
    args: &[&str],
    name: &str,
    input: &[u8],
    env: &[(&str, &Path)],
    sops_yaml: Option<&str>,
) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, input).expect("write the input");
    if let Some(config) = sops_yaml {
        std::fs::write(dir.path().join(".sops.yaml"), config).expect("write .sops.yaml");
    }
    let out = Command::new(sops())
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .arg(action)
        .args(args)
        .arg(&file)
        .output()
        .expect("run sops");
    assert!(
        out.status.success(),
        "sops {action} {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `sops decrypt` of `encrypted` (named `name`) with `key`: the reference.
pub fn decrypt(key: &AgeKey, name: &str, encrypted: &[u8]) -> Vec<u8> {
    let inputs: [&[u8]; 4] = [
        b"decrypt",
        key.recipient.as_bytes(),
        name.as_bytes(),
        encrypted,
    ];
    recorded(&inputs, || sops_decrypt(key, name, encrypted))
}

fn sops_decrypt(key: &AgeKey, name: &str, encrypted: &[u8]) -> Vec<u8> {
    let env = [("SOPS_AGE_KEY_FILE", key.file.as_path())];
    run_sops("decrypt", &[], name, encrypted, &env, None)
}

/// The fixed OpenPGP test key (`tests/fixtures/sops/keys/fleet.pgp.asc`,
/// ed25519 with a cv25519 encryption subkey, no passphrase), imported into
/// a GNUPGHOME of its own for the sops CLI, and copied to a keyring file.
pub struct PgpKey {
    pub fingerprint: String,
    pub file: PathBuf,
    home: tempfile::TempDir,
}

impl PgpKey {
    pub fn fixture(dir: &Path) -> PgpKey {
        let fixed = super::repo_root().join("tests/fixtures/sops/keys/fleet.pgp.asc");
        let file = dir.join("fleet.pgp.asc");
        std::fs::copy(&fixed, &file).unwrap_or_else(|e| panic!("{}: {e}", fixed.display()));
        PgpKey {
            // `gpg --list-keys` of the fixture: the primary key's fingerprint.
            fingerprint: "92859274BB8C5054587A3D9A0781A049F06B95F6".to_string(),
            file,
            home: tempfile::Builder::new()
                .prefix("gnupg")
                .tempdir_in("/tmp")
                .expect("tempdir"),
        }
    }

    /// A GNUPGHOME holding the key, for the sops CLI (imported on first
    /// use only: a recorded run needs no gpg).
    fn gnupg_home(&self) -> &Path {
        let home = self.home.path();
        if !home.join("pubring.kbx").exists() {
            let out = Command::new("gpg")
                .args(["--batch", "--import"])
                .arg(&self.file)
                .env("GNUPGHOME", home)
                .output()
                .expect("run gpg --import (Debian package gnupg)");
            assert!(
                out.status.success(),
                "gpg --import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        home
    }
}

impl Drop for PgpKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .status();
    }
}

/// `plaintext` encrypted for the OpenPGP `key` by the real sops (which
/// encrypts with gpg), with extra `args` (`--encrypted-regex …`).
pub fn encrypt_pgp(key: &PgpKey, name: &str, plaintext: &[u8], args: &[&str]) -> Vec<u8> {
    let flags = args.join("\0");
    let inputs: [&[u8]; 5] = [
        b"encrypt-pgp",
        key.fingerprint.as_bytes(),
        name.as_bytes(),
        plaintext,
        flags.as_bytes(),
    ];
    recorded(&inputs, || {
        let mut all = vec!["--pgp", key.fingerprint.as_str()];
        all.extend(args);
        sops_pgp(key, "encrypt", &all, name, plaintext)
    })
}

/// `sops decrypt` of `encrypted` with the OpenPGP `key`: the reference.
pub fn decrypt_pgp(key: &PgpKey, name: &str, encrypted: &[u8]) -> Vec<u8> {
    let inputs: [&[u8]; 4] = [
        b"decrypt-pgp",
        key.fingerprint.as_bytes(),
        name.as_bytes(),
        encrypted,
    ];
    recorded(&inputs, || sops_pgp(key, "decrypt", &[], name, encrypted))
}

fn sops_pgp(key: &PgpKey, action: &str, args: &[&str], name: &str, input: &[u8]) -> Vec<u8> {
    let env = [("GNUPGHOME", key.gnupg_home())];
    run_sops(action, args, name, input, &env, None)
}
