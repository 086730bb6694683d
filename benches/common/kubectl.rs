//! The reference the benchmarks compare kedge's apply with: `kubectl apply
//! --server-side` of a directory of manifests.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `kubectl apply --server-side -R -f dir` as `field_manager` and
/// returns how long it took; panics when kubectl fails.
pub fn apply_server_side(dir: &Path, kubeconfig: &Path, field_manager: &str) -> Duration {
    let started = Instant::now();
    let status = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "apply",
            "--server-side",
            "--field-manager",
            field_manager,
            "-R",
            "-f",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run kubectl");
    assert!(status.success(), "kubectl apply failed: {status}");
    started.elapsed()
}
