//! The fleet repository through the `git` program: whether the branch and
//! the node's directory exist, and the one commit that creates it. gix,
//! which the daemon fetches with, cannot push, so bootstrap uses git for
//! everything it does to the repository, with the same credentials the
//! daemon will use: the key and known_hosts through kedge's own `ssh`
//! command line, a password or CA as in-memory config in the environment.
//! git runs isolated from the user's and system's config, never prompts,
//! and is killed at the deadline.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::config::GitSource;

/// How git failed to reach the repository.
#[derive(Debug)]
pub enum Failure {
    /// The server answered but refused this key or these credentials (a
    /// deploy key not added yet looks like this).
    Refused(String),
    /// Anything else: unreachable, not a repository, killed at the deadline.
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Refused(message) | Failure::Failed(message) => f.write_str(message),
        }
    }
}

/// The fleet repository, as the source's settings reach it.
pub struct Remote {
    url: String,
    env: Vec<(String, String)>,
    /// Where `ssh` writes its messages (its command line sends them there).
    ssh_stderr: Option<PathBuf>,
    timeout: Duration,
}

/// Variables of the caller's environment that would change which
/// repository git works on or how it checks the server (they override the
/// config bootstrap gives it).
const INHERITED_GIT_VARIABLES: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_SSL_NO_VERIFY",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "GIT_SSH",
];

/// The identity of the bootstrap commit, unless the environment sets one.
const AUTHOR_NAME: &str = "kedge bootstrap";

impl Remote {
    /// `scratch` holds `ssh`'s messages; `source` the URL and credentials.
    pub fn new(source: &GitSource, scratch: &Path, timeout: Duration) -> anyhow::Result<Remote> {
        let mut config: Vec<(&str, String)> = Vec::new();
        if let (Some(user), Some(file)) = (&source.auth.username, &source.auth.password_file) {
            let password = std::fs::read_to_string(file)
                .with_context(|| format!("reading --password-file {}", file.display()))?;
            let pair = format!("{user}:{}", password.trim_end_matches(['\r', '\n']));
            config.push((
                "http.extraHeader",
                format!("Authorization: Basic {}", base64(&pair)),
            ));
        }
        if let Some(ca) = &source.auth.ca_file {
            config.push(("http.sslCAInfo", ca.display().to_string()));
        }
        let mut env: Vec<(String, String)> = [
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_TERMINAL_PROMPT", "0"),
            ("GIT_ASKPASS", "/bin/false"),
            ("SSH_ASKPASS", "/bin/false"),
            ("LC_ALL", "C"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.push(("GIT_CONFIG_COUNT".into(), config.len().to_string()));
        for (index, (key, value)) in config.into_iter().enumerate() {
            env.push((format!("GIT_CONFIG_KEY_{index}"), key.to_string()));
            env.push((format!("GIT_CONFIG_VALUE_{index}"), value));
        }
        let ssh_stderr = scratch.join("ssh-stderr.log");
        let ssh = crate::source::git::ssh_command(source, &ssh_stderr);
        if let Some(command) = &ssh {
            env.push(("GIT_SSH_COMMAND".into(), command.clone()));
            env.push(("GIT_SSH_VARIANT".into(), "ssh".into()));
        }
        Ok(Remote {
            url: source.url.clone(),
            env,
            ssh_stderr: ssh.map(|_| ssh_stderr),
            timeout,
        })
    }

    /// The commit `branch` points to, `None` when the repository has no
    /// such branch (an empty repository has none).
    pub fn branch_head(&self, branch: &str) -> Result<Option<String>, Failure> {
        let refname = format!("refs/heads/{branch}");
        let listed = self.git(Path::new("/"), &["ls-remote", "--", &self.url, &refname])?;
        Ok(listed.lines().find_map(|line| {
            let (commit, name) = line.split_once('\t')?;
            (name == refname).then(|| commit.to_string())
        }))
    }

    /// A work tree of `branch` in `dir` (depth 1), or an empty repository
    /// on that branch when it does not exist yet.
    pub fn checkout(&self, branch: &str, exists: bool, dir: &Path) -> Result<(), Failure> {
        let target = dir.to_string_lossy();
        if exists {
            let args = ["clone", "-q", "--depth", "1", "--single-branch", "--branch"];
            let mut args: Vec<&str> = args.to_vec();
            args.extend([branch, "--", &self.url, &target]);
            self.git(Path::new("/"), &args).map(drop)
        } else {
            self.git(Path::new("/"), &["init", "-q", "-b", branch, &target])
                .map(drop)
        }
    }

    /// Commits `files` (paths relative to the work tree) in `dir` and
    /// returns the new commit.
    pub fn commit(&self, dir: &Path, files: &[&str], message: &str) -> Result<String, Failure> {
        let mut add = vec!["add", "--"];
        add.extend(files);
        self.git(dir, &add)?;
        self.git(dir, &["commit", "-q", "-m", message])?;
        self.git(dir, &["rev-parse", "HEAD"])
    }

    /// Pushes the work tree's HEAD to `branch`; refused (not forced) when
    /// the branch moved since the checkout.
    pub fn push(&self, dir: &Path, branch: &str) -> Result<(), Failure> {
        let refspec = format!("HEAD:refs/heads/{branch}");
        self.git(dir, &["push", "-q", "--", &self.url, &refspec])
            .map(drop)
    }

    /// Runs git in `dir`; stdout on success.
    fn git(&self, dir: &Path, args: &[&str]) -> Result<String, Failure> {
        if let Some(file) = &self.ssh_stderr {
            let _ = std::fs::write(file, "");
        }
        let mut command = Command::new("git");
        for variable in INHERITED_GIT_VARIABLES {
            command.env_remove(variable);
        }
        command
            .args(args)
            .current_dir(dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if std::env::var_os("GIT_AUTHOR_NAME").is_none() {
            let email = format!("kedge@{}", hostname());
            command
                .env("GIT_AUTHOR_NAME", AUTHOR_NAME)
                .env("GIT_AUTHOR_EMAIL", &email)
                .env("GIT_COMMITTER_NAME", AUTHOR_NAME)
                .env("GIT_COMMITTER_EMAIL", &email);
        }
        let output = run_bounded(&mut command, self.timeout).map_err(|err| {
            Failure::Failed(format!("git {}: {err} (is git installed?)", args[0]))
        })?;
        let Some(output) = output else {
            return Err(Failure::Failed(format!(
                "git {} {}: no answer within {}",
                args[0],
                self.url,
                humantime::format_duration(self.timeout)
            )));
        };
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).trim().to_string());
        }
        let mut said: Vec<String> = self
            .ssh_stderr
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file).ok())
            .unwrap_or_default()
            .lines()
            .chain(String::from_utf8_lossy(&output.stderr).lines())
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with("Warning: Permanently added"))
            .map(str::to_string)
            .collect();
        said.dedup();
        let message = format!("git {} {}: {}", args[0], self.url, said.join("; "));
        Err(if refused(&message) {
            Failure::Refused(message)
        } else {
            Failure::Failed(message)
        })
    }
}

/// Whether git's message says the server refused the credentials (and
/// might accept them later) rather than that it cannot be reached.
fn refused(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "permission denied",
        "repository not found",
        "could not be found",
        "authentication failed",
        "403",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// Runs `command` to completion, or kills it after `timeout` (`None`).
fn run_bounded(
    command: &mut Command,
    timeout: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read both pipes on threads so a chatty git never blocks on them.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    );
    Ok(status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    }))
}

fn drain(pipe: Option<impl std::io::Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        bytes
    })
}

/// This machine's name, for the deploy key's comment and the commit.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

fn base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_is_told_from_an_unreachable_server() {
        assert!(refused(
            "git ls-remote ssh://git@h/r: git@h: Permission denied (publickey)."
        ));
        assert!(refused("ERROR: Repository not found."));
        assert!(!refused(
            "git ls-remote http://127.0.0.1:9/r: Failed to connect to 127.0.0.1 port 9: Connection refused"
        ));
    }
}
