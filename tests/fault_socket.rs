//! Hostile clients on the control socket of `kedge run`: oversized,
//! trickling, idle, abandoned and concurrent requests, bounded in count and
//! time, leave the daemon's memory and file descriptors where they were.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use kedge::state::Store;

use crate::daemon_common::Setup;
use crate::support::{cluster, TestNamespace};

const DIFF: &[u8] = b"{\"request\":\"diff\",\"name\":\"hostile\"}\n";

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("proc fd")
        .count()
}

fn connect(socket: &Path) -> UnixStream {
    let stream = UnixStream::connect(socket).expect("connect to the control socket");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

/// Sends `bytes` (errors ignored: the daemon may close first) and returns
/// what the daemon answered before closing.
fn exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut stream = connect(socket);
    let _ = stream.write_all(bytes);
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply
}

fn within_ten_percent(before: f64, after: f64) -> bool {
    after <= before * 1.10
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_clients_on_the_control_socket_leave_memory_and_fds_where_they_were() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "hostile").await;
    let setup = Setup::new(
        &format!(
            "kubeconfig = {:?}",
            cluster().kubeconfig.display().to_string()
        ),
        &format!(
            "[kustomization.hostile]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\n\
             prune = true\ntarget_namespace = \"{}\"\n",
            ns.name
        ),
    );
    let objects: Vec<(String, String)> = (0..20)
        .map(|i| {
            (
                format!("apps/cm-{i}.yaml"),
                format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  key: \"{i}\"\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = objects
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    setup.repo.commit(&files, "twenty configmaps");
    let daemon = setup.start(&[]);
    let pid = daemon.0.id();
    setup.wait_ready();
    assert!(
        setup
            .cli(&["reconcile", "source", "git/fleet"])
            .status
            .success(),
        "{}",
        setup.log_text()
    );
    setup.wait_until("hostile applied", Duration::from_secs(60), || {
        Store::open_read_only(&setup.state_dir.join("kedge.db"))
            .ok()
            .and_then(|s| s.kustomization_status("hostile").ok().flatten())
            .is_some_and(|s| s.ready)
    });
    let socket = setup.socket.clone();
    // Warm up what a diff legitimately keeps (client connections, caches).
    for _ in 0..3 {
        let diffs: Vec<_> = (0..4)
            .map(|_| {
                let socket = socket.clone();
                thread::spawn(move || exchange(&socket, DIFF))
            })
            .collect();
        for diff in diffs {
            let reply = diff.join().expect("diff thread");
            assert!(reply.contains("\"reply\":\"text\""), "{reply}");
        }
    }
    thread::sleep(Duration::from_secs(1));
    let (rss_before, fds_before) = (rss_kib(pid), fd_count(pid));

    let started = Instant::now();
    let mut clients = Vec::new();
    // Oversized: 10 × 2 MiB without a newline.
    for _ in 0..10 {
        let socket = socket.clone();
        clients.push(thread::spawn(move || {
            exchange(&socket, &vec![b'x'; 2 << 20])
        }));
    }
    let oversized: Vec<String> = clients
        .drain(..)
        .map(|c| c.join().expect("client thread"))
        .collect();
    // Trickling: a byte every 200 ms, never a whole line.
    for _ in 0..20 {
        let socket = socket.clone();
        clients.push(thread::spawn(move || {
            let mut stream = connect(&socket);
            for byte in b"{\"request\":\"status\"".iter().cycle().take(100) {
                if stream.write_all(&[*byte]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(200));
            }
            let mut reply = String::new();
            let _ = stream.read_to_string(&mut reply);
            reply
        }));
    }
    // Idle half-requests: 200 of them, more than the daemon serves at once.
    for _ in 0..200 {
        let socket = socket.clone();
        clients.push(thread::spawn(move || exchange(&socket, b"{\"request\":")));
    }
    let replies: Vec<String> = clients
        .into_iter()
        .map(|c| c.join().expect("client thread"))
        .collect();
    // Abandoned diffs: the client hangs up right after asking.
    for _ in 0..50 {
        let mut stream = connect(&socket);
        stream.write_all(DIFF).expect("send diff");
    }
    // Their work is cancelled within a moment.
    thread::sleep(Duration::from_secs(2));
    // Concurrent diffs, all asked before any answer is read.
    let waiting: Vec<UnixStream> = (0..20)
        .map(|_| {
            let mut stream = connect(&socket);
            stream.write_all(DIFF).expect("send diff");
            stream
        })
        .collect();
    let mut diff_replies = Vec::new();
    for mut stream in waiting {
        let mut reply = String::new();
        let _ = stream.read_to_string(&mut reply);
        diff_replies.push(reply);
    }
    let hostile_for = started.elapsed();

    assert!(
        oversized.iter().any(|r| r.contains("at most 64 KiB")),
        "an oversized request is refused: {oversized:?}"
    );
    assert!(
        replies
            .iter()
            .any(|r| r.contains("no whole request within")),
        "a trickling or idle request is cut off"
    );
    assert!(
        replies.iter().any(|r| r.contains("busy")),
        "connections over the cap are told the daemon is busy"
    );
    assert!(
        diff_replies
            .iter()
            .all(|r| r.contains("\"reply\":\"text\"") || r.contains("busy")),
        "{diff_replies:?}"
    );
    assert!(diff_replies
        .iter()
        .any(|r| r.contains("\"reply\":\"text\"")));

    // Give the daemon a moment to drop what the hostile clients left.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (mut rss_after, mut fds_after) = (rss_kib(pid), fd_count(pid));
    while !(within_ten_percent(rss_before as f64, rss_after as f64)
        && within_ten_percent(fds_before as f64, fds_after as f64))
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(500));
        (rss_after, fds_after) = (rss_kib(pid), fd_count(pid));
    }
    eprintln!(
        "hostile clients for {hostile_for:?}: RSS {rss_before} → {rss_after} KiB, fds {fds_before} → {fds_after}"
    );
    assert!(
        within_ten_percent(rss_before as f64, rss_after as f64),
        "RSS {rss_before} → {rss_after} KiB"
    );
    assert!(
        within_ten_percent(fds_before as f64, fds_after as f64),
        "fds {fds_before} → {fds_after}"
    );
    let status = setup.cli(&["status"]);
    assert!(status.status.success(), "{}", setup.log_text());
    drop(daemon);
}
