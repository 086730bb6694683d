//! The real `helm` CLI (built from its pinned Go module by
//! scripts/helm-cli.sh into target/helm/, cached): packages and indexes
//! the test charts, and reads back what kedge stored.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The helm binary, built on first use.
pub fn binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let out = Command::new(repo_root().join("scripts/helm-cli.sh"))
            .arg("path")
            .output()
            .expect("run scripts/helm-cli.sh");
        assert!(
            out.status.success(),
            "scripts/helm-cli.sh path failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
    })
}

/// Runs helm with its own config, cache and data under `home`; panics with
/// its stderr when it fails.
pub fn helm(home: &Path, args: &[&str]) -> String {
    helm_output(home, args).0
}

/// [`helm`], returning stdout and stderr (where `helm push` reports).
pub fn helm_output(home: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(binary())
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The test charts of tests/fixtures/charts.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/charts").join(name)
}

/// Packages the chart directory `chart` into `dest` with `helm package`
/// (version overridden when given) and returns the `.tgz`.
pub fn package(home: &Path, chart: &Path, dest: &Path, version: Option<&str>) -> PathBuf {
    let dest_text = dest.to_string_lossy().into_owned();
    let chart_text = chart.to_string_lossy().into_owned();
    let mut args = vec![
        "package",
        chart_text.as_str(),
        "--destination",
        dest_text.as_str(),
    ];
    if let Some(version) = version {
        args.extend(["--version", version]);
    }
    let out = helm(home, &args);
    let path = out
        .trim()
        .rsplit(": ")
        .next()
        .map(PathBuf::from)
        .expect("helm package prints the path");
    assert!(
        path.is_file(),
        "helm package wrote no {}: {out}",
        path.display()
    );
    path
}

/// `helm repo index DIR` (absolute chart URLs under `url` when given).
pub fn index(home: &Path, dir: &Path, url: Option<&str>) {
    let dir_text = dir.to_string_lossy().into_owned();
    let mut args = vec!["repo", "index", dir_text.as_str()];
    if let Some(url) = url {
        args.extend(["--url", url]);
    }
    helm(home, &args);
}
