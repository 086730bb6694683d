//! Helpers of the daemon and CLI tests: a config with a temporary state
//! directory and control socket, `kedge run` as a child, and the CLI.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::git::FixtureRepo;

/// A Git fixture repository, a config file, a state directory and a
/// control socket for one test.
pub struct Setup {
    pub root: tempfile::TempDir,
    pub repo: FixtureRepo,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Setup {
    /// `extra` is TOML appended after `[agent]` and `[git.fleet]` (a
    /// `file://` source with a long interval: only requests fetch it).
    pub fn new(agent_extra: &str, extra: &str) -> Setup {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FixtureRepo::new(root.path(), "fleet");
        let state_dir = root.path().join("state");
        let socket = root.path().join("run/kedge.sock");
        let config = root.path().join("etc/kedge.toml");
        std::fs::create_dir_all(root.path().join("etc")).expect("mkdir etc");
        let log = root.path().join("kedge.log");
        let setup = Setup {
            root,
            repo,
            config,
            state_dir,
            socket,
            log,
        };
        setup.write_config(&setup.config_text(agent_extra, extra));
        setup
    }

    pub fn config_text(&self, agent_extra: &str, extra: &str) -> String {
        format!(
            "[agent]\nstate_dir = {:?}\nsocket = {:?}\n{agent_extra}\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"1h\"\n\n{extra}",
            self.state_dir.display().to_string(),
            self.socket.display().to_string(),
            self.repo.bare.display(),
        )
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Replaces the config as editors do: a temporary file renamed over it.
    pub fn replace_config(&self, text: &str) {
        let temp = self.config.with_file_name(".kedge.toml.tmp");
        std::fs::write(&temp, text).expect("write temp config");
        std::fs::rename(&temp, &self.config).expect("rename over the config");
    }

    /// `kedge run` with `env`, logging at debug level into [`Setup::log`].
    pub fn start(&self, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_kedge"));
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("KEDGE_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in env {
            command.env(key, value);
        }
        Daemon(command.spawn().expect("spawn kedge run"))
    }

    /// Runs the CLI with `--config` of this setup appended.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run kedge")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `check` holds, or panics naming `what` with the log.
    pub fn wait_until(&self, what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + bound;
        while !check() {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {bound:?} waiting for {what}; kedge log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks that `holds` stays true for all of `window`, polling, and
    /// panics naming `what` at the first time it does not.
    pub fn stays_for(&self, window: Duration, what: &str, mut holds: impl FnMut() -> bool) {
        let end = Instant::now() + window;
        while Instant::now() < end {
            assert!(holds(), "{what}: broken; kedge log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the control socket to answer.
    pub fn wait_ready(&self) {
        self.wait_until("the control socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
        });
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A `kedge run` child, killed when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.0.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{name}");
    }

    /// SIGTERM, then waits up to 15 s for the exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.0.try_wait().expect("wait kedge") {
                return status;
            }
            assert!(Instant::now() < deadline, "kedge did not stop within 15s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
