//! The real sops CLI (built by scripts/sops-cli.sh; `KEDGE_SOPS_BIN`
//! overrides it) and age keys for the SOPS tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use age::secrecy::ExposeSecret;

/// The sops binary, built once per test binary.
pub fn sops() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        super::built_tool("scripts/sops-cli.sh", "KEDGE_SOPS_BIN")
            .unwrap_or_else(|e| panic!("the sops CLI is needed: {e}"))
    })
}

/// An age key pair, its identity written to `dir/NAME.agekey`.
pub struct AgeKey {
    pub recipient: String,
    pub file: PathBuf,
}

impl AgeKey {
    pub fn generate(dir: &Path, name: &str) -> AgeKey {
        let identity = age::x25519::Identity::generate();
        let file = dir.join(format!("{name}.agekey"));
        let text = format!(
            "# created by the kedge tests\n{}\n",
            identity.to_string().expose_secret()
        );
        std::fs::write(&file, text).expect("write age key");
        AgeKey {
            recipient: identity.to_public().to_string(),
            file,
        }
    }
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
