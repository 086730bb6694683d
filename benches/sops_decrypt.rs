//! SOPS benchmark: building and decrypting 500 encrypted Secrets as a
//! kustomization run does (native build, the MAC of each file checked, each
//! object decrypted in memory) against the real `sops decrypt` of the same
//! files, one process per file, in the same run.
//!
//! The files are encrypted by the real sops for one age key, with
//! `encrypted_regex: ^(data|stringData)$` (what Kubernetes users write).
//! Figures: the median of `KEDGE_BENCH_RUNS` runs (default 5) of each.
//!
//! Run: `cargo bench --bench sops_decrypt` (builds sops with scripts/sops-cli.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use age::secrecy::ExposeSecret;
use kedge::postbuild::{self, sops::Keys};

const SECRETS: usize = 500;

fn sops_cli() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/sops-cli.sh"))
        .arg("path")
        .output()
        .expect("run scripts/sops-cli.sh");
    assert!(out.status.success(), "scripts/sops-cli.sh path failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn secret(index: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: app-{index:03}\n  namespace: apps\n  labels:\n    app: app-{index:03}\ntype: Opaque\nstringData:\n  username: user-{index}\n  password: {password}\n  url: postgres://db-{index}.internal:5432/app\n",
        password = format!("{index:08x}").repeat(4)
    )
}

/// Writes the 500 Secrets under `dir/secrets/`, encrypted by sops, two
/// encryptions at a time.
fn encrypt_all(sops: &Path, dir: &Path, recipient: &str) -> Vec<PathBuf> {
    let secrets = dir.join("secrets");
    std::fs::create_dir_all(&secrets).expect("mkdir");
    std::fs::write(
        dir.join(".sops.yaml"),
        format!("creation_rules:\n- age: {recipient}\n  encrypted_regex: ^(data|stringData)$\n"),
    )
    .expect(".sops.yaml");
    let files: Vec<PathBuf> = (0..SECRETS)
        .map(|i| secrets.join(format!("app-{i:03}.yaml")))
        .collect();
    std::thread::scope(|scope| {
        for half in files.chunks(SECRETS.div_ceil(2)) {
            scope.spawn(move || {
                for (file, index) in half.iter().zip(0..) {
                    let name = file.file_stem().and_then(|n| n.to_str()).unwrap_or("");
                    let index: usize = name.trim_start_matches("app-").parse().unwrap_or(index);
                    std::fs::write(file, secret(index)).expect("plaintext");
                    let status = Command::new(sops)
                        .current_dir(dir)
                        .args(["encrypt", "--in-place"])
                        .arg(file)
                        .status()
                        .expect("run sops encrypt");
                    assert!(status.success(), "sops encrypt {}", file.display());
                }
            });
        }
    });
    files
}

/// What a kustomization run does with the tree: build, check each file's
/// MAC, decrypt each object.
fn kedge_build_and_decrypt(dir: &Path, key_file: &Path) -> usize {
    let keys = Arc::new(Keys::read(key_file).expect("age key"));
    let resources = kedge::kustomize::with_secret_sources(
        Arc::new(postbuild::SecretFiles(keys.clone())),
        || kedge::kustomize::build_plain_dir(dir),
    )
    .expect("build");
    let mut decrypted = 0;
    for resource in &resources {
        let mut object = resource.to_json();
        let origin = resource.origin_file();
        if postbuild::decrypt(&mut object, origin, None, &keys).expect("decrypt") {
            decrypted += 1;
        }
        assert!(object.get("sops").is_none());
    }
    decrypted
}

fn sops_decrypt_all(sops: &Path, files: &[PathBuf], key_file: &Path) {
    for file in files {
        let out = Command::new(sops)
            .env("SOPS_AGE_KEY_FILE", key_file)
            .arg("decrypt")
            .arg(file)
            .output()
            .expect("run sops decrypt");
        assert!(out.status.success(), "sops decrypt {}", file.display());
    }
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let sops = sops_cli();
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = age::x25519::Identity::generate();
    let key_file = dir.path().join("age.agekey");
    std::fs::write(
        &key_file,
        format!("{}\n", identity.to_string().expose_secret()),
    )
    .expect("key file");
    let started = Instant::now();
    let files = encrypt_all(&sops, dir.path(), &identity.to_public().to_string());
    println!(
        "setup: {SECRETS} Secrets encrypted by sops in {:.1?}",
        started.elapsed()
    );
    let tree = dir.path().join("secrets");

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let decrypted = kedge_build_and_decrypt(&tree, &key_file);
        ours.push(started.elapsed());
        assert_eq!(decrypted, SECRETS);
        let started = Instant::now();
        sops_decrypt_all(&sops, &files, &key_file);
        theirs.push(started.elapsed());
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("{SECRETS} encrypted Secrets, median of {runs} runs:");
    println!(
        "  kedge build + MAC check + decrypt (in process): {:>10.1} ms",
        ours.as_secs_f64() * 1e3
    );
    println!(
        "  sops decrypt, one process per file:             {:>10.1} ms",
        theirs.as_secs_f64() * 1e3
    );
    println!(
        "  ratio kedge / sops: {:.3}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
