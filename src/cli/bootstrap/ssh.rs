//! SSH for bootstrap: the server's host key (seen with `ssh-keyscan`,
//! shown by fingerprint, trusted only when the user says so) and the
//! node's deploy key (ed25519, made in process with `ssh-key`).

use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

/// Where an SSH URL points: `ssh://[user@]host[:port]/path` or scp-like
/// `[user@]host:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHost {
    pub host: String,
    pub port: u16,
}

impl SshHost {
    /// The host of an SSH URL; `None` for any other URL.
    pub fn of_url(url: &str) -> Option<SshHost> {
        if let Some(rest) = url.strip_prefix("ssh://") {
            let authority = rest.split('/').next()?;
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            let (host, port) = split_port(host_port)?;
            return Some(SshHost { host, port });
        }
        if url.contains("://") || url.starts_with('/') {
            return None;
        }
        // scp-like: a colon before the first slash.
        let (authority, _) = url.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        (!host.is_empty()).then(|| SshHost {
            host: host.trim_matches(['[', ']']).to_string(),
            port: 22,
        })
    }

    /// How `ssh` names this host in known_hosts.
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            22 => self.host.clone(),
            port => format!("[{}]:{port}", self.host),
        }
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_port(text: &str) -> Option<(String, u16)> {
    if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 22,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    match text.split_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((text.to_string(), 22)),
    }
    .filter(|(host, _)| !host.is_empty())
}

/// The server's host keys as known_hosts lines, from `ssh-keyscan`.
pub fn scan_host_keys(host: &SshHost, timeout: Duration) -> anyhow::Result<Vec<String>> {
    let output = Command::new("ssh-keyscan")
        .arg("-T")
        .arg(timeout.as_secs().max(1).to_string())
        .arg("-p")
        .arg(host.port.to_string())
        .arg("--")
        .arg(&host.host)
        .stdin(Stdio::null())
        .output()
        .context("running ssh-keyscan (Debian package openssh-client)")?;
    let lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        !lines.is_empty(),
        "cannot reach the SSH server {}: ssh-keyscan got no host key ({})",
        host.known_hosts_name(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(lines)
}

/// `ED25519 SHA256:…` of a known_hosts line.
pub fn fingerprint(known_hosts_line: &str) -> String {
    let mut fields = known_hosts_line.split_whitespace().skip(1);
    let key = match (fields.next(), fields.next()) {
        (Some(kind), Some(data)) => PublicKey::from_openssh(&format!("{kind} {data}")),
        _ => return format!("unreadable key: {known_hosts_line}"),
    };
    match key {
        Ok(key) => format!(
            "{} {}",
            key.algorithm().as_str(),
            key.fingerprint(HashAlg::Sha256)
        ),
        Err(err) => format!("unreadable key ({err}): {known_hosts_line}"),
    }
}

/// Whether `file` (known_hosts) has a key for `host` (hashed names too).
pub fn known(file: &Path, host: &SshHost) -> bool {
    file.is_file()
        && Command::new("ssh-keygen")
            .arg("-F")
            .arg(host.known_hosts_name())
            .arg("-f")
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}

/// Asks `question` on the terminal; anything but yes (or no terminal
/// answer at all) is no.
pub fn confirm(question: &str) -> bool {
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        Ok(_) => matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
        Err(_) => false,
    }
}

/// Makes an ed25519 key at `path` (mode 0600) and `path.pub`, the
/// directory created mode 0700 if missing; returns the public key line.
pub fn generate_key(path: &Path, comment: &str) -> anyhow::Result<String> {
    let mut seed = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
        .map_err(|_| anyhow::anyhow!("no randomness from the system for a key"))?;
    let keypair = ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = PrivateKey::new(ssh_key::private::KeypairData::Ed25519(keypair), comment)
        .context("making an ed25519 key")?;
    let private = key.to_openssh(LineEnding::LF).context("encoding the key")?;
    let public = key
        .public_key()
        .to_openssh()
        .context("encoding the public key")?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    write_new(path, private.as_bytes(), 0o600)?;
    write_new(&public_path(path), format!("{public}\n").as_bytes(), 0o644)?;
    Ok(public)
}

/// The public key line beside a private key (`KEY.pub`), or derived from
/// the private key when there is no such file.
pub fn public_key_of(path: &Path) -> anyhow::Result<String> {
    if let Ok(line) = std::fs::read_to_string(public_path(path)) {
        return Ok(line.trim().to_string());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    let key = PrivateKey::from_openssh(text.as_bytes())
        .with_context(|| format!("{}: not an OpenSSH private key", path.display()))?;
    Ok(key.public_key().to_openssh()?)
}

fn public_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".pub");
    name.into()
}

fn write_new(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls_name_their_host_and_port() {
        let host = |url: &str| SshHost::of_url(url).map(|h| (h.host, h.port));
        assert_eq!(
            host("ssh://git@git.example.org/ops/fleet.git"),
            Some(("git.example.org".into(), 22))
        );
        assert_eq!(
            host("ssh://git@127.0.0.1:2222/srv/fleet.git"),
            Some(("127.0.0.1".into(), 2222))
        );
        assert_eq!(
            host("ssh://git@[::1]:2222/fleet.git"),
            Some(("::1".into(), 2222))
        );
        assert_eq!(
            host("git@github.com:ops/fleet.git"),
            Some(("github.com".into(), 22))
        );
        assert_eq!(host("https://git.example.org/ops/fleet.git"), None);
        assert_eq!(host("/srv/git/fleet.git"), None);
        assert_eq!(host("file:///srv/git/fleet.git"), None);
    }

    #[test]
    fn known_hosts_names_carry_a_port_other_than_22() {
        let host = |port| SshHost {
            host: "127.0.0.1".into(),
            port,
        };
        assert_eq!(host(22).known_hosts_name(), "127.0.0.1");
        assert_eq!(host(2222).known_hosts_name(), "[127.0.0.1]:2222");
    }

    #[test]
    fn a_generated_key_reads_back_with_its_public_half() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/fleet");
        let public = generate_key(&path, "kedge@node").expect("generate");
        assert!(public.starts_with("ssh-ed25519 "));
        assert!(public.ends_with(" kedge@node"));
        std::fs::remove_file(public_path(&path)).expect("remove .pub");
        assert_eq!(public_key_of(&path).expect("derive"), public);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            generate_key(&path, "again").is_err(),
            "never overwrites a key"
        );
    }
}
