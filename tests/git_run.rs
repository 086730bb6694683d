//! `kedge run` end to end against `git daemon`: artifacts on the interval,
//! a new commit, an unreachable remote, SIGTERM, and `kedge status` with
//! the daemon running and stopped.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kedge::state::Store;

use crate::support::git::{git_daemon, FixtureRepo};

fn kedge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
        .args(args)
        .output()
        .expect("run kedge")
}

fn status(config: &Path) -> (bool, String) {
    let out = kedge(&["status", "--config", config.to_str().expect("utf-8")]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Polls `kedge status` until `accept` holds, or fails with the last table
/// and the daemon's log.
fn wait_for_status(
    config: &Path,
    log: &Path,
    what: &str,
    accept: impl Fn(bool, &str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (ok, table) = status(config);
        if accept(ok, &table) {
            return table;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("timed out waiting for {what}; last status:\n{table}\nkedge log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_kedge(config: &Path, log: &Path) -> Daemon {
    let log = std::fs::File::create(log).expect("create log");
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config", config.to_str().expect("utf-8")])
            .env("KEDGE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge run"),
    )
}

fn sigterm_and_wait(daemon: &mut Daemon) -> std::process::ExitStatus {
    let pid = daemon.0.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(sent.success(), "kill -TERM {pid}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = daemon.0.try_wait().expect("wait kedge") {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "kedge did not stop within 15s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kedge_run_follows_the_branch_keeps_the_last_artifact_when_the_remote_dies_and_stops_on_sigterm()
{
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let first = repo.commit(&[("apps/web.yaml", "w: 1\n")], "one");
    let server = git_daemon(root.path());
    let state_dir = root.path().join("state");
    let config = root.path().join("kedge.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nstate_dir = {:?}\nsocket = {:?}\n\n[git.fleet]\nurl = \"git://127.0.0.1:{}/fleet.git\"\ninterval = \"1s\"\ntimeout = \"10s\"\n",
            state_dir.display().to_string(),
            root.path().join("kedge.sock").display().to_string(),
            server.port
        ),
    )
    .expect("write config");
    let log = root.path().join("kedge.log");
    let mut daemon = start_kedge(&config, &log);

    let table = wait_for_status(&config, &log, "the first revision", |ok, t| {
        ok && t.contains(&format!("main@sha1:{first}"))
    });
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("git/fleet") && table.contains("True"),
        "{table}"
    );

    let second = repo.commit(&[("apps/web.yaml", "w: 2\n")], "two");
    wait_for_status(&config, &log, "the second revision", |ok, t| {
        ok && t.contains(&format!("main@sha1:{second}"))
    });

    drop(server);
    let table = wait_for_status(&config, &log, "the failure", |ok, t| {
        !ok && t.contains("False")
    });
    assert!(
        table.contains(&format!("main@sha1:{second}")),
        "the last revision stays: {table}"
    );
    assert!(
        table.contains("fetching git://127.0.0.1"),
        "the message says what failed: {table}"
    );

    let exit = sigterm_and_wait(&mut daemon);
    assert!(exit.success(), "kedge run exits 0 on SIGTERM: {exit}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("stopping") && log_text.contains("SIGTERM"),
        "{log_text}"
    );

    let (ok, table) = status(&config);
    assert!(
        !ok && table.contains(&format!("main@sha1:{second}")),
        "status works while stopped: {table}"
    );
    let store = Store::open_read_only(&state_dir.join("kedge.db")).expect("open state read-only");
    let artifact = kedge::source::store::latest_artifact(&store, "git", "fleet")
        .expect("read latest artifact")
        .expect("the last good artifact survives the daemon");
    assert_eq!(artifact.revision, format!("main@sha1:{second}"));
    assert!(artifact.path.is_file());
    let failures = store.events("git", "fleet", 10).expect("events");
    assert!(
        failures.iter().any(|e| e.reason == "GitOperationFailed"),
        "{failures:?}"
    );
}

#[test]
fn kedge_status_of_a_state_dir_never_used_says_so_and_exits_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = kedge(&["status", "--state-dir", dir.path().to_str().expect("utf-8")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing recorded"));
}
