//! Sources (one file per kind) that turn a remote into a content-addressed
//! artifact, and the artifact store.
//!
//! # Design
//! A fetch and the artifact it produces are separate steps: [`git`] brings
//! a commit into a per-source bare repository under
//! `state_dir/sources/git/NAME`, [`tree`] reads that commit's files straight
//! from the object database (no checkout, so no symlink is ever followed),
//! [`archive`] writes them as a deterministic `tar.gz`, and [`store`] names
//! it by its sha256 under `state_dir/artifacts/git/NAME/`.
//! [`sync::sync_git_source`] chains them for the scheduler.
//!
//! # Adding a kind
//! The scheduler knows sources only through [`sync`], [`restore`] and
//! [`display_url`] over a [`config::Source`](crate::config::Source), and
//! [`SourceSettings`](crate::config::SourceSettings) for name, interval,
//! timeout and suspension. A new kind is one file here with its own sync
//! (and restore), one variant of `config::Source` with its table, and one
//! arm in each of these functions; state rows, events, `kedge status`,
//! `kedge reconcile source KIND/NAME`, suspend/resume and the journal's
//! `SOURCE=KIND/NAME` then follow from the kind's name.
//!
//! Nothing on disk is trusted unchecked: an artifact is verified against
//! its sha256 ([`store::verify`]) before it is unpacked and at every sync,
//! and [`sync::restore_artifact`] rebuilds a damaged one from the local
//! repository without the network. [`archive::extract_verified`] records
//! a [`manifest::Manifest`] of the tree it unpacks, checked before builds.
//!
//! # Current limitations
//! - Git submodules are left out of artifacts.

pub mod archive;
pub mod bucket;
pub mod bundle;
pub mod chart;
pub mod git;
pub mod helm;
pub mod helm_index;
pub mod helm_oci;
pub mod ignore;
pub mod manifest;
pub mod oci;
pub mod store;
pub mod sync;
pub mod tree;
pub mod verify;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::config::{Source, SourceKind};
use crate::state::SourceStatus;

pub use archive::{extract, extract_verified};
pub use store::ArtifactStore;
pub use sync::{restore_artifact, sync_git_source, Restored, SyncOutcome};

/// Fetches `source` and returns its current artifact, building a new one
/// only when what it is built from differs from `previous`. `upstream` is
/// the current artifact of [`Source::upstream`], for a kind built from
/// another source; `imported` what the last bundle imported for it, which
/// decides for a bundle-only source and for a fresher bundle
/// ([`bundle`]). Blocking; an `interrupt` set from another thread makes it
/// stop early.
pub fn sync(
    source: &Source,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    upstream: Option<&Artifact>,
    imported: Option<&bundle::Imported>,
    limits: Limits,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    if let Some(outcome) = bundle::bundle_outcome(source, previous, imported) {
        return outcome;
    }
    match source {
        Source::Git(git) => sync_git_source(git, state_dir, previous, limits, interrupt),
        Source::Helm(helm) => helm::sync_helm_repository(helm, state_dir, previous, interrupt),
        Source::Chart(chart) => {
            chart::sync_chart(chart, state_dir, previous, upstream, limits, interrupt)
        }
        Source::Bucket(b) => bucket::sync_bucket_source(b, state_dir, previous, limits, interrupt),
        Source::Oci(oci) => oci::sync_oci_source(oci, state_dir, previous, limits),
    }
}

/// Checks the artifact recorded in `previous` and rebuilds a damaged one
/// without the network where the kind keeps what it needs for that.
/// `Ok(None)`: it is intact, or none is recorded.
pub fn restore(
    source: &Source,
    state_dir: &Path,
    previous: &SourceStatus,
    limits: Limits,
) -> Result<Option<Restored>> {
    if source.is_bundle_only() {
        return report_damage(previous);
    }
    match source {
        Source::Git(git) => restore_artifact(git, state_dir, previous, limits),
        Source::Helm(_) | Source::Chart(_) | Source::Oci(_) => report_damage(previous),
        Source::Bucket(b) => bucket::restore_artifact(b, state_dir, previous, limits),
    }
}

/// For a kind whose sync rebuilds a damaged artifact (it checks the
/// recorded one before reusing it): the damage, to log, if any.
fn report_damage(previous: &SourceStatus) -> Result<Option<Restored>> {
    let Some(artifact) = sync::recorded_artifact(previous) else {
        return Ok(None);
    };
    match store::verify(&artifact) {
        Ok(()) => Ok(None),
        Err(damage) => Err(Error::ArtifactDamaged {
            path: artifact.path,
            damage,
        }),
    }
}

/// Where `source` fetches from, safe to log and store.
pub fn display_url(source: &Source) -> String {
    redact_url(source.settings().url())
}

/// A source's artifact: a `tar.gz` of its files at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Like Flux: `main@sha1:<40 hex>`, `v1.2.0@sha1:<40 hex>` or
    /// `sha1:<40 hex>` for a pinned commit.
    pub revision: String,
    /// sha256 of the `tar.gz`, lowercase hex.
    pub digest: String,
    pub path: PathBuf,
}

/// The limits that keep a hostile repository from filling memory or disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest single file put into an artifact.
    pub max_file_bytes: u64,
    /// The largest sum of file sizes of one artifact.
    pub max_total_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: 64 << 20,
            max_total_bytes: 1 << 30,
        }
    }
}

/// Errors of fetching a source and storing its artifact.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The per-source repository could not be created or opened.
    #[error("opening the local repository {path} of source {source_name}: {message}")]
    LocalRepository {
        source_name: String,
        path: PathBuf,
        message: String,
    },
    /// Talking to the remote failed (connect, authenticate, list refs,
    /// receive the pack).
    #[error("fetching {url} for source {source_name}: {message}")]
    Fetch {
        source_name: String,
        url: String,
        message: String,
    },
    /// Talking to a bucket failed (connect, authenticate, list, get).
    #[error("{action} bucket {bucket} at {url} for source {source_name}: {message}")]
    Bucket {
        source_name: String,
        action: &'static str,
        bucket: String,
        url: String,
        message: String,
    },
    /// A bucket holds an object whose key cannot be a path in the artifact.
    #[error("source {source_name}: bucket {bucket} holds object {key:?}, which {why}; refused")]
    UnsafeKey {
        source_name: String,
        bucket: String,
        key: String,
        why: &'static str,
    },
    /// A bucket (prefix) holds more objects than the source accepts.
    #[error("source {source_name}: bucket {bucket} holds more than {limit} objects (max_objects)")]
    TooManyObjects {
        source_name: String,
        bucket: String,
        limit: u64,
    },
    /// The remote has no ref matching the configured one.
    #[error("source {source_name}: {url} has no {what}")]
    RefNotFound {
        source_name: String,
        url: String,
        what: String,
    },
    /// A credential file could not be read.
    #[error("source {source_name}: reading {path}: {source}")]
    Credential {
        kind: SourceKind,
        source_name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The fetch took longer than the source's timeout.
    #[error("fetching {url} for source {source_name} timed out after {seconds}s")]
    Timeout {
        kind: SourceKind,
        source_name: String,
        url: String,
        seconds: u64,
    },
    /// The sync could not run: its task failed, or the previous one, timed
    /// out, still holds the source.
    #[error("fetching {url} for source {source_name}: {message}")]
    Stalled {
        kind: SourceKind,
        source_name: String,
        url: String,
        message: String,
    },
    /// A Helm repository or chart download failed: connect, TLS, HTTP
    /// status, a bad index, a digest mismatch.
    #[error("source {source_name}: {url}: {message}")]
    Helm {
        kind: SourceKind,
        source_name: String,
        url: String,
        message: String,
    },
    /// A registry request failed: connect, TLS, authentication, a missing
    /// manifest, a blob that is not what its manifest says.
    #[error("source {source_name}: {url}: {message}")]
    Registry {
        kind: SourceKind,
        source_name: String,
        url: String,
        message: String,
    },
    /// An OCI artifact is not one kedge can use: no layer of the selected
    /// media type, a layer that is not a tar.gz.
    #[error("source {source_name}: {url}: {message}")]
    OciArtifact {
        source_name: String,
        url: String,
        message: String,
    },
    /// An artifact's signature is missing or not made by the trusted key:
    /// nothing is stored or applied.
    #[error("source {source_name}: {url}: signature verification failed: {message}")]
    Verification {
        source_name: String,
        url: String,
        message: String,
    },
    /// A chart is not usable: no version in range, not a chart, a
    /// dependency not vendored.
    #[error("chart {source_name}: {message}")]
    Chart {
        source_name: String,
        message: String,
    },
    /// A bundle-only source (`url = "bundle:"`) no bundle has fed yet.
    #[error(
        "source {source_name}: no bundle carrying it has been imported yet (url = \"bundle:\")"
    )]
    NoBundle {
        kind: SourceKind,
        source_name: String,
    },
    /// The source a chart is made from has no artifact yet.
    #[error("chart {source_name}: {upstream} has no artifact yet")]
    UpstreamNotReady {
        source_name: String,
        upstream: String,
    },
    /// A commit or tag the source's `verify` asks for is not signed by a
    /// trusted key.
    #[error("source {source_name}: {object} failed signature verification: {refusal}")]
    Unverified {
        source_name: String,
        object: verify::SignedObject,
        refusal: Box<verify::Refusal>,
    },
    /// A trusted keys file of `verify` was read but cannot be used.
    #[error("source {source_name}: trusted keys {path}: {message}")]
    TrustedKeys {
        source_name: String,
        path: PathBuf,
        message: String,
    },
    /// The commit's tree could not be read.
    #[error("reading the tree of {revision} for source {source_name}: {message}")]
    ReadTree {
        source_name: String,
        revision: String,
        message: String,
    },
    /// A file is over [`Limits`].
    #[error("source {source_name}: {path} is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        source_name: String,
        path: String,
        size: u64,
        limit: u64,
    },
    /// An ignore pattern is invalid.
    #[error("source {source_name}: {source}")]
    Ignore {
        source_name: String,
        #[source]
        source: Box<ignore::PatternError>,
    },
    /// Writing, reading or unpacking an artifact on disk failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A stored artifact is missing, unreadable, or not the bytes its
    /// recorded sha256 names.
    #[error("artifact {path} {damage}")]
    ArtifactDamaged {
        path: PathBuf,
        damage: store::Damage,
    },
    /// A damaged artifact could not be rebuilt from the local repository.
    #[error("artifact {path} {damage}; rebuilding it from the local repository failed: {source}")]
    NotRestored {
        path: PathBuf,
        damage: store::Damage,
        #[source]
        source: Box<Error>,
    },
    /// An artifact holds an entry that would land outside the directory it
    /// is unpacked into.
    #[error("artifact {artifact}: entry {entry:?} {why}")]
    UnsafeEntry {
        artifact: PathBuf,
        entry: String,
        why: &'static str,
    },
}

impl Error {
    /// The Flux condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Timeout { kind, .. }
            | Error::Stalled { kind, .. }
            | Error::Helm { kind, .. }
            | Error::Registry { kind, .. } => kind.fetch_failed_reason(),
            Error::Verification { .. } => "VerificationError",
            Error::NoBundle { .. } => "NoBundleImported",
            Error::Chart { .. } => "ChartPackageFailed",
            Error::UpstreamNotReady { .. } => "DependencyNotReady",
            // Flux's reason when a source's secret cannot be used, of any kind.
            Error::Credential { .. } => "AuthenticationFailed",
            Error::Fetch { .. } | Error::RefNotFound { .. } => {
                SourceKind::Git.fetch_failed_reason()
            }
            Error::Bucket { .. } => SourceKind::Bucket.fetch_failed_reason(),
            Error::LocalRepository { .. } | Error::Io { .. } => "StorageOperationFailed",
            // Flux's reasons for a refused commit or tag.
            Error::Unverified {
                object: verify::SignedObject::Tag { .. },
                ..
            } => "InvalidTagSignature",
            Error::Unverified { .. } | Error::TrustedKeys { .. } => "InvalidCommitSignature",
            Error::ReadTree { .. }
            | Error::TooLarge { .. }
            | Error::Ignore { .. }
            | Error::UnsafeEntry { .. }
            | Error::OciArtifact { .. }
            | Error::UnsafeKey { .. }
            | Error::TooManyObjects { .. }
            | Error::ArtifactDamaged { .. }
            | Error::NotRestored { .. } => "ArtifactFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_error(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

/// The content of a secret file, without its trailing newline.
pub(crate) fn read_secret_file(kind: SourceKind, source_name: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
        .map_err(credential_error(kind, source_name, path))
}

/// The bytes of a credential file (a CA, a client certificate or key).
pub(crate) fn read_credential_file(
    kind: SourceKind,
    source_name: &str,
    path: &Path,
) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(credential_error(kind, source_name, path))
}

/// The error of a credential file of source `kind/source_name` that could
/// not be read or used.
pub(crate) fn credential_error(
    kind: SourceKind,
    source_name: &str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let (source_name, path) = (source_name.to_string(), path.to_path_buf());
    move |source| Error::Credential {
        kind,
        source_name,
        path,
        source,
    }
}

/// The URL with any userinfo password or token replaced, safe to log and
/// store. A lone user of an http(s) URL is a token as often as a name, so
/// it goes too; an ssh URL's user is the login name and stays.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = gix::url::parse(gix::bstr::BStr::new(url)) else {
        return url.to_string();
    };
    let http = matches!(
        parsed.scheme,
        gix::url::Scheme::Http | gix::url::Scheme::Https
    );
    if parsed.password().is_some() {
        parsed.set_password(Some("REDACTED".to_string()));
    } else if http && parsed.user().is_some() {
        parsed.set_user(Some("REDACTED".to_string()));
    } else {
        return url.to_string();
    }
    parsed.to_bstring().to_string()
}

/// HTTPS uses rustls with ring, the provider kube already brings: the
/// process-wide default must be set once before the first TLS connection.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another part of the process may have installed ring already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_secret_file_is_an_authentication_failure_of_any_kind() {
        let err = Error::Credential {
            kind: SourceKind::Helm,
            source_name: "bitnami".into(),
            path: PathBuf::from("/etc/kedge/secrets/charts"),
            source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
        };
        assert_eq!(err.reason(), "AuthenticationFailed");
    }

    #[test]
    fn redact_url_hides_a_password_and_keeps_the_rest() {
        assert_eq!(
            redact_url("https://bob:hunter2@git.example.org/ops/fleet.git"),
            "https://bob:REDACTED@git.example.org/ops/fleet.git"
        );
        assert_eq!(
            redact_url("ssh://git@git.example.org/ops/fleet.git"),
            "ssh://git@git.example.org/ops/fleet.git"
        );
        assert_eq!(
            redact_url("https://ghp_SECRET@git.example.org/x.git"),
            "https://REDACTED@git.example.org/x.git"
        );
    }
}
