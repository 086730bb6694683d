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

use sha2::{Digest, Sha256};

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
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update((input.len() as u64).to_le_bytes());
        hasher.update(input);
    }
    let digest: String = hasher.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = super::repo_root().join("tests/fixtures/sops/recorded");
    let path = dir.join(digest);
    if let Ok(output) = std::fs::read(&path) {
        return output;
    }
    let output = run();
    std::fs::create_dir_all(&dir).expect("create the recordings directory");
    std::fs::write(&path, &output).expect("record the sops output");
    output
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
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, plaintext).expect("write plaintext");
    let config = format!(
        "creation_rules:\n- age: {}\n{}",
        key.recipient,
        rule.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    std::fs::write(dir.path().join(".sops.yaml"), config).expect("write .sops.yaml");
    let out = Command::new(sops())
        .current_dir(dir.path())
        .arg("encrypt")
        .args(args)
        .arg(&file)
        .output()
        .expect("run sops encrypt");
    assert!(
        out.status.success(),
        "sops encrypt {name}: {}",
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
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, encrypted).expect("write encrypted");
    let out = Command::new(sops())
        .current_dir(dir.path())
        .env("SOPS_AGE_KEY_FILE", &key.file)
        .arg("decrypt")
        .arg(&file)
        .output()
        .expect("run sops decrypt");
    assert!(
        out.status.success(),
        "sops decrypt {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
