//! `kedge bootstrap git`: one command takes a fresh node to GitOps. From
//! then on the node's kedge configuration lives in the fleet repository,
//! at `<path>/kedge.toml`, which the local file names with `[agent]
//! config_from`.
//!
//! # Design
//! Steps in order, each a no-op when already done, so a second run changes
//! nothing:
//! 1. reach the repository: for SSH the host key (scanned, shown, trusted
//!    only when the user says so) and the deploy key (made if missing,
//!    then waited for until the forge accepts it);
//! 2. make sure `<path>/kedge.toml` is on the branch: if not, one commit
//!    with it and a README, pushed with the `git` program (or, with
//!    `--read-only`, printed for the user to commit);
//! 3. write the local config, validated like `kedge check-config`, the old
//!    one kept beside it;
//! 4. get the daemon to run it and wait until the fleet source and what
//!    `<path>/kedge.toml` declares are Ready.
//!
//! Nothing is written before the server answered: an unreachable
//! repository leaves the node as it was.

mod daemon;
mod files;
mod remote;
mod ssh;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use crate::config::layers::{parse_layered, Fragment, Layer};
use crate::config::{Config, GitAuth, GitRef, GitSource, DEFAULT_CONFIG_PATH};
use files::{FleetSource, FLEET};
use remote::{Failure, Remote};
use ssh::SshHost;

/// How often bootstrap tries a deploy key the forge has not accepted yet.
const KEY_RETRY: Duration = Duration::from_secs(2);
/// How long `ssh` may take to connect, in every git command of bootstrap.
const SSH_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct GitArgs {
    /// The fleet repository: ssh://[user@]host[:port]/path, scp-like
    /// user@host:path, https://, a local path or file://.
    #[arg(long)]
    url: String,
    /// The branch the node follows (created if the repository has none).
    #[arg(long, default_value = "main")]
    branch: String,
    /// The node's directory in the repository, e.g. clusters/edge-1.
    #[arg(long)]
    path: String,
    /// SSH: an existing private key instead of the deploy key bootstrap
    /// makes under --keys-dir.
    #[arg(long, conflicts_with = "generate_key")]
    private_key_file: Option<PathBuf>,
    /// SSH: make an ed25519 deploy key (KEYS_DIR/fleet) unless one exists;
    /// the default for SSH without --private-key-file.
    #[arg(long)]
    generate_key: bool,
    /// HTTPS: the user; the password (or token) is read from --password-file.
    #[arg(long, requires = "password_file")]
    username: Option<String>,
    /// HTTPS: the file holding the password or token of --username.
    #[arg(long, requires = "username")]
    password_file: Option<PathBuf>,
    /// HTTPS: a CA bundle (PEM) the server's certificate chains to.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// SSH: trust the host keys in this known_hosts file instead of asking.
    #[arg(long)]
    known_hosts_file: Option<PathBuf>,
    /// Trust the SSH host key seen without asking (unattended use).
    #[arg(long)]
    yes: bool,
    /// Push nothing (a deploy key without write access): print the files
    /// to commit instead.
    #[arg(long)]
    read_only: bool,
    /// The node's config file to write.
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The cluster's kubeconfig, for `[agent] kubeconfig`; default: the one
    /// the config names, else k3s's (/etc/rancher/k3s/k3s.yaml) if present.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Where the deploy key and known_hosts go.
    #[arg(long, default_value = "/etc/kedge/keys")]
    keys_dir: PathBuf,
    /// How long to wait for the deploy key to be accepted, for each git
    /// command, and for the first reconcile to be Ready.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Do not wait for the first reconcile.
    #[arg(long)]
    no_wait: bool,
}

pub fn git(args: &GitArgs) -> anyhow::Result<ExitCode> {
    let path = node_path(&args.path)?;
    let config_path = std::path::absolute(&args.config)
        .with_context(|| format!("--config {}", args.config.display()))?;
    let (old_text, mut existing) = files::read_existing(&config_path)?;
    if let Some(kubeconfig) = cluster(args, &existing)? {
        println!("cluster: {}", kubeconfig.display());
        files::set_kubeconfig(&mut existing, &kubeconfig);
    }
    let scratch = tempfile::tempdir().context("making a scratch directory")?;
    println!(
        "bootstrapping git/{FLEET}: {} branch {} path {path}",
        args.url, args.branch
    );

    let (source, remote, head) = match SshHost::of_url(&args.url) {
        Some(host) => connect_ssh(args, &host, scratch.path())?,
        None => connect_other(args, scratch.path())?,
    };

    let work = scratch.path().join("work");
    remote
        .checkout(&args.branch, head.is_some(), &work)
        .map_err(|failure| anyhow::anyhow!("{failure}"))?;
    let node = NodeDirectory::on_branch(&work, &path)?;

    // Checked as the daemon will check it, before anything is pushed: a
    // config the node would refuse must not leave a commit behind.
    let text = files::local_config(&existing, &source, &node.config_from());
    let config = checked_config(&config_path, &text, &node, &args.branch, head.as_deref())?;
    node.publish(args, &remote, &work)?;
    let written = write_local_config(&config_path, old_text.as_deref(), &text)?;

    let old_table: toml::Table = old_text
        .as_deref()
        .and_then(|text| toml::from_str(text).ok())
        .unwrap_or_default();
    let new_table: toml::Table = toml::from_str(&text).context("reading back the config")?;
    let change = daemon::Change {
        written,
        agent_changed: old_table.get("agent") != new_table.get("agent"),
    };
    daemon::apply(&config_path, &config.agent.socket, &change)?;
    if args.no_wait {
        return Ok(ExitCode::SUCCESS);
    }
    let expected = daemon::expected_units(&format!("git/{FLEET}"), &node.fragment);
    daemon::wait_ready(&config.agent.socket, &expected, args.timeout)?;
    Ok(ExitCode::SUCCESS)
}

/// Where k3s writes its kubeconfig.
const K3S_KUBECONFIG: &str = "/etc/rancher/k3s/k3s.yaml";

/// The kubeconfig to set in `[agent]`: `--kubeconfig`, else k3s's when the
/// config names none (kedge runs as a service: no $KUBECONFIG or
/// ~/.kube/config to fall back on); `None` leaves `[agent]` as it is.
fn cluster(args: &GitArgs, existing: &toml::Table) -> anyhow::Result<Option<PathBuf>> {
    if let Some(path) = &args.kubeconfig {
        return absolute("--kubeconfig", path).map(Some);
    }
    let named = existing
        .get("agent")
        .is_some_and(|agent| agent.get("kubeconfig").is_some());
    let k3s = Path::new(K3S_KUBECONFIG);
    Ok((!named && k3s.is_file()).then(|| k3s.to_path_buf()))
}

/// The local config `text` on its own (what `kedge check-config` reads, and
/// what the daemon runs until it has read the source), then with the
/// node's kedge.toml laid over it.
fn checked_config(
    config_path: &Path,
    text: &str,
    node: &NodeDirectory,
    branch: &str,
    head: Option<&str>,
) -> anyhow::Result<Config> {
    let revision = match head {
        Some(head) if node.added.is_empty() => format!("{branch}@sha1:{head}"),
        _ => format!("{branch} (bootstrap's commit)"),
    };
    Config::parse(config_path, text)
        .and_then(|_| parse_layered(config_path, text, &node.layer(revision)))
        .map_err(|err| anyhow::anyhow!("the config bootstrap would write is invalid:\n{err}"))
}

/// Writes `text` unless the file holds it already; whether it wrote.
fn write_local_config(path: &Path, old_text: Option<&str>, text: &str) -> anyhow::Result<bool> {
    if old_text == Some(text) {
        println!("{} is already as bootstrap writes it", path.display());
        return Ok(false);
    }
    files::replace_config(path, old_text, text)?;
    match old_text {
        Some(_) => println!(
            "wrote {} (the old one is {})",
            path.display(),
            files::backup_path(path).display()
        ),
        None => println!("wrote {}", path.display()),
    }
    Ok(true)
}

/// `--path` without `./`, empty or `.` components and trailing slashes;
/// `..` and absolute paths are refused.
fn node_path(path: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !path.starts_with('/'),
        "--path {path}: must be relative to the repository's top"
    );
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    anyhow::ensure!(
        !parts.is_empty() && !parts.contains(&".."),
        "--path {path:?}: must name a directory inside the repository, without '..'"
    );
    Ok(parts.join("/"))
}

fn absolute(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{flag} {}", path.display()))
}

/// The daemon's view of the source, for the git commands of bootstrap.
fn git_source(source: &FleetSource) -> GitSource {
    GitSource {
        name: FLEET.to_string(),
        url: source.url.clone(),
        reference: GitRef::Branch(source.branch.clone()),
        interval: Duration::from_secs(60),
        timeout: SSH_CONNECT_TIMEOUT,
        auth: GitAuth {
            ssh_key_file: source.ssh_key_file.clone(),
            known_hosts_file: source.known_hosts_file.clone(),
            username: source.username.clone(),
            password_file: source.password_file.clone(),
            bearer_token_file: None,
            ca_file: source.ca_file.clone(),
        },
        ignore: Vec::new(),
        suspend: false,
        verify: None,
    }
}

type Connected = (FleetSource, Remote, Option<String>);

/// HTTPS, a local path: credentials as given, and one try.
fn connect_other(args: &GitArgs, scratch: &Path) -> anyhow::Result<Connected> {
    let ssh_flag = [
        (args.private_key_file.is_some(), "--private-key-file"),
        (args.generate_key, "--generate-key"),
        (args.known_hosts_file.is_some(), "--known-hosts-file"),
    ]
    .into_iter()
    .find_map(|(given, flag)| given.then_some(flag));
    if let Some(flag) = ssh_flag {
        anyhow::bail!("{flag} is for SSH URLs, and {} is not one", args.url);
    }
    // The daemon refuses this too, but bootstrap asks the server first.
    anyhow::ensure!(
        args.password_file.is_none() || !args.url.to_ascii_lowercase().starts_with("http://"),
        "refusing to send --password-file in clear text over http://; use https"
    );
    let source = FleetSource {
        url: args.url.clone(),
        branch: args.branch.clone(),
        username: args.username.clone(),
        password_file: args
            .password_file
            .as_deref()
            .map(|p| absolute("--password-file", p))
            .transpose()?,
        ca_file: args
            .ca_file
            .as_deref()
            .map(|p| absolute("--ca-file", p))
            .transpose()?,
        ..FleetSource::default()
    };
    let remote = Remote::new(&git_source(&source), scratch, args.timeout)?;
    let head = remote
        .branch_head(&args.branch)
        .map_err(|failure| anyhow::anyhow!("cannot read the repository: {failure}"))?;
    Ok((source, remote, head))
}

/// SSH: the host key trusted, the deploy key made if needed and waited for
/// until the server accepts it.
fn connect_ssh(args: &GitArgs, host: &SshHost, scratch: &Path) -> anyhow::Result<Connected> {
    if args.username.is_some() || args.ca_file.is_some() {
        anyhow::bail!(
            "--username, --password-file and --ca-file are for HTTPS URLs, and {} is SSH",
            args.url
        );
    }
    let keys_dir = absolute("--keys-dir", &args.keys_dir)?;
    let known_hosts = trusted_host_keys(args, host, &keys_dir)?;
    let (key, public) = deploy_key(args, &keys_dir)?;
    let source = FleetSource {
        url: args.url.clone(),
        branch: args.branch.clone(),
        ssh_key_file: Some(key),
        known_hosts_file: Some(known_hosts),
        ..FleetSource::default()
    };
    let remote = Remote::new(&git_source(&source), scratch, args.timeout)?;
    let head = wait_for_access(&remote, &args.branch, &public, args.timeout)?;
    Ok((source, remote, head))
}

/// The known_hosts file the node trusts the server by: `--known-hosts-file`,
/// or `KEYS_DIR/known_hosts` holding the key seen by `ssh-keyscan` once the
/// user trusted it (or said `--yes`).
fn trusted_host_keys(args: &GitArgs, host: &SshHost, keys_dir: &Path) -> anyhow::Result<PathBuf> {
    if let Some(file) = &args.known_hosts_file {
        let file = absolute("--known-hosts-file", file)?;
        anyhow::ensure!(
            ssh::known(&file, host),
            "--known-hosts-file {} has no key for {}",
            file.display(),
            host.known_hosts_name()
        );
        return Ok(file);
    }
    let file = keys_dir.join("known_hosts");
    if ssh::known(&file, host) {
        println!(
            "host key of {}: trusted in {}",
            host.known_hosts_name(),
            file.display()
        );
        return Ok(file);
    }
    let lines = ssh::scan_host_keys(host, SSH_CONNECT_TIMEOUT.min(args.timeout))?;
    println!("host keys of {}:", host.known_hosts_name());
    for line in &lines {
        println!("  {}", ssh::fingerprint(line));
    }
    let trusted = args.yes || ssh::confirm("Trust them (compare with what the forge publishes)?");
    anyhow::ensure!(
        trusted,
        "host key not trusted: compare it, then run again and answer yes, or pass --yes or \
         --known-hosts-file"
    );
    std::fs::create_dir_all(keys_dir)
        .with_context(|| format!("creating {}", keys_dir.display()))?;
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
    println!("trusted: written to {}", file.display());
    Ok(file)
}

/// The private key the node uses and its public key line.
fn deploy_key(args: &GitArgs, keys_dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    if let Some(key) = &args.private_key_file {
        let key = absolute("--private-key-file", key)?;
        let public = ssh::public_key_of(&key)?;
        return Ok((key, public));
    }
    let key = keys_dir.join(FLEET);
    if key.exists() {
        let public = ssh::public_key_of(&key)?;
        println!("deploy key: {} (already there)", key.display());
        return Ok((key, public));
    }
    let public = ssh::generate_key(&key, &format!("kedge@{}", remote::hostname()))?;
    println!("deploy key: made {}", key.display());
    Ok((key, public))
}

/// Tries the repository until the server accepts the key; the branch's
/// commit, if it has one.
fn wait_for_access(
    remote: &Remote,
    branch: &str,
    public_key: &str,
    timeout: Duration,
) -> anyhow::Result<Option<String>> {
    let deadline = Instant::now() + timeout;
    let mut asked = false;
    loop {
        match remote.branch_head(branch) {
            Ok(head) => {
                if asked {
                    println!("the deploy key is accepted");
                }
                return Ok(head);
            }
            Err(Failure::Refused(message)) => {
                if !asked {
                    println!(
                        "The server refuses this node's key. Add it to the repository as a \
                         deploy key (write access lets bootstrap push the node's directory; \
                         read access is enough with --read-only):\n\n  {public_key}\n"
                    );
                    asked = true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    anyhow::bail!(
                        "the deploy key was not accepted within {}: {message}",
                        humantime::format_duration(timeout)
                    );
                }
                println!(
                    "waiting for the key to be accepted ({}s left)",
                    left.as_secs()
                );
                std::thread::sleep(KEY_RETRY.min(left));
            }
            Err(Failure::Failed(message)) => {
                anyhow::bail!("cannot read the repository: {message}")
            }
        }
    }
}

/// The node's directory on the branch: its `kedge.toml`, and the files
/// bootstrap adds when that is missing (with a README, unless there is one).
struct NodeDirectory {
    path: String,
    fragment: String,
    added: Vec<(String, String)>,
}

impl NodeDirectory {
    fn on_branch(work: &Path, path: &str) -> anyhow::Result<NodeDirectory> {
        let fragment_file = work.join(path).join("kedge.toml");
        if fragment_file.is_file() {
            println!("{path}/kedge.toml is on the branch: used as it is");
            let fragment = std::fs::read_to_string(&fragment_file)
                .with_context(|| format!("reading {path}/kedge.toml of the branch"))?;
            return Ok(NodeDirectory {
                path: path.to_string(),
                fragment,
                added: Vec::new(),
            });
        }
        let fragment = files::fragment(path);
        let mut added = vec![(format!("{path}/kedge.toml"), fragment.clone())];
        if !work.join(path).join("README.md").exists() {
            added.push((format!("{path}/README.md"), files::readme(path)));
        }
        Ok(NodeDirectory {
            path: path.to_string(),
            fragment,
            added,
        })
    }

    /// What `[agent] config_from` names.
    fn config_from(&self) -> String {
        format!("{}/kedge.toml", self.path)
    }

    /// The fragment as the daemon reads it from the artifact.
    fn layer(&self, revision: String) -> Layer {
        Layer {
            source: format!("git/{FLEET}"),
            revision,
            path: self.config_from(),
            fragments: vec![Fragment {
                path: self.config_from(),
                text: self.fragment.clone(),
            }],
        }
    }

    /// Commits and pushes the added files (one commit), or prints them with
    /// `--read-only`; nothing when nothing is added.
    fn publish(&self, args: &GitArgs, remote: &Remote, work: &Path) -> anyhow::Result<()> {
        if self.added.is_empty() {
            return Ok(());
        }
        if args.read_only {
            print_files_to_commit(args, &self.added);
            return Ok(());
        }
        for (name, content) in &self.added {
            let file = work.join(name);
            if let Some(dir) = file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(&file, content)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        let names: Vec<&str> = self.added.iter().map(|(name, _)| name.as_str()).collect();
        let message = format!(
            "kedge bootstrap: {path}\n\nThe kedge configuration of the node(s) at {path}, from \
             `kedge bootstrap git` on {host}.",
            path = self.path,
            host = remote::hostname()
        );
        let commit = remote
            .commit(work, &names, &message)
            .map_err(|failure| anyhow::anyhow!("{failure}"))?;
        remote.push(work, &args.branch).map_err(|failure| {
            anyhow::anyhow!(
                "{failure}\n(nothing was changed on this node; if the key may not push, run \
                 again with --read-only)"
            )
        })?;
        println!(
            "pushed {} to branch {} ({})",
            names.join(", "),
            args.branch,
            &commit[..commit.len().min(12)]
        );
        Ok(())
    }
}

fn print_files_to_commit(args: &GitArgs, files: &[(String, String)]) {
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    println!(
        "--read-only: nothing pushed. Commit these files to branch {} of {} \
         (then this node picks them up):\n",
        args.branch, args.url
    );
    for (name, content) in files {
        println!("==> {name} <==\n{content}");
    }
    println!(
        "for example, in a clone of the repository with write access:\n  \
         git add {}\n  git commit -m \"kedge bootstrap: {}\"\n  git push origin HEAD:{}\n",
        names.join(" "),
        args.path,
        args.branch
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_path_is_normalised_and_stays_inside_the_repository() {
        assert_eq!(
            node_path("./clusters/edge-1/").ok().as_deref(),
            Some("clusters/edge-1")
        );
        assert_eq!(
            node_path("clusters//edge-1").ok().as_deref(),
            Some("clusters/edge-1")
        );
        assert!(node_path("/clusters").is_err());
        assert!(node_path("clusters/../..").is_err());
        assert!(node_path("./").is_err());
    }
}
