//! Hostile Git servers over smart HTTP on loopback: one that freezes after
//! accepting, one that trickles its answer (slow loris), one that streams
//! an endless body. Each fetch fails within the source's timeout and its
//! thread stops, so the next fetch is not blocked by the last.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kedge::config::{Config, SourceKind, SourceRef};
use kedge::reconcile::{scheduler, Trigger};
use kedge::source::Limits;
use kedge::state::{SourceStatus, Store};

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Reads the request and never answers.
    Frozen,
    /// Answers one byte every 300 ms.
    SlowLoris,
    /// Answers a ref advertisement that never ends, as fast as it can.
    HugeBody,
}

/// A server on 127.0.0.1 with `fault`; stops when dropped.
struct HostileServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn hostile_server(fault: Fault) -> HostileServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopping = stop.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let stopping = stopping.clone();
            std::thread::spawn(move || misbehave(stream, fault, &stopping));
        }
    });
    HostileServer { port, stop }
}

fn misbehave(mut stream: TcpStream, fault: Fault, stop: &AtomicBool) {
    let mut request = [0u8; 4096];
    let _ = stream.read(&mut request);
    let first = pkt_line(&format!(
        "{:040x} refs/heads/main\0multi_ack side-band-64k ofs-delta shallow\n",
        1
    ));
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
         Cache-Control: no-cache\r\n\r\n001e# service=git-upload-pack\n0000{first}"
    );
    let line = |i: u64| pkt_line(&format!("{:040x} refs/heads/b{:09}\n", i + 2, i));
    match fault {
        Fault::Frozen => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Fault::SlowLoris => {
            let mut body = head.as_bytes().to_vec();
            (0..10_000).for_each(|i| body.extend(line(i).as_bytes()));
            for byte in body {
                if stop.load(Ordering::Relaxed) || stream.write_all(&[byte]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Fault::HugeBody => {
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let chunk: String = (i..i + 1000).map(line).collect();
                i += 1000;
                if stream.write_all(chunk.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}

fn pkt_line(payload: &str) -> String {
    format!("{:04x}{payload}", payload.len() + 4)
}

fn attempt_after(store: &Mutex<Store>, after: i64) -> Option<SourceStatus> {
    store
        .lock()
        .expect("lock")
        .source_status("git", "hostile")
        .expect("status")
        .filter(|s| s.last_attempt_at.is_some_and(|at| at > after))
}

async fn wait_attempt(store: &Mutex<Store>, after: i64, fault: Fault) -> SourceStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = attempt_after(store, after) {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{fault:?}: no outcome within 20s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn fetch_twice_from(fault: Fault) {
    let root = tempfile::tempdir().expect("tempdir");
    let server = hostile_server(fault);
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[git.hostile]\nurl = \"http://127.0.0.1:{}/fleet.git\"\n\
         interval = \"1h\"\ntimeout = \"2s\"\n",
        root.path().display().to_string(),
        server.port
    );
    let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
    let store = Arc::new(Mutex::new(Store::open_in_memory().expect("store")));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = scheduler(&config, store.clone(), Limits::default(), shutdown);

    let first = wait_attempt(&store, 0, fault).await;
    assert!(!first.ready, "{fault:?}: {first:?}");
    assert_eq!(first.reason, "GitOperationFailed", "{fault:?}");
    // The fetch thread must have stopped by the next attempt.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let since = first.last_attempt_at.unwrap_or_default();
    running
        .triggers()
        .send(Trigger::Source(SourceRef {
            kind: SourceKind::Git,
            name: "hostile".into(),
        }))
        .await
        .expect("trigger");
    let second = wait_attempt(&store, since, fault).await;
    assert!(!second.ready);
    assert!(
        !second.message.contains("has not stopped"),
        "{fault:?}: the first fetch still runs: {}",
        second.message
    );
    eprintln!("{fault:?}: {} / {}", first.message, second.message);
    stop.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(15), running.join())
        .await
        .expect("every task stops after shutdown");
}

#[tokio::test]
async fn a_frozen_http_git_server_fails_the_fetch_in_time_and_frees_its_thread() {
    fetch_twice_from(Fault::Frozen).await;
}

#[tokio::test]
async fn a_slow_loris_http_git_server_fails_the_fetch_in_time_and_frees_its_thread() {
    fetch_twice_from(Fault::SlowLoris).await;
}

#[tokio::test]
async fn an_endless_http_git_body_fails_the_fetch_in_time_and_frees_its_thread() {
    fetch_twice_from(Fault::HugeBody).await;
}
