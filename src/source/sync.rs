//! One sync of a Git source: fetch, and build its artifact when the commit
//! (or what the artifact is built from) changed or the stored one is
//! damaged; and the rebuild of a damaged artifact without the network.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::ignore::IgnoreRules;
use super::store::{self, hex, ArtifactStore, Damage};
use super::tree::{self, ReadContext};
use super::{archive, git, verify, Artifact, Error, Limits, Result};
use crate::config::GitSource;
use crate::state::SourceStatus;

/// What a sync produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new revision (or new build inputs): a new current artifact.
    NewArtifact { artifact: Artifact, inputs: String },
    /// Same revision and inputs as the previous artifact, which stays.
    Unchanged { artifact: Artifact, inputs: String },
}

impl SyncOutcome {
    pub fn artifact(&self) -> &Artifact {
        match self {
            SyncOutcome::NewArtifact { artifact, .. } | SyncOutcome::Unchanged { artifact, .. } => {
                artifact
            }
        }
    }

    /// The state row this outcome leaves for source `kind/name`, as the
    /// next sync reads it (for callers that sync without the scheduler).
    pub fn as_status(&self, kind: &str, name: &str) -> SourceStatus {
        let artifact = self.artifact();
        SourceStatus {
            kind: kind.to_string(),
            name: name.to_string(),
            url: String::new(),
            revision: Some(artifact.revision.clone()),
            artifact_digest: Some(artifact.digest.clone()),
            artifact_path: Some(artifact.path.clone()),
            artifact_inputs: Some(self.inputs().to_string()),
            last_attempt_at: None,
            last_success_at: None,
            last_artifact_at: None,
            ready: true,
            reason: String::new(),
            message: String::new(),
            consecutive_failures: 0,
        }
    }

    pub fn inputs(&self) -> &str {
        match self {
            SyncOutcome::NewArtifact { inputs, .. } | SyncOutcome::Unchanged { inputs, .. } => {
                inputs
            }
        }
    }
}

/// The bare repository of a Git source.
pub fn repository_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("sources").join("git").join(name)
}

/// A fingerprint of what an artifact is built from besides the commit, so
/// that changing `ignore` rebuilds it.
fn build_inputs(source: &GitSource, limits: Limits) -> String {
    ignore_and_limits_fingerprint(&source.ignore, limits)
}

/// A short digest of ignore patterns and limits: a change of either must
/// build a new artifact from the same revision.
pub(super) fn ignore_and_limits_fingerprint(ignore: &[String], limits: Limits) -> String {
    let mut hasher = Sha256::new();
    for pattern in ignore {
        hasher.update(pattern.as_bytes());
        hasher.update([0]);
    }
    hasher.update(limits.max_file_bytes.to_le_bytes());
    hasher.update(limits.max_total_bytes.to_le_bytes());
    hex(&hasher.finalize()[..8])
}

/// Fetches `source`, verifies the signatures its `verify` asks for, and
/// returns its current artifact, building a new one only when the revision
/// or the build inputs differ from `previous`. A refused commit or tag is
/// an error: no artifact of it, the previous one stays current.
pub fn sync_git_source(
    source: &GitSource,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    limits: Limits,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    let repo_dir = repository_dir(state_dir, &source.name);
    let fetched = git::fetch(source, &repo_dir, interrupt)?;
    let repo = git::open_or_init(source, &repo_dir)?;
    if let Some(verify) = &source.verify {
        verify::verify_fetched(&repo, source, verify, &fetched)?;
    }
    let inputs = build_inputs(source, limits);
    if let Some(artifact) = previous.and_then(|p| unchanged_artifact(p, &fetched.revision, &inputs))
    {
        return Ok(SyncOutcome::Unchanged { artifact, inputs });
    }
    let store = ArtifactStore::new(state_dir);
    let artifact = build_artifact(&repo, source, &fetched, &store, limits)?;
    Ok(SyncOutcome::NewArtifact { artifact, inputs })
}

/// The previous artifact, if it is of `revision` and `inputs` and intact.
pub(super) fn unchanged_artifact(
    previous: &SourceStatus,
    revision: &str,
    inputs: &str,
) -> Option<Artifact> {
    if previous.revision.as_deref() != Some(revision)
        || previous.artifact_inputs.as_deref() != Some(inputs)
    {
        return None;
    }
    recorded_artifact(previous).filter(|artifact| store::verify(artifact).is_ok())
}

/// The artifact recorded in `status`, if any.
pub(crate) fn recorded_artifact(status: &SourceStatus) -> Option<Artifact> {
    Some(Artifact {
        revision: status.revision.clone()?,
        digest: status.artifact_digest.clone()?,
        path: status.artifact_path.clone()?,
    })
}

/// A damaged artifact that [`restore_artifact`] rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restored {
    pub artifact: Artifact,
    /// What was wrong with it.
    pub damage: Damage,
}

/// Checks the artifact recorded in `previous` and, when it is damaged,
/// rebuilds it byte for byte from the commit in the local repository,
/// without the network. `Ok(None)`: it is intact, or none is recorded.
pub fn restore_artifact(
    source: &GitSource,
    state_dir: &Path,
    previous: &SourceStatus,
    limits: Limits,
) -> Result<Option<Restored>> {
    restore_with(previous, &source.name, |artifact| {
        rebuild(source, state_dir, previous, artifact, limits)
    })
}

/// Checks the artifact recorded in `previous` and, when it is damaged,
/// rebuilds it with `rebuild`, which must give the same bytes (a valid
/// artifact with another digest leaves the record to the next fetch).
/// `Ok(None)`: it is intact, or none is recorded.
pub(super) fn restore_with(
    previous: &SourceStatus,
    source_name: &str,
    rebuild: impl FnOnce(&Artifact) -> Result<Artifact>,
) -> Result<Option<Restored>> {
    let Some(artifact) = recorded_artifact(previous) else {
        return Ok(None);
    };
    let Err(damage) = store::verify(&artifact) else {
        return Ok(None);
    };
    let rebuilt = rebuild(&artifact).and_then(|rebuilt| {
        if rebuilt.digest == artifact.digest {
            return Ok(());
        }
        Err(Error::ReadTree {
            source_name: source_name.to_string(),
            revision: artifact.revision.clone(),
            message: format!(
                "rebuilt, it has sha256 {}, not the recorded {}",
                rebuilt.digest, artifact.digest
            ),
        })
    });
    match rebuilt {
        Ok(()) => Ok(Some(Restored { artifact, damage })),
        Err(err) => Err(Error::NotRestored {
            path: artifact.path,
            damage,
            source: Box::new(err),
        }),
    }
}

/// Builds `artifact` again from its commit in the local repository (same
/// commit, same build inputs: the same digest).
fn rebuild(
    source: &GitSource,
    state_dir: &Path,
    previous: &SourceStatus,
    artifact: &Artifact,
    limits: Limits,
) -> Result<Artifact> {
    let cannot = |message: String| Error::ReadTree {
        source_name: source.name.clone(),
        revision: artifact.revision.clone(),
        message,
    };
    if previous.artifact_inputs.as_deref() != Some(build_inputs(source, limits).as_str()) {
        return Err(cannot(
            "its ignore rules changed since the artifact was built".to_string(),
        ));
    }
    let commit = artifact
        .revision
        .rsplit_once("sha1:")
        .and_then(|(_, hex)| gix::ObjectId::from_hex(hex.as_bytes()).ok())
        .ok_or_else(|| cannot("the revision names no commit".to_string()))?;
    let repo_dir = repository_dir(state_dir, &source.name);
    if !repo_dir.join("HEAD").is_file() {
        return Err(Error::LocalRepository {
            source_name: source.name.clone(),
            path: repo_dir,
            message: "it does not exist".to_string(),
        });
    }
    let repo = git::open_or_init(source, &repo_dir)?;
    let fetched = git::FetchedCommit {
        commit,
        revision: artifact.revision.clone(),
        tag: None,
    };
    build_artifact(
        &repo,
        source,
        &fetched,
        &ArtifactStore::new(state_dir),
        limits,
    )
}

fn build_artifact(
    repo: &gix::Repository,
    source: &GitSource,
    fetched: &git::FetchedCommit,
    store: &ArtifactStore,
    limits: Limits,
) -> Result<Artifact> {
    let context = ReadContext {
        source_name: &source.name,
        revision: &fetched.revision,
    };
    let files = tree::list_files(repo, fetched.commit, &context)?;
    let sourceignores = tree::sourceignores(repo, &files, &context)?;
    let rules = IgnoreRules::new(&sourceignores, &source.ignore).map_err(|err| Error::Ignore {
        source_name: source.name.clone(),
        source: Box::new(err),
    })?;
    let files = tree::select(files, &rules);
    let (digest, path) = store.build("git", &source.name, limits, |writer| {
        archive::append_tree_files(repo, &files, writer, &context)
    })?;
    Ok(Artifact {
        revision: fetched.revision.clone(),
        digest,
        path,
    })
}
