//! Bucket source benchmark: kedge against a full download of the same
//! bucket, in the same run, from versitygw (SigV4, posix backend) on
//! 127.0.0.1 (built by scripts/s3server.sh).
//!
//! The bucket holds 5,000 objects of about 1 KiB in 50 prefixes. The
//! reference is what a poller without an ETag index does, like `aws s3 sync`
//! into an empty directory: LIST, then GET every object, 8 at a time (the
//! parallelism kedge uses). Figures (median of `KEDGE_BENCH_RUNS` runs,
//! default 3), with the requests each made, counted in the server's access
//! log:
//! - first sync: kedge with a fresh state directory (download + artifact)
//!   vs the full download;
//! - no-change poll: kedge's sync of the unchanged bucket vs the full
//!   download again;
//! - 10 objects changed: kedge's sync vs the full download.
//!
//! Run: `cargo bench --bench bucket_sync`

#[path = "../tests/support/s3.rs"]
#[allow(dead_code)]
mod s3;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use kedge::config::Source;
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::SourceStatus;
use object_store::aws::AmazonS3;
use object_store::{ObjectStore, ObjectStoreExt};

const OBJECTS: usize = 5_000;
const CHANGED: usize = 10;

fn content(index: usize, version: usize) -> Vec<u8> {
    let mut text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index}\n  namespace: apps\ndata:\n  version: \"{version}\"\n"
    );
    while text.len() < 1024 {
        text.push_str(&format!("  key-{}: value-{index}-{version}\n", text.len()));
    }
    text.into_bytes()
}

fn key_of(index: usize) -> String {
    format!("apps/dir-{:02}/cm-{index:04}.yaml", index % 50)
}

/// The reference: LIST and GET every object into `dest`, 8 at a time.
async fn full_download(client: &Arc<AmazonS3>, dest: &Path) -> usize {
    let listed: Vec<_> = client.list(None).try_collect().await.expect("list");
    let count = listed.len();
    futures::stream::iter(listed)
        .map(|meta| {
            let client = client.clone();
            let path = dest.join(meta.location.as_ref());
            async move {
                let bytes = client.get(&meta.location).await?.bytes().await?;
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).expect("mkdir");
                }
                std::fs::write(&path, bytes).expect("write object");
                Ok::<_, object_store::Error>(())
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await
        .expect("download");
    count
}

fn kedge_sync(source: &Source, state_dir: &Path, previous: Option<&SourceStatus>) -> SyncOutcome {
    source::sync(
        source,
        state_dir,
        previous,
        None,
        None,
        Limits::default(),
        &AtomicBool::new(false),
    )
    .expect("kedge sync")
}

/// Time and requests of one measured step.
#[derive(Default, Clone, Copy)]
struct Step {
    time: Duration,
    requests: usize,
}

fn measure<T>(server: &s3::S3Server, work: impl FnOnce() -> T) -> (Step, T) {
    let before = server.requests().len();
    let start = Instant::now();
    let result = work();
    let time = start.elapsed();
    // The access log is written as requests finish: let it settle.
    std::thread::sleep(Duration::from_millis(200));
    let requests = server.requests().len() - before;
    (Step { time, requests }, result)
}

fn median(steps: &mut [Step]) -> Step {
    steps.sort_by_key(|s| s.time);
    steps[steps.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let root = tempfile::tempdir().expect("tempdir");
    let server = s3::S3Server::start(root.path(), &["fleet"]);
    let client = server.client("fleet");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let seed: Vec<(String, Vec<u8>)> = (0..OBJECTS).map(|i| (key_of(i), content(i, 0))).collect();
    runtime.block_on(s3::put_all(&client, seed));
    eprintln!("bucket of {OBJECTS} objects written");

    let mut reference = Vec::new();
    let mut first = Vec::new();
    let mut poll = Vec::new();
    let mut changed = Vec::new();
    let mut reference_changed = Vec::new();
    for run in 0..runs {
        let dest = root.path().join(format!("download-{run}"));
        let (step, count) = measure(&server, || runtime.block_on(full_download(&client, &dest)));
        assert_eq!(count, OBJECTS);
        reference.push(step);
        let _ = std::fs::remove_dir_all(&dest);

        let state_dir: PathBuf = root.path().join(format!("state-{run}"));
        let source = server.source(&state_dir, "");
        let (step, outcome) = measure(&server, || kedge_sync(&source, &state_dir, None));
        first.push(step);
        let previous = s3::status_after(&outcome);
        let (step, unchanged) =
            measure(&server, || kedge_sync(&source, &state_dir, Some(&previous)));
        assert!(matches!(unchanged, SyncOutcome::Unchanged { .. }));
        poll.push(step);

        let version = run + 1;
        let edits: Vec<(String, Vec<u8>)> = (0..CHANGED)
            .map(|i| (key_of(i * 97), content(i * 97, version)))
            .collect();
        runtime.block_on(s3::put_all(&client, edits));
        let (step, outcome) = measure(&server, || kedge_sync(&source, &state_dir, Some(&previous)));
        assert!(matches!(outcome, SyncOutcome::NewArtifact { .. }));
        changed.push(step);
        let (step, _) = measure(&server, || runtime.block_on(full_download(&client, &dest)));
        reference_changed.push(step);
        let _ = std::fs::remove_dir_all(&dest);
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    let (reference, first, poll) = (
        median(&mut reference),
        median(&mut first),
        median(&mut poll),
    );
    let (changed, reference_changed) = (median(&mut changed), median(&mut reference_changed));
    let line = |what: &str, kedge: Step, full: Step| {
        println!(
            "{what:<22} kedge {:>8.1} ms {:>5} requests | full download {:>8.1} ms {:>5} requests | time ratio {:.3}",
            kedge.time.as_secs_f64() * 1000.0,
            kedge.requests,
            full.time.as_secs_f64() * 1000.0,
            full.requests,
            kedge.time.as_secs_f64() / full.time.as_secs_f64(),
        );
    };
    println!("bucket of {OBJECTS} objects (~1 KiB), median of {runs} runs");
    line("first sync", first, reference);
    line("no-change poll", poll, reference);
    line(
        &format!("{CHANGED} objects changed"),
        changed,
        reference_changed,
    );
}
