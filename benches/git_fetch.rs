//! Git fetch benchmark: kedge against `git` on the same repository, in the
//! same run, over `git daemon` on 127.0.0.1.
//!
//! The repository is generated with `git fast-import`: 5,000 files of about
//! 1 KiB in 50 directories, then 499 commits changing 10 files each.
//!
//! Figures (median of `KEDGE_BENCH_RUNS` runs, default 5):
//! - first fetch: kedge's fetch + artifact (a fresh state directory) vs
//!   `git clone --depth 1 --branch main` (which also checks out the tree);
//!   kedge's fetch alone (no artifact, no checkout) vs its like-for-like
//!   reference, `git clone --bare --depth 1 --branch main` (no checkout);
//! - no-change poll: kedge's sync when the branch has not moved vs
//!   `git fetch origin main` in that shallow clone.
//!
//! Run: `cargo bench --bench git_fetch`

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kedge::config::{Config, GitSource};
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::{SourceOutcome, Store};

const FILES: usize = 5_000;
const COMMITS: usize = 500;
const FILES_PER_COMMIT: usize = 10;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?} failed");
}

fn file_content(index: usize, version: usize) -> String {
    let mut text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{index}\n  namespace: apps\ndata:\n  version: \"{version}\"\n"
    );
    while text.len() < 1024 {
        text.push_str(&format!("  key-{}: value-{index}-{version}\n", text.len()));
    }
    text
}

fn path_of(index: usize) -> String {
    format!("apps/dir-{:02}/cm-{index:04}.yaml", index % 50)
}

/// A bare repository with the realistic history, made by `git fast-import`.
fn generate(bare: &Path) {
    git(
        bare.parent().expect("parent"),
        &[
            "init",
            "-q",
            "--bare",
            "-b",
            "main",
            bare.to_str().expect("utf-8"),
        ],
    );
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(bare)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn git fast-import");
    let mut stream = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
    for commit in 0..COMMITS {
        let message = format!("commit {commit}");
        let when = 1_700_000_000 + commit * 60;
        write!(
            stream,
            "commit refs/heads/main\ncommitter bench <bench@kedge.invalid> {when} +0000\ndata {}\n{message}\n",
            message.len()
        )
        .expect("write");
        let changed: Vec<usize> = if commit == 0 {
            (0..FILES).collect()
        } else {
            (0..FILES_PER_COMMIT)
                .map(|i| (commit * 37 + i * 101) % FILES)
                .collect()
        };
        for index in changed {
            let content = file_content(index, commit);
            write!(
                stream,
                "M 100644 inline {}\ndata {}\n{content}\n",
                path_of(index),
                content.len()
            )
            .expect("write");
        }
    }
    drop(stream);
    assert!(
        child.wait().expect("wait fast-import").success(),
        "git fast-import failed"
    );
}

struct Daemon(std::process::Child, u16);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn git_daemon(base: &Path) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let exec_path = Command::new("git")
        .arg("--exec-path")
        .output()
        .expect("git --exec-path");
    let exec_path = PathBuf::from(String::from_utf8_lossy(&exec_path.stdout).trim());
    let child = Command::new(exec_path.join("git-daemon"))
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
        ])
        .arg(format!("--base-path={}", base.display()))
        .arg(base)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn git-daemon");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "git daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon(child, port)
}

fn source(url: &str) -> GitSource {
    let text = format!("[git.bench]\nurl = {url:?}\ntimeout = \"5m\"\n");
    Config::parse(Path::new("bench.toml"), &text)
        .expect("valid bench config")
        .git("bench")
        .cloned()
        .expect("a git/bench source")
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn record(store: &Store, outcome: &SyncOutcome) {
    let artifact = outcome.artifact();
    store
        .record_source_outcome(
            "git",
            "bench",
            "bench",
            0,
            SourceOutcome::Ready {
                revision: &artifact.revision,
                digest: &artifact.digest,
                path: &artifact.path,
                inputs: outcome.inputs(),
                new_artifact: true,
            },
        )
        .expect("record");
}

fn main() {
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let root = tempfile::tempdir().expect("tempdir");
    let bare = root.path().join("fleet.git");
    let generation = timed(|| generate(&bare));
    let daemon = git_daemon(root.path());
    let url = format!("git://127.0.0.1:{}/fleet.git", daemon.1);
    let source = source(&url);
    println!("repository: {FILES} files, {COMMITS} commits, generated in {generation:.2?}; served by git daemon at {url}");

    let (mut kedge_first, mut git_first, mut kedge_poll, mut git_poll) =
        (vec![], vec![], vec![], vec![]);
    let mut kedge_fetch_only = vec![];
    let mut git_bare = vec![];
    let mut artifact_bytes = 0;
    for run in 0..runs {
        let state = tempfile::tempdir().expect("state dir");
        let store = Store::open_in_memory().expect("store");
        let mut outcome = None;
        kedge_first.push(timed(|| {
            outcome = Some(
                source::sync_git_source(
                    &source,
                    state.path(),
                    None,
                    Limits::default(),
                    &AtomicBool::new(false),
                )
                .expect("kedge first fetch"),
            );
        }));
        let outcome = outcome.expect("outcome");
        artifact_bytes = std::fs::metadata(&outcome.artifact().path)
            .map(|m| m.len())
            .unwrap_or(0);
        record(&store, &outcome);
        let previous = store.source_status("git", "bench").expect("status");
        kedge_poll.push(timed(|| {
            let again = source::sync_git_source(
                &source,
                state.path(),
                previous.as_ref(),
                Limits::default(),
                &AtomicBool::new(false),
            )
            .expect("kedge poll");
            assert!(
                matches!(again, SyncOutcome::Unchanged { .. }),
                "poll must find no change"
            );
        }));

        let fresh = tempfile::tempdir().expect("repo dir");
        kedge_fetch_only.push(timed(|| {
            source::git::fetch(&source, &fresh.path().join("repo"), &AtomicBool::new(false))
                .expect("kedge fetch");
        }));

        let clone = root.path().join(format!("clone-{run}"));
        let clone_arg = clone.to_str().expect("utf-8");
        git_first.push(timed(|| {
            git(
                root.path(),
                &[
                    "clone", "-q", "--depth", "1", "--branch", "main", &url, clone_arg,
                ],
            )
        }));
        git_poll.push(timed(|| {
            git(&clone, &["fetch", "-q", "--depth", "1", "origin", "main"])
        }));
        let bare = root.path().join(format!("bare-{run}"));
        let bare_arg = bare.to_str().expect("utf-8");
        git_bare.push(timed(|| {
            git(
                root.path(),
                &[
                    "clone", "-q", "--bare", "--depth", "1", "--branch", "main", &url, bare_arg,
                ],
            )
        }));
    }

    let (kf, gf, kp, gp) = (
        median(kedge_first),
        median(git_first),
        median(kedge_poll),
        median(git_poll),
    );
    let (fetch_only, bare) = (median(kedge_fetch_only), median(git_bare));
    println!("artifact: {artifact_bytes} bytes (tar.gz)");
    println!("median of {runs} runs       kedge        git          kedge/git");
    println!(
        "first fetch              {:>9.1?}  {:>9.1?}   {:.2}  (git: clone --depth 1, with checkout)",
        kf,
        gf,
        kf.as_secs_f64() / gf.as_secs_f64()
    );
    println!(
        "fetch alone              {:>9.1?}  {:>9.1?}   {:.2}  (kedge without the artifact; git: clone --bare --depth 1, no checkout)",
        fetch_only,
        bare,
        fetch_only.as_secs_f64() / bare.as_secs_f64()
    );
    println!(
        "no-change poll           {:>9.1?}  {:>9.1?}   {:.2}  (git: fetch --depth 1 origin main)",
        kp,
        gp,
        kp.as_secs_f64() / gp.as_secs_f64()
    );
}
