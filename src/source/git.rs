//! Fetching a Git source with gix into its own bare repository.
//!
//! # Design
//! Each source has a bare repository under `state_dir/sources/git/NAME`,
//! opened isolated from the user's and system's Git config. One fetch asks
//! the remote for exactly one ref (or commit) and stores it as
//! `refs/kedge/target`, shallow (depth 1): kedge needs the tree of one
//! commit, never the history. When the remote still points at an object
//! the repository already has, no pack is requested at all.
//!
//! SSH goes through the `ssh` program (gix shells out to it) with
//! `core.sshCommand` set in memory to the source's key and known_hosts
//! file, strict host key checking and batch mode. HTTPS uses reqwest with
//! rustls; credentials are read from their files at fetch time and handed
//! to gix through a credentials callback or an in-memory header, never
//! written to the repository's config.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use gix::remote::Direction;

use super::{Error, Result};
use crate::config::{GitRef, GitSource, SourceKind};

/// The local ref every fetch writes its target to.
const TARGET_REF: &str = "refs/kedge/target";

/// The commit a fetch resolved, and its Flux-style revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedCommit {
    pub commit: gix::ObjectId,
    pub revision: String,
    /// The tag the source follows (`ref.tag`, `ref.semver`); `None` for a
    /// branch or a commit.
    pub tag: Option<FollowedTag>,
}

/// A tag a fetch resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedTag {
    pub name: String,
    /// The annotated tag object; `None` for a lightweight tag.
    pub object: Option<gix::ObjectId>,
}

/// What to ask the remote for.
struct Want {
    refspec: String,
    /// What a missing ref is called in errors, e.g. `branch "main"`.
    what: String,
    /// The revision's prefix before `@sha1:` (branch or tag), `None` for a
    /// pinned commit.
    label: Option<String>,
    is_tag: bool,
}

/// Fetches the configured ref of `source` into the bare repository at
/// `repo_dir` (created if missing) and returns the commit it points to.
///
/// Setting `interrupt` aborts a pack transfer in progress.
pub fn fetch(source: &GitSource, repo_dir: &Path, interrupt: &AtomicBool) -> Result<FetchedCommit> {
    super::install_tls_provider();
    refuse_clear_text_credentials(source)?;
    if first_fetch_in_this_process(repo_dir) {
        match clear_stale_locks(repo_dir) {
            Ok(0) => {}
            Ok(removed) => tracing::warn!(
                source = %source.source_ref(),
                "removed {removed} lock files a stopped kedge left in {}",
                repo_dir.display()
            ),
            Err(err) => return Err(local_repository_error(source, repo_dir, err)),
        }
    }
    let mut repo = open_or_init(source, repo_dir)?;
    let stderr_file = ssh_stderr_file(repo_dir);
    std::fs::write(&stderr_file, "")
        .map_err(|err| local_repository_error(source, repo_dir, err))?;
    configure_transport(&mut repo, source, &stderr_file)?;
    fetch_configured(&repo, source, interrupt)
        .map_err(|err| with_ssh_diagnostics(err, &stderr_file))
        .map_err(|err| with_ownership_diagnostics(err, source, &stderr_file))
}

/// git refuses to serve a local repository owned by another user
/// ("dubious ownership"), and gix then only sees the connection close.
/// kedge does not override that check (a repository of another user is
/// not trusted just because kedge reads it): it says what is wrong and
/// how to fix it. `ours` is a file kedge created, so owned by its user.
fn with_ownership_diagnostics(err: Error, source: &GitSource, ours: &Path) -> Error {
    use std::os::unix::fs::MetadataExt;
    let path = source.url.strip_prefix("file://").unwrap_or(&source.url);
    let (Ok(repo), Ok(kedge)) = (std::fs::metadata(path), std::fs::metadata(ours)) else {
        return err;
    };
    if !path.starts_with('/') || repo.uid() == kedge.uid() {
        return err;
    }
    with_fetch_message(err, |message| {
        format!(
            "{path} is owned by uid {}, not by kedge's user (uid {}), and git refuses such \
             repositories (\"dubious ownership\"): make uid {} its owner, or trust it with \
             `git config --system --add safe.directory {path}`; {message}",
            repo.uid(),
            kedge.uid(),
            kedge.uid(),
        )
    })
}

fn fetch_configured(
    repo: &gix::Repository,
    source: &GitSource,
    interrupt: &AtomicBool,
) -> Result<FetchedCommit> {
    let want = match &source.reference {
        GitRef::Branch(branch) => Want {
            refspec: format!("+refs/heads/{branch}:{TARGET_REF}"),
            what: format!("branch {branch:?}"),
            label: Some(branch.clone()),
            is_tag: false,
        },
        GitRef::Tag(tag) => tag_want(tag),
        GitRef::Semver(range) => tag_want(&highest_matching_tag(repo, source, range)?),
        GitRef::Commit(commit) => Want {
            refspec: format!("+{commit}:{TARGET_REF}"),
            what: format!("commit {commit}"),
            label: None,
            is_tag: false,
        },
    };
    let wanted = fetch_want(repo, source, &want, interrupt)?;
    let commit = peel_to_commit(repo, source, wanted, &want)?;
    let revision = match &want.label {
        Some(label) => format!("{label}@sha1:{commit}"),
        None => format!("sha1:{commit}"),
    };
    let tag = match (&want.label, want.is_tag) {
        (Some(name), true) => Some(FollowedTag {
            name: name.clone(),
            object: (wanted != commit).then_some(wanted),
        }),
        _ => None,
    };
    Ok(FetchedCommit {
        commit,
        revision,
        tag,
    })
}

fn tag_want(tag: &str) -> Want {
    Want {
        refspec: format!("+refs/tags/{tag}:{TARGET_REF}"),
        what: format!("tag {tag:?}"),
        label: Some(tag.to_string()),
        is_tag: true,
    }
}

pub(crate) use crate::error_chain::describe;

fn local_repository_error<E: std::error::Error + 'static>(
    source: &GitSource,
    path: &Path,
    err: E,
) -> Error {
    Error::LocalRepository {
        source_name: source.name.clone(),
        path: path.to_path_buf(),
        message: describe(&err),
    }
}

fn fetch_error<E: std::error::Error + 'static>(source: &GitSource, err: E) -> Error {
    Error::Fetch {
        source_name: source.name.clone(),
        url: super::redact_url(&source.url),
        message: describe(&err),
    }
}

/// Opens the source's bare repository, creating it on first use. It is
/// isolated: no global, system or environment Git configuration applies.
/// Whether this process has not fetched into `repo_dir` before.
fn first_fetch_in_this_process(repo_dir: &Path) -> bool {
    static FETCHED: std::sync::Mutex<Vec<std::path::PathBuf>> = std::sync::Mutex::new(Vec::new());
    let mut fetched = FETCHED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if fetched.iter().any(|dir| dir == repo_dir) {
        return false;
    }
    fetched.push(repo_dir.to_path_buf());
    true
}

/// Removes the `*.lock` files of a repository (`shallow.lock`,
/// `packed-refs.lock`, ref locks) that a kedge killed mid-fetch left
/// behind; gix refuses to fetch while they exist. Only for a repository
/// kedge alone writes, before its first fetch in a process.
pub fn clear_stale_locks(repo_dir: &Path) -> std::io::Result<usize> {
    fn clear(dir: &Path, recurse: bool) -> std::io::Result<usize> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() && recurse {
                removed += clear(&path, true)?;
            } else if file_type.is_file() && path.extension().is_some_and(|e| e == "lock") {
                std::fs::remove_file(&path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
    Ok(clear(repo_dir, false)? + clear(&repo_dir.join("refs"), true)?)
}

pub fn open_or_init(source: &GitSource, repo_dir: &Path) -> Result<gix::Repository> {
    let options = gix::open::Options::isolated();
    if repo_dir.join("HEAD").is_file() {
        return gix::open_opts(repo_dir, options)
            .map_err(|err| local_repository_error(source, repo_dir, err));
    }
    std::fs::create_dir_all(repo_dir)
        .map_err(|err| local_repository_error(source, repo_dir, err))?;
    gix::ThreadSafeRepository::init_opts(
        repo_dir,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        options,
    )
    .map(|repo| repo.to_thread_local())
    .map_err(|err| local_repository_error(source, repo_dir, err))
}

/// Single quotes for a `sh -c` command line, which gix uses to run
/// `core.sshCommand`.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The `ssh` command line for `source`, its stderr appended to
/// `stderr_file` so that a refused host key can be reported in the error.
pub fn ssh_command(source: &GitSource, stderr_file: &Path) -> Option<String> {
    let key = source.auth.ssh_key_file.as_ref()?;
    let known_hosts = source.auth.known_hosts_file.as_ref()?;
    let connect_timeout = source.timeout.as_secs().max(1);
    Some(format!(
        "ssh -F /dev/null -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout={connect_timeout} \
         -o ServerAliveInterval={connect_timeout} -o ServerAliveCountMax=1 2>>{}",
        shell_quote(&key.to_string_lossy()),
        shell_quote(&known_hosts.to_string_lossy()),
        shell_quote(&stderr_file.to_string_lossy()),
    ))
}

/// Where the `ssh` program's messages of the current fetch go.
fn ssh_stderr_file(repo_dir: &Path) -> std::path::PathBuf {
    repo_dir.join("kedge-ssh-stderr.log")
}

/// Adds what `ssh` printed (e.g. "Host key verification failed.") to a
/// failed fetch's message: gix only sees the connection close.
fn with_ssh_diagnostics(err: Error, stderr_file: &Path) -> Error {
    let said: Vec<String> = std::fs::read_to_string(stderr_file)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("Warning: Permanently added"))
        .map(str::to_string)
        .collect();
    if said.is_empty() {
        return err;
    }
    with_fetch_message(err, |message| format!("ssh: {}; {message}", said.join(" ")))
}

/// A fetch error with its message rewritten by `rewrite`; other errors as
/// they are.
fn with_fetch_message(err: Error, rewrite: impl FnOnce(String) -> String) -> Error {
    match err {
        Error::Fetch {
            source_name,
            url,
            message,
        } => Error::Fetch {
            source_name,
            url,
            message: rewrite(message),
        },
        other => other,
    }
}

fn read_secret(source: &GitSource, path: &Path) -> Result<String> {
    super::read_secret_file(SourceKind::Git, &source.name, path)
}

/// A credential configured for a plain `http://` URL is refused before
/// anything is sent (check-config refuses it too; this holds for a config
/// that bypassed it).
fn refuse_clear_text_credentials(source: &GitSource) -> Result<()> {
    let plain_http = source.url.to_ascii_lowercase().starts_with("http://");
    let credential = [
        (&source.auth.password_file, "password_file"),
        (&source.auth.bearer_token_file, "bearer_token_file"),
    ]
    .into_iter()
    .find_map(|(file, field)| file.as_ref().map(|_| field));
    match credential {
        Some(field) if plain_http => Err(Error::Fetch {
            source_name: source.name.clone(),
            url: super::redact_url(&source.url),
            message: format!("refusing to send {field} in clear text over http://; use https"),
        }),
        _ => Ok(()),
    }
}

/// Sets the in-memory config of this fetch: the ssh command and, for a
/// bearer token, the Authorization header. Nothing is written to disk.
fn configure_transport(
    repo: &mut gix::Repository,
    source: &GitSource,
    ssh_stderr: &Path,
) -> Result<()> {
    let repo_dir = repo.path().to_path_buf();
    let bearer = match &source.auth.bearer_token_file {
        Some(file) => Some(read_secret(source, file)?),
        None => None,
    };
    let mut config = repo.config_snapshot_mut();
    if let Some(command) = ssh_command(source, ssh_stderr) {
        config
            .set_value(&gix::config::tree::Core::SSH_COMMAND, command.as_str())
            .map_err(|err| local_repository_error(source, &repo_dir, err))?;
        config
            .set_value(&gix::config::tree::Ssh::VARIANT, "ssh")
            .map_err(|err| local_repository_error(source, &repo_dir, err))?;
    }
    if let Some(token) = bearer {
        config
            .set_value(
                &gix::config::tree::Http::EXTRA_HEADER,
                format!("Authorization: Bearer {token}").as_str(),
            )
            .map_err(|err| local_repository_error(source, &repo_dir, err))?;
    }
    config
        .commit()
        .map_err(|err| local_repository_error(source, &repo_dir, err))?;
    Ok(())
}

/// Username and password for HTTP basic auth, if configured.
fn basic_credentials(source: &GitSource) -> Result<Option<(String, String)>> {
    match (&source.auth.username, &source.auth.password_file) {
        (Some(user), Some(file)) => Ok(Some((user.clone(), read_secret(source, file)?))),
        _ => Ok(None),
    }
}

fn remote_with_refspec<'repo>(
    repo: &'repo gix::Repository,
    source: &GitSource,
    refspec: &str,
) -> Result<gix::Remote<'repo>> {
    repo.remote_at(source.url.as_str())
        .and_then(|remote| remote.with_refspecs([refspec], Direction::Fetch))
        .map(|remote| remote.with_fetch_tags(gix::remote::fetch::Tags::None))
        .map_err(|err| fetch_error(source, err))
}

type Connection<'a, 'repo> = gix::remote::Connection<
    'a,
    'static,
    'repo,
    Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
>;

/// Connects with kedge's own credentials callback: it answers from the
/// configured files only, so no helper program or prompt is ever run.
fn connect<'a, 'repo>(
    remote: &'a gix::Remote<'repo>,
    source: &GitSource,
) -> Result<Connection<'a, 'repo>> {
    let credentials = basic_credentials(source)?;
    let ca = private_ca(source)?;
    let mut connection = remote
        .connect(Direction::Fetch)
        .map_err(|err| fetch_error(source, err))?;
    if is_http(&source.url) {
        let options = bounded_http_options(remote.repo(), source, ca)?;
        connection = connection.with_transport_options(Box::new(options));
    }
    Ok(
        connection.with_credentials(move |action| match (action, &credentials) {
            (gix::credentials::helper::Action::Get(context), Some((username, password))) => {
                Ok(Some(gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: password.clone(),
                        oauth_refresh_token: None,
                    },
                    next: context.into(),
                }))
            }
            _ => Ok(None),
        }),
    )
}

/// The source's `ca_file`, parsed, for an https URL.
fn private_ca(source: &GitSource) -> Result<Option<reqwest::Certificate>> {
    let Some(file) = &source.auth.ca_file else {
        return Ok(None);
    };
    let pem = super::read_credential_file(SourceKind::Git, &source.name, file)?;
    reqwest::Certificate::from_pem(&pem)
        .map(Some)
        .map_err(|err| {
            let unusable = super::credential_error(SourceKind::Git, &source.name, file);
            unusable(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
        })
}

fn is_http(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    url.starts_with("http://") || url.starts_with("https://")
}

/// The HTTP options gix derives from the repository config, with the
/// reqwest client also trusting `certificate` and every request ending
/// after the source's timeout: a server that froze or trickles bytes must
/// not keep the fetch thread (and the source's lock) after the scheduler
/// gave up on it.
fn bounded_http_options(
    repo: &gix::Repository,
    source: &GitSource,
    certificate: Option<reqwest::Certificate>,
) -> Result<gix::protocol::transport::client::blocking_io::http::Options> {
    use gix::protocol::transport::client::blocking_io::http;
    let configured = repo
        .transport_options(gix::bstr::BStr::new(source.url.as_str()), None)
        .map_err(|err| fetch_error(source, err))?;
    let mut options = configured
        .and_then(|any| any.downcast::<http::Options>().ok())
        .map(|boxed| *boxed)
        .unwrap_or_default();
    let timeout = source.timeout;
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(
            move |builder: reqwest::blocking::ClientBuilder| {
                let builder = builder.timeout(timeout);
                Ok(match &certificate {
                    Some(certificate) => builder.add_root_certificate(certificate.clone()),
                    None => builder,
                })
            },
        )),
        // Unlike the client's timeout (each read), this one bounds the
        // whole request, body included: an endless body ends too.
        configure_request: Some(Box::new(move |request: &mut reqwest::blocking::Request| {
            *request.timeout_mut() = Some(timeout);
            Ok(())
        })),
    };
    options.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    Ok(options)
}

/// Lists the remote's tags and returns the highest one whose name (less a
/// leading `v`) is a semver version in `range`.
fn highest_matching_tag(
    repo: &gix::Repository,
    source: &GitSource,
    range: &semver::VersionReq,
) -> Result<String> {
    let remote = remote_with_refspec(repo, source, "refs/tags/*:refs/tags/*")?;
    let connection = connect(&remote, source)?;
    let (ref_map, _handshake) = connection
        .ref_map(gix::progress::Discard, Default::default())
        .map_err(|err| fetch_error(source, err))?;
    let tags = ref_map.remote_refs.iter().filter_map(|remote_ref| {
        let (name, _, _) = remote_ref.unpack();
        name.to_string()
            .strip_prefix("refs/tags/")
            .map(str::to_string)
    });
    pick_highest(tags, range).ok_or_else(|| Error::RefNotFound {
        source_name: source.name.clone(),
        url: super::redact_url(&source.url),
        what: format!("tag matching semver range {range}"),
    })
}

/// The tag with the highest semver version in `range`, ignoring tags that
/// are not versions.
pub fn pick_highest(
    tags: impl IntoIterator<Item = String>,
    range: &semver::VersionReq,
) -> Option<String> {
    tags.into_iter()
        .filter_map(|tag| {
            let version = semver::Version::parse(tag.strip_prefix('v').unwrap_or(&tag)).ok()?;
            range.matches(&version).then_some((version, tag))
        })
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, tag)| tag)
}

/// Asks the remote for `want` and returns the object its ref points to (a
/// commit, or an annotated tag), receiving a shallow pack only when the
/// object is not here already.
fn fetch_want(
    repo: &gix::Repository,
    source: &GitSource,
    want: &Want,
    interrupt: &AtomicBool,
) -> Result<gix::ObjectId> {
    let remote = remote_with_refspec(repo, source, &want.refspec)?;
    let connection = connect(&remote, source)?;
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(|err| fetch_error(source, err))?;
    let wanted = prepare
        .ref_map()
        .mappings
        .iter()
        .find_map(|mapping| mapping.remote.as_id().map(ToOwned::to_owned))
        .ok_or_else(|| Error::RefNotFound {
            source_name: source.name.clone(),
            url: super::redact_url(&source.url),
            what: want.what.clone(),
        })?;
    if !repo.has_object(wanted) {
        let depth = NonZeroU32::MIN;
        prepare
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(depth))
            .receive(gix::progress::Discard, interrupt)
            .map_err(|err| fetch_error(source, err))?;
    }
    Ok(wanted)
}

fn peel_to_commit(
    repo: &gix::Repository,
    source: &GitSource,
    id: gix::ObjectId,
    want: &Want,
) -> Result<gix::ObjectId> {
    repo.find_object(id)
        .and_then(|object| object.peel_to_commit())
        .map(|commit| commit.id)
        .map_err(|err| Error::Fetch {
            source_name: source.name.clone(),
            url: super::redact_url(&source.url),
            message: format!(
                "{} ({id}) is not a commit here after the fetch: {}",
                want.what,
                describe(&err)
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn range(text: &str) -> semver::VersionReq {
        match semver::VersionReq::parse(text) {
            Ok(range) => range,
            Err(err) => panic!("test range {text:?}: {err}"),
        }
    }

    #[test]
    fn semver_picks_the_highest_tag_in_range_with_or_without_a_v() {
        let all = tags(&[
            "v1.0.0",
            "1.2.0",
            "v1.10.1",
            "v2.0.0",
            "latest",
            "v1.11.0-rc.1",
        ]);
        assert_eq!(
            pick_highest(all, &range(">=1.0, <2")),
            Some("v1.10.1".to_string())
        );
    }

    #[test]
    fn semver_finds_nothing_when_no_tag_is_in_range() {
        assert_eq!(
            pick_highest(tags(&["v0.1.0", "nightly"]), &range(">=1.0")),
            None
        );
    }

    #[test]
    fn ssh_command_quotes_paths_and_checks_host_keys_strictly() {
        let source = GitSource {
            name: "fleet".into(),
            url: "ssh://git@example.org/fleet.git".into(),
            reference: GitRef::default_branch(),
            interval: std::time::Duration::from_secs(60),
            timeout: std::time::Duration::from_secs(30),
            auth: crate::config::GitAuth {
                ssh_key_file: Some("/etc/kedge/it's key".into()),
                known_hosts_file: Some("/etc/kedge/known_hosts".into()),
                ..Default::default()
            },
            ignore: Vec::new(),
            suspend: false,
            verify: None,
        };
        let command = ssh_command(&source, Path::new("/var/lib/kedge/ssh.log")).unwrap_or_default();
        assert!(
            command.contains(r"-i '/etc/kedge/it'\''s key'"),
            "{command}"
        );
        assert!(
            command.contains("-o StrictHostKeyChecking=yes"),
            "{command}"
        );
        assert!(
            command.contains("-o UserKnownHostsFile='/etc/kedge/known_hosts'"),
            "{command}"
        );
        assert!(command.contains("-o BatchMode=yes"), "{command}");
    }

    #[test]
    fn stale_locks_are_removed_from_the_repository_and_its_refs_only() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let repo = dir.path();
        for file in [
            "shallow.lock",
            "packed-refs.lock",
            "refs/heads/main.lock",
            "HEAD",
            "objects/pack/p.lock",
        ] {
            let path = repo.join(file);
            std::fs::create_dir_all(path.parent().unwrap_or(repo))?;
            std::fs::write(&path, "")?;
        }
        assert_eq!(clear_stale_locks(repo)?, 3);
        assert!(repo.join("HEAD").exists());
        assert!(!repo.join("refs/heads/main.lock").exists());
        assert!(
            repo.join("objects/pack/p.lock").exists(),
            "objects are not walked"
        );
        Ok(())
    }
}
