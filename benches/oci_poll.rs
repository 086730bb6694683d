//! OCI no-change poll against a Git no-change poll, in the same run: the
//! same tree (1,000 files of about 1 KiB in 20 directories) as a Git
//! repository served by `git daemon` and as an OCI artifact pushed by
//! `kedge push artifact` to Debian's `docker-registry`, both on 127.0.0.1.
//!
//! Each side first syncs once (a fresh state directory), then polls with
//! nothing changed; the poll is what runs every interval. Figures per poll
//! (median of `KEDGE_BENCH_RUNS` polls, default 20): wall time, requests
//! (HTTP requests in the registry's log; Git: connections, one fetch
//! each), bytes both ways through a counting TCP proxy in front of each
//! server, and the OCI / Git ratio of each. A digest-pinned OCI source,
//! whose poll makes no request, shows what a sync costs before the network.
//!
//! Run: `cargo bench --bench oci_poll`

#[path = "../tests/support"]
mod support {
    #![allow(dead_code)]
    pub mod git;
    pub mod http_server;
    pub mod registry;
}

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedge::config::{Config, SourceRef};
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::SourceStatus;

use support::git::{git_daemon, FixtureRepo};

const FILES: usize = 1_000;

fn files() -> Vec<(String, String)> {
    (0..FILES)
        .map(|i| {
            let mut text =
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n");
            while text.len() < 1024 {
                text.push_str(&format!("  key-{}: value-{i}\n", text.len()));
            }
            (format!("apps/dir-{:02}/cm-{i:04}.yaml", i % 20), text)
        })
        .collect()
}

/// Connections and bytes (both ways) that passed through a proxy.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    bytes: AtomicU64,
}

/// A loopback TCP proxy to `target` that counts what passes; runs until
/// the process ends.
fn counting_proxy(target: u16) -> (u16, Arc<Counters>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("proxy address").port();
    let counters = Arc::new(Counters::default());
    let shared = counters.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], target))) else {
                continue;
            };
            shared.connections.fetch_add(1, Ordering::Relaxed);
            for (from, to) in [
                (client.try_clone(), server.try_clone()),
                (server.try_clone(), client.try_clone()),
            ] {
                let (Ok(from), Ok(to)) = (from, to) else {
                    continue;
                };
                let counters = shared.clone();
                std::thread::spawn(move || pipe(from, to, &counters));
            }
        }
    });
    (port, counters)
}

fn pipe(mut from: TcpStream, mut to: TcpStream, counters: &Counters) {
    let mut buf = [0u8; 16 << 10];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// One source of a config text.
struct Side {
    config: Config,
    source: SourceRef,
    state: tempfile::TempDir,
}

impl Side {
    fn new(text: &str, source: &str) -> Side {
        Side {
            config: Config::parse(Path::new("bench.toml"), text).expect("valid bench config"),
            source: SourceRef::parse(source).expect("source ref"),
            state: tempfile::tempdir().expect("state dir"),
        }
    }

    fn sync(&self, previous: Option<&SourceStatus>) -> SyncOutcome {
        let source = self.config.source(&self.source).expect("configured");
        source::sync(
            source,
            self.state.path(),
            previous,
            None,
            None,
            Limits::default(),
            &AtomicBool::new(false),
        )
        .expect("sync")
    }
}

/// One poll's cost.
#[derive(Clone, Copy, Default)]
struct Poll {
    time: Duration,
    requests: u64,
    bytes: u64,
}

fn median(polls: &mut [Poll]) -> Poll {
    polls.sort_by_key(|p| p.time);
    polls[polls.len() / 2]
}

/// One no-change poll of `side`; `counted` reads (requests, bytes) so far.
fn poll(side: &Side, status: &SourceStatus, counted: impl Fn() -> (u64, u64)) -> Poll {
    let before = counted();
    let start = Instant::now();
    let outcome = side.sync(Some(status));
    let time = start.elapsed();
    assert!(matches!(outcome, SyncOutcome::Unchanged { .. }));
    // Logs and counters are written as requests finish: let them settle.
    std::thread::sleep(Duration::from_millis(50));
    let after = counted();
    Poll {
        time,
        requests: after.0 - before.0,
        bytes: after.1 - before.1,
    }
}

/// HTTP requests the registry logged so far.
fn registry_requests(registry: &support::registry::Registry) -> u64 {
    registry
        .log()
        .lines()
        .filter(|line| line.contains("msg=\"response completed"))
        .count() as u64
}

fn main() {
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let root = tempfile::tempdir().expect("tempdir");
    let tree = files();
    let repo = FixtureRepo::new(root.path(), "fleet");
    let borrowed: Vec<(&str, &str)> = tree.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    repo.commit(&borrowed, "fleet");
    let daemon = git_daemon(root.path());
    let (git_port, git_counters) = counting_proxy(daemon.port);

    let registry = support::registry::start(None, None);
    let (oci_port, oci_counters) = counting_proxy(registry.port);
    let pushed = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(["push", "artifact"])
        .arg(format!("oci://{}/fleet/edge:latest", registry.host()))
        .arg("--path")
        .arg(&repo.work)
        .args([
            "--source",
            "git://fleet",
            "--revision",
            "main",
            "--insecure",
        ])
        .output()
        .expect("kedge push artifact");
    assert!(pushed.status.success(), "{pushed:?}");

    let git = Side::new(
        &format!("[git.fleet]\nurl = \"git://127.0.0.1:{git_port}/fleet.git\"\n"),
        "git/fleet",
    );
    let oci = Side::new(
        &format!("[oci.edge]\nurl = \"oci://127.0.0.1:{oci_port}/fleet/edge\"\ninsecure = true\n"),
        "oci/edge",
    );
    let git_status = git.sync(None).as_status("git", "fleet");
    let oci_first = oci.sync(None);
    let oci_status = oci_first.as_status("oci", "edge");
    let pinned_digest = oci_first
        .artifact()
        .revision
        .rsplit_once('@')
        .map(|(_, digest)| digest.to_string())
        .expect("TAG@DIGEST");
    let pinned = Side::new(
        &format!(
            "[oci.edge]\nurl = \"oci://127.0.0.1:{oci_port}/fleet/edge\"\ninsecure = true\nref = {{ digest = \"{pinned_digest}\" }}\n"
        ),
        "oci/edge",
    );
    let pinned_status = pinned.sync(None).as_status("oci", "edge");

    let (mut git_polls, mut oci_polls, mut pinned_polls) = (Vec::new(), Vec::new(), Vec::new());
    let git_counted = || {
        (
            git_counters.connections.load(Ordering::Relaxed),
            git_counters.bytes.load(Ordering::Relaxed),
        )
    };
    let oci_counted = || {
        (
            registry_requests(&registry),
            oci_counters.bytes.load(Ordering::Relaxed),
        )
    };
    for _ in 0..runs {
        git_polls.push(poll(&git, &git_status, git_counted));
        oci_polls.push(poll(&oci, &oci_status, oci_counted));
        pinned_polls.push(poll(&pinned, &pinned_status, oci_counted));
    }
    let (git_poll, oci_poll) = (median(&mut git_polls), median(&mut oci_polls));
    println!("no-change poll, {FILES} files (~1 KiB), median of {runs} polls");
    let line = |what: &str, poll: Poll| {
        println!(
            "{what:<18} {:>8.2} ms {:>3} requests {:>8} bytes",
            poll.time.as_secs_f64() * 1000.0,
            poll.requests,
            poll.bytes
        );
    };
    line("git", git_poll);
    line("oci", oci_poll);
    // No request at all: what a sync costs before the network (the client).
    line("oci, digest-pinned", median(&mut pinned_polls));
    println!(
        "ratio oci/git: time {:.3}, requests {:.3}, bytes {:.3}",
        oci_poll.time.as_secs_f64() / git_poll.time.as_secs_f64(),
        oci_poll.requests as f64 / git_poll.requests.max(1) as f64,
        oci_poll.bytes as f64 / git_poll.bytes.max(1) as f64,
    );
}
