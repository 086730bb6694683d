//! Shared helpers for the integration tests.
//!
//! # Design
//! One test control plane (tools/testcluster: etcd + kube-apiserver +
//! kube-controller-manager) per test binary, started on first use and shared
//! by every test. Each test gets its own namespace through [`TestNamespace`]
//! and its own `kube::Client` (a client belongs to the tokio runtime that made
//! it, and every `#[tokio::test]` has its own runtime).
//!
//! The control plane's stdin is a pipe held by this process: when the test
//! binary exits, for whatever reason, the pipe closes and the control plane
//! stops (`--exit-on-stdin-close`). Nothing is left running.
//!
//! A control plane that cannot start fails the test with the reason and the
//! path of its log; it never skips.

#![allow(dead_code)]

pub mod admission;
pub mod capture;
pub mod charts;
pub mod cluster;
pub mod cosign;
pub mod fetch;
pub mod git;
pub mod gitea;
pub mod helm;
pub mod hostile_s3;
pub mod http_server;
pub mod proxy;
pub mod registry;
pub mod s3;
pub mod sops;

pub use cluster::{built_tool, cluster, repo_root, TestNamespace};

use std::time::{Duration, Instant};

/// `kedge ARGS --config CONFIG`, run to completion.
pub fn kedge_cli(config: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run kedge")
}

/// `kedge reconcile source SOURCE` against the daemon of `config`, which
/// must succeed.
pub fn reconcile_source(config: &std::path::Path, source: &str) {
    let output = kedge_cli(config, &["reconcile", "source", source]);
    assert!(
        output.status.success(),
        "kedge reconcile source {source}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The files of an artifact, unpacked and verified: path → content.
pub fn artifact_files(
    artifact: &kedge::source::Artifact,
) -> std::collections::BTreeMap<String, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    kedge::source::extract_verified(artifact, dir.path()).expect("artifact unpacks");
    let mut files = std::collections::BTreeMap::new();
    collect_files(dir.path(), dir.path(), &mut files);
    files
}

fn collect_files(
    root: &std::path::Path,
    dir: &std::path::Path,
    files: &mut std::collections::BTreeMap<String, String>,
) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("inside");
            let content = std::fs::read_to_string(&path).expect("read file");
            files.insert(relative.to_string_lossy().into_owned(), content);
        }
    }
}

/// The field managers recorded on an object, in managedFields order.
pub fn field_managers(
    metadata: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Vec<String> {
    metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.manager.clone())
        .collect()
}

/// Polls `check` every 50 ms until it holds and returns how long that took;
/// panics naming `what` once `bound` has passed.
pub async fn eventually<F, Fut>(bound: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < bound {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not done within {bound:?}");
}

/// Whether the tests run as root, as CI does (`/proc/self` belongs to the
/// effective user).
pub fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// What a real tool (`tool`: sops, cosign) made of `inputs`, recorded
/// under `tests/fixtures/TOOL/recorded/` and named by a digest of the
/// inputs: `run`, which runs the tool, only when no recording is there.
/// A run that finds its recordings needs no tool, so CI builds none; a
/// test whose inputs change records anew (commit the new file).
pub fn recorded(tool: &str, inputs: &[&[u8]], run: impl FnOnce() -> Vec<u8>) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for input in inputs {
        hasher.update((input.len() as u64).to_le_bytes());
        hasher.update(input);
    }
    let digest = kedge::source::store::hex(&hasher.finalize()[..12]);
    let dir = repo_root().join(format!("tests/fixtures/{tool}/recorded"));
    let path = dir.join(digest);
    if let Ok(output) = std::fs::read(&path) {
        return output;
    }
    let output = run();
    std::fs::create_dir_all(&dir).expect("create the recordings directory");
    std::fs::write(&path, &output)
        .unwrap_or_else(|e| panic!("record {tool}'s output in {}: {e}", path.display()));
    output
}
