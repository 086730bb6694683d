//! systemd's notify protocol, seen from a fake systemd: `kedge run` with
//! `NOTIFY_SOCKET` on a datagram socket of this test and a 2 s watchdog.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::daemon_common::{Daemon, Setup};

/// Every message received, with when.
type Received = Arc<Mutex<Vec<(Instant, String)>>>;

fn listen(socket: UnixDatagram) -> Received {
    let received: Received = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 4096];
        while let Ok(n) = socket.recv(&mut buffer) {
            let text = String::from_utf8_lossy(&buffer[..n]).into_owned();
            sink.lock().expect("messages").push((Instant::now(), text));
        }
    });
    received
}

fn messages(received: &Received) -> Vec<(Instant, String)> {
    received.lock().expect("messages").clone()
}

/// Times of the messages holding `line` (e.g. `WATCHDOG=1`).
fn times_of(received: &Received, line: &str) -> Vec<Instant> {
    messages(received)
        .into_iter()
        .filter(|(_, text)| text.lines().any(|l| l == line))
        .map(|(at, _)| at)
        .collect()
}

/// `kedge run` of `setup` as systemd starts it with `WatchdogSec=`
/// (`watchdog_usec`) and this test as its notify socket; `stall` is the
/// stall hook's file.
fn under_fake_systemd(
    setup: &Setup,
    watchdog_usec: &str,
    stall: Option<&std::path::Path>,
) -> (Daemon, Received) {
    let notify_path = setup.root.path().join("notify.sock");
    let received = listen(UnixDatagram::bind(&notify_path).expect("bind notify socket"));
    let log = std::fs::File::create(&setup.log).expect("log");
    // WATCHDOG_PID must be kedge's own pid, as systemd sets it: exec keeps the shell's.
    let mut command = Command::new("sh");
    command
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" run --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_kedge"))
        .arg(&setup.config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", watchdog_usec)
        .env("KEDGE_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(stall) = stall {
        command.env("KEDGE_TEST_STALL_LOOP_WHEN", stall);
    }
    (Daemon(command.spawn().expect("spawn kedge run")), received)
}

#[test]
fn ready_status_watchdog_reloading_and_stopping_reach_systemd_and_a_stalled_loop_stops_the_watchdog(
) {
    let setup = Setup::new("", "");
    setup.repo.commit(&[("apps/a.yaml", "a: 1\n")], "one");
    let stall = setup.root.path().join("stall");
    let (mut daemon, received) = under_fake_systemd(&setup, "2000000", Some(&stall));

    let bound = Duration::from_secs(30);
    setup.wait_until("READY=1", bound, || {
        !times_of(&received, "READY=1").is_empty()
    });
    let ready = messages(&received)
        .into_iter()
        .find(|(_, text)| text.contains("READY=1"))
        .map(|(_, text)| text)
        .unwrap_or_default();
    assert!(
        ready.contains("STATUS=") && ready.contains("kustomizations ready"),
        "READY comes with a status line: {ready:?}"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&setup.socket).is_ok(),
        "the control socket is bound before READY=1"
    );

    // Half of WATCHDOG_USEC: a ping every second, each with a fresh STATUS=.
    setup.wait_until("three watchdog pings", bound, || {
        times_of(&received, "WATCHDOG=1").len() >= 3
    });
    let pings = times_of(&received, "WATCHDOG=1");
    for pair in pings.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap < Duration::from_millis(1800),
            "pings closer than WatchdogSec: {gap:?}"
        );
    }
    let statuses = messages(&received)
        .iter()
        .filter(|(_, text)| text.starts_with("STATUS="))
        .count();
    assert!(statuses >= 3, "a STATUS= line with each ping: {statuses}");

    // SIGHUP: RELOADING=1, then READY=1 again.
    daemon.signal("HUP");
    setup.wait_until("RELOADING=1 then READY=1", bound, || {
        let reloading = times_of(&received, "RELOADING=1");
        let readies = times_of(&received, "READY=1");
        reloading
            .first()
            .is_some_and(|r| readies.iter().any(|ready| ready >= r))
    });

    // The scheduler loop hangs: the pings stop while the process lives on.
    std::fs::write(&stall, "").expect("create stall file");
    let stalled_at = Instant::now();
    setup.wait_until("the stall logged", bound, || {
        setup.log_text().contains("the scheduler loop stalls")
    });
    // systemd restarts a unit that sends no ping within WatchdogSec (2 s
    // here): silence for 1.5 × WatchdogSec is the property itself, so this
    // window is the check, not a guess at how long something takes.
    std::thread::sleep(Duration::from_micros(2_000_000 * 3 / 2));
    let late: Vec<Duration> = times_of(&received, "WATCHDOG=1")
        .into_iter()
        .filter(|at| *at > stalled_at + Duration::from_millis(200))
        .map(|at| at - stalled_at)
        .collect();
    assert!(
        late.is_empty(),
        "no watchdog ping once the loop is stuck, got pings at {late:?} after the stall"
    );
    assert!(
        daemon.0.try_wait().expect("try_wait").is_none(),
        "kedge still runs"
    );
    eprintln!(
        "watchdog: {} pings before the stall, none in the 1.5 × WatchdogSec after it",
        pings.len()
    );

    let exit = daemon.stop();
    assert!(exit.success(), "{exit}");
    assert!(
        !times_of(&received, "STOPPING=1").is_empty(),
        "STOPPING=1 sent; got {:?}",
        messages(&received)
    );
    assert!(
        !setup.socket.exists(),
        "the control socket is removed at exit"
    );
}

#[test]
fn under_systemd_logs_go_to_journald_or_say_why_not() {
    use std::os::unix::fs::MetadataExt;

    let setup = Setup::new("", "");
    let log = std::fs::File::create(&setup.log).expect("log");
    let meta = log.metadata().expect("log metadata");
    // What systemd sets when it connects stderr to the journal.
    let journal_stream = format!("{}:{}", meta.dev(), meta.ino());
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config"])
            .arg(&setup.config)
            .env("JOURNAL_STREAM", &journal_stream)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge run"),
    );
    setup.wait_ready();
    assert!(daemon.stop().success());
    let text = setup.log_text();
    if std::path::Path::new("/run/systemd/journal/socket").exists() {
        assert!(
            !text.contains("kedge started"),
            "events go to journald, not stderr: {text}"
        );
    } else {
        assert!(
            text.contains("journald unreachable") && text.contains("kedge started"),
            "without journald, kedge says so and logs to stderr: {text}"
        );
        assert!(
            !text.starts_with("20"),
            "no timestamps: journald adds its own: {text}"
        );
    }
}

/// The last `STATUS=` line systemd received.
fn last_status(received: &Received) -> String {
    messages(received)
        .iter()
        .rev()
        .find_map(|(_, text)| {
            text.lines()
                .find_map(|line| line.strip_prefix("STATUS="))
                .map(str::to_string)
        })
        .unwrap_or_default()
}

#[test]
fn the_status_line_follows_each_outcome_without_waiting_for_the_watchdog() {
    let setup = Setup::new("", "");
    // WatchdogSec=60s: the heartbeat refreshes STATUS= only every 30 s.
    let (_daemon, received) = under_fake_systemd(&setup, "60000000", None);
    setup.wait_until("READY=1", Duration::from_secs(30), || {
        !times_of(&received, "READY=1").is_empty()
    });
    // The repository has no commit yet: the source fails.
    let _ = setup.cli(&["reconcile", "source", "git/fleet"]);
    let bound = Duration::from_secs(10);
    setup.wait_until("STATUS= naming the failing source", bound, || {
        last_status(&received).contains("1 failing: fleet")
    });
    setup.repo.commit(&[("apps/a.yaml", "a: 1\n")], "one");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(
        out.status.success(),
        "{}",
        crate::daemon_common::stderr(&out)
    );
    setup.wait_until("STATUS= without the failure", bound, || {
        !last_status(&received).contains("failing")
    });
}

#[test]
fn the_source_field_of_log_events_carries_the_kind() {
    let setup = Setup::new("", "");
    setup.repo.commit(&[("apps/a.yaml", "a: 1\n")], "one");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(
        out.status.success(),
        "{}",
        crate::daemon_common::stderr(&out)
    );
    setup.wait_until("a log event of the source", Duration::from_secs(10), || {
        setup.log_text().contains("source=")
    });
    let text = setup.log_text();
    assert!(
        text.contains("source=git/fleet") && !text.contains("source=fleet"),
        "SOURCE= is `git/fleet`, as in kedge status and the CLI: {text}"
    );
}
