//! Helm repository benchmark: kedge's index poll against the real
//! `helm repo update`, in the same run, on one generated `index.yaml`
//! served from 127.0.0.1 (a small HTTP server in this process with ETag).
//!
//! The index has `KEDGE_BENCH_ENTRIES` entries (default 10,000: 1,000
//! charts of 10 versions, each entry shaped like `helm repo index` writes
//! it); kedge keeps one chart of it, as a `[helm_chart]` would ask.
//!
//! Figures:
//! - full fetch + parse: kedge's sync without a previous artifact vs
//!   `helm repo update` (median of `KEDGE_BENCH_RUNS`, default 5);
//! - no-change poll: kedge's sync with the previous artifact (a
//!   conditional request answered 304) vs `helm repo update` (helm sends
//!   no conditional request: it downloads and parses the index each time);
//! - peak RSS of a process doing one full fetch + parse: kedge (this bench
//!   re-run as a child) vs helm (GNU time's maximum resident set size);
//! - the same peak RSS for kedge with a ~50 MiB index.
//!
//! Run: `cargo bench --bench helm_index` (builds helm with scripts/helm-cli.sh).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use kedge::config::{Config, HelmRepository, Source, SourceRef};
use kedge::source::{self, SyncOutcome};
use kedge::state::SourceStatus;

fn generate_index(entries: usize, padding: usize) -> Vec<u8> {
    let versions = 10;
    let charts = entries.div_ceil(versions);
    let mut text = String::from("apiVersion: v1\nentries:\n");
    let description = "x".repeat(padding);
    for chart in 0..charts {
        text.push_str(&format!("  chart-{chart:05}:\n"));
        for version in 0..versions {
            text.push_str(&format!(
                "  - apiVersion: v2\n    appVersion: 1.{version}.0\n    created: \"2026-11-30T10:00:00.000000000Z\"\n    description: A generated chart {description}\n    digest: {digest:064x}\n    home: https://example.org/chart-{chart:05}\n    maintainers:\n    - email: ops@example.org\n      name: ops\n    name: chart-{chart:05}\n    sources:\n    - https://example.org/src/chart-{chart:05}\n    type: application\n    urls:\n    - charts/chart-{chart:05}-1.{version}.0.tgz\n    version: 1.{version}.0\n",
                digest = chart * versions + version
            ));
        }
    }
    text.push_str("generated: \"2026-11-30T10:00:00.000000000Z\"\n");
    text.into_bytes()
}

/// Serves `body` as `/charts/index.yaml` with an ETag; 304 to a matching
/// `If-None-Match`. One connection at a time is enough here.
fn serve(body: Arc<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || answer(stream, &body));
        }
    });
    port
}

fn answer(stream: TcpStream, body: &[u8]) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut stream = stream;
    loop {
        let mut conditional = false;
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header
                .to_ascii_lowercase()
                .starts_with("if-none-match: \"bench\"")
            {
                conditional = true;
            }
            if header == "\r\n" {
                break;
            }
        }
        let result = if conditional {
            stream.write_all(
                b"HTTP/1.1 304 Not Modified\r\nETag: \"bench\"\r\nContent-Length: 0\r\n\r\n",
            )
        } else {
            let head = format!(
                "HTTP/1.1 200 OK\r\nETag: \"bench\"\r\nContent-Type: text/yaml\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            stream
                .write_all(head.as_bytes())
                .and_then(|_| stream.write_all(body))
        };
        if result.is_err() {
            return;
        }
    }
}

fn repository(url: &str) -> HelmRepository {
    let text = format!(
        "[helm_repository.bench]\nurl = {url:?}\n\
         [helm_chart.one]\nchart = {{ repository = \"bench\", name = \"chart-00042\" }}\n"
    );
    let config = Config::parse(Path::new("bench.toml"), &text).expect("bench config");
    match config.source(&SourceRef::parse("helm/bench").expect("ref")) {
        Some(Source::Helm(helm)) => helm.clone(),
        _ => panic!("no helm/bench"),
    }
}

fn sync(repository: &HelmRepository, state: &Path, previous: Option<&SourceStatus>) -> SyncOutcome {
    source::helm::sync_helm_repository(repository, state, previous, &AtomicBool::new(false))
        .expect("sync")
}

fn status_of(outcome: &SyncOutcome) -> SourceStatus {
    outcome.as_status("helm", "bench")
}

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: one full fetch + parse, then its peak RSS on stdout.
fn child(url: &str) {
    let state = tempfile::tempdir().expect("tempdir");
    let outcome = sync(&repository(url), state.path(), None);
    let kept = source::helm::read_index_artifact(outcome.artifact()).expect("kept index");
    assert_eq!(kept.entries.len(), 1);
    println!("{}", peak_rss_kib());
}

fn kedge_peak_rss(url: &str) -> u64 {
    let out = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--child", url])
        .output()
        .expect("run child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("child prints its peak RSS")
}

fn helm_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/helm-cli.sh"))
        .arg("path")
        .output()
        .expect("scripts/helm-cli.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs helm under GNU time; returns (seconds, peak RSS KiB).
fn helm_run(helm: &Path, home: &Path, args: &[&str]) -> (f64, u64) {
    let started = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(helm)
        .args(args)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm under /usr/bin/time (Debian package time)");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "helm {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rss = String::from_utf8_lossy(&out.stderr)
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (seconds, rss)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn timed(mut run: impl FnMut()) -> f64 {
    let started = Instant::now();
    run();
    started.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(position) = args.iter().position(|a| a == "--child") {
        child(&args[position + 1]);
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let entries: usize = std::env::var("KEDGE_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let helm = helm_binary();
    let body = Arc::new(generate_index(entries, 0));
    let port = serve(body.clone());
    let url = format!("http://127.0.0.1:{port}/charts");
    println!(
        "index.yaml: {entries} entries, {:.1} MiB; kedge keeps 1 chart of it",
        body.len() as f64 / (1 << 20) as f64
    );

    let repository = repository(&url);
    let full: Vec<f64> = (0..runs)
        .map(|_| {
            let state = tempfile::tempdir().expect("tempdir");
            timed(|| {
                sync(&repository, state.path(), None);
            })
        })
        .collect();
    let state = tempfile::tempdir().expect("tempdir");
    let first = sync(&repository, state.path(), None);
    let previous = status_of(&first);
    let polls: Vec<f64> = (0..runs.max(10))
        .map(|_| {
            timed(|| {
                let outcome = sync(&repository, state.path(), Some(&previous));
                assert!(matches!(outcome, SyncOutcome::Unchanged { .. }));
            })
        })
        .collect();

    let home = tempfile::tempdir().expect("helm home");
    helm_run(&helm, home.path(), &["repo", "add", "bench", &url]);
    let mut helm_times = Vec::new();
    let mut helm_rss = 0;
    for _ in 0..runs {
        let (seconds, rss) = helm_run(&helm, home.path(), &["repo", "update", "bench"]);
        helm_times.push(seconds);
        helm_rss = helm_rss.max(rss);
    }
    let kedge_rss = kedge_peak_rss(&url);

    let (full, poll, helm_update) = (median(full), median(polls), median(helm_times));
    println!(
        "kedge full fetch + parse (no previous artifact): {:8.1} ms",
        full * 1e3
    );
    println!(
        "kedge no-change poll (304):                      {:8.2} ms",
        poll * 1e3
    );
    println!(
        "helm repo update (downloads and parses all):     {:8.1} ms",
        helm_update * 1e3
    );
    println!(
        "  ratio helm repo update / kedge full fetch:     {:8.1}x",
        helm_update / full
    );
    println!(
        "  ratio helm repo update / kedge no-change poll: {:8.1}x",
        helm_update / poll
    );
    println!(
        "peak RSS, one full fetch + parse: kedge {} MiB, helm {} MiB ({:.1}x)",
        kedge_rss / 1024,
        helm_rss / 1024,
        helm_rss as f64 / kedge_rss.max(1) as f64
    );

    // A ~50 MiB index: kedge's peak RSS stays in tens of MiB.
    let bytes_per_entry = body.len() / entries.max(1);
    let big_entries = 50 * (1 << 20) / bytes_per_entry.max(1);
    let big = Arc::new(generate_index(big_entries, 0));
    let big_port = serve(big.clone());
    let big_url = format!("http://127.0.0.1:{big_port}/charts");
    let started = Instant::now();
    let big_rss = kedge_peak_rss(&big_url);
    println!(
        "{:.1} MiB index ({big_entries} entries): kedge peak RSS {} MiB, full fetch + parse {:.0} ms",
        big.len() as f64 / (1 << 20) as f64,
        big_rss / 1024,
        started.elapsed().as_secs_f64() * 1e3
    );
}
