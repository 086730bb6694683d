//! What checking artifacts and unpacked trees costs, against the build
//! that uses them, in the same run.
//!
//! Two trees: the 1,000 ConfigMaps of the e2e benchmark (one directory),
//! and a repository of 5,000 files (100 directories, 0.3–8 KiB each).
//! Per tree, the median of `ROUNDS` runs of:
//! - the build of the tree (`kustomize::build_plain_dir`): the reference;
//! - the check before every build: by snapshot (`lstat` of every entry,
//!   the steady state) and by content (every file hashed: the first build
//!   after a start, and when the snapshot differs);
//! - the sha256 of the artifact (every sync of the source);
//! - unpacking: verified, with a manifest, against a plain extract.
//!
//! Run: `cargo bench --bench unpack_verify`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kedge::reconcile::unpack::Unpacker;
use kedge::source::manifest::{Manifest, Snapshot};
use kedge::source::{self, store, Artifact};

const ROUNDS: usize = 15;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(mut run: impl FnMut() -> T) -> Duration {
    median(
        (0..ROUNDS)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(run());
                start.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn configmap(name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: bench\ndata:\n  key: \"{value}\"\n")
}

/// The 1,000 ConfigMaps of `benches/e2e.rs`, one file each.
fn thousand_configmaps() -> Vec<(String, String)> {
    (0..1000)
        .map(|i| {
            (
                format!("apps/big-{i:04}.yaml"),
                configmap(&format!("big-{i:04}"), "1"),
            )
        })
        .collect()
}

/// 5,000 manifests in 100 directories, 0.3–8 KiB each.
fn five_thousand_files() -> Vec<(String, String)> {
    (0..5000)
        .map(|i| {
            let padding = "x".repeat((i * 7919) % 8000);
            (
                format!("dir-{:03}/cm-{i:04}.yaml", i % 100),
                configmap(&format!("cm-{i:04}"), &padding),
            )
        })
        .collect()
}

fn write_artifact(dir: &Path, files: &[(String, String)]) -> Artifact {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, content.as_bytes())
            .expect("append");
    }
    let bytes = tar.into_inner().and_then(|gz| gz.finish()).expect("finish");
    let (digest, _) = store::sha256_of(&bytes[..]).expect("hash");
    let path = dir.join(format!("{digest}.tar.gz"));
    std::fs::write(&path, &bytes).expect("write artifact");
    Artifact {
        revision: format!("main@sha1:{}", &digest[..40]),
        digest,
        path,
    }
}

fn bench(name: &str, files: &[(String, String)], build_path: &str) {
    let scratch = tempfile::tempdir().expect("tempdir");
    let artifact = write_artifact(scratch.path(), files);
    let size = std::fs::metadata(&artifact.path).map_or(0, |m| m.len());
    let unpacked: PathBuf = scratch.path().join("unpacked");
    let unpacker = Unpacker::new(unpacked.clone());
    let tree = unpacker.unpacked(&artifact).expect("unpack");
    let manifest =
        Manifest::read(&unpacked.join(format!("{}.manifest", artifact.digest))).expect("manifest");
    // Past the settling time, so the steady state is measured, as after the first builds.
    std::thread::sleep(Duration::from_millis(2100));
    unpacker.unpacked(&artifact).expect("check by content");

    let build = time(|| kedge::kustomize::build_plain_dir(&tree.join(build_path)).expect("build"));
    let snapshot = time(|| unpacker.unpacked(&artifact).expect("check by snapshot"));
    let content = time(|| manifest.check(&tree).expect("check by content"));
    let stat_only = time(|| Snapshot::take(&tree).expect("snapshot"));
    let digest = time(|| store::verify(&artifact).expect("intact"));
    let mut round = 0;
    let verified_unpack = time(|| {
        round += 1;
        let fresh = Unpacker::new(scratch.path().join(format!("verified-{round}")));
        fresh.unpacked(&artifact).expect("unpack")
    });
    let plain_extract = time(|| {
        round += 1;
        source::extract(
            &artifact.path,
            &scratch.path().join(format!("plain-{round}")),
        )
        .expect("extract")
    });
    let ratio = |d: Duration| d.as_secs_f64() / build.as_secs_f64();
    println!(
        "\n{name}: {} files, artifact {} KiB, median of {ROUNDS}",
        files.len(),
        size / 1024
    );
    println!(
        "  build (reference)                    {:>10}  1",
        ms(build)
    );
    println!(
        "  check by snapshot (every build)      {:>10}  {:.3}x build",
        ms(snapshot),
        ratio(snapshot)
    );
    println!(
        "    of which lstat walk                {:>10}  {:.3}x build",
        ms(stat_only),
        ratio(stat_only)
    );
    println!(
        "  check by content (first build)       {:>10}  {:.3}x build",
        ms(content),
        ratio(content)
    );
    println!(
        "  sha256 of the artifact (every sync)  {:>10}  {:.3}x build",
        ms(digest),
        ratio(digest)
    );
    println!(
        "  unpack verified + manifest           {:>10}  {:.2}x plain extract ({})",
        ms(verified_unpack),
        verified_unpack.as_secs_f64() / plain_extract.as_secs_f64(),
        ms(plain_extract)
    );
}

fn main() {
    bench("1,000 ConfigMaps", &thousand_configmaps(), "apps");
    bench("5,000-file repository", &five_thousand_files(), ".");
}
