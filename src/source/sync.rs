//! One sync of a Git source: fetch, and build its artifact when the commit
//! (or what the artifact is built from) changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::ignore::IgnoreRules;
use super::store::ArtifactStore;
use super::tree::{self, ReadContext};
use super::{archive, git, Artifact, Error, Limits, Result};
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
    let mut hasher = Sha256::new();
    for pattern in &source.ignore {
        hasher.update(pattern.as_bytes());
        hasher.update([0]);
    }
    hasher.update(limits.max_file_bytes.to_le_bytes());
    hasher.update(limits.max_total_bytes.to_le_bytes());
    hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Fetches `source` and returns its current artifact, building a new one
/// only when the revision or the build inputs differ from `previous`.
pub fn sync_git_source(
    source: &GitSource,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    limits: Limits,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    let repo_dir = repository_dir(state_dir, &source.name);
    let fetched = git::fetch(source, &repo_dir, interrupt)?;
    let inputs = build_inputs(source, limits);
    if let Some(artifact) = previous.and_then(|p| unchanged_artifact(p, &fetched.revision, &inputs))
    {
        return Ok(SyncOutcome::Unchanged { artifact, inputs });
    }
    let repo = git::open_or_init(source, &repo_dir)?;
    let store = ArtifactStore::new(state_dir);
    let artifact = build_artifact(&repo, source, &fetched, &store, limits)?;
    Ok(SyncOutcome::NewArtifact { artifact, inputs })
}

fn unchanged_artifact(previous: &SourceStatus, revision: &str, inputs: &str) -> Option<Artifact> {
    if previous.revision.as_deref() != Some(revision)
        || previous.artifact_inputs.as_deref() != Some(inputs)
    {
        return None;
    }
    let path = previous.artifact_path.clone()?;
    let digest = previous.artifact_digest.clone()?;
    path.is_file().then(|| Artifact {
        revision: revision.to_string(),
        digest,
        path,
    })
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
    let temp = store.temp_path("git", &source.name)?;
    let digest = match archive::write_artifact(repo, &files, &temp, limits, &context) {
        Ok(digest) => digest,
        Err(err) => {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
    };
    let path = store.commit("git", &source.name, &temp, &digest)?;
    Ok(Artifact {
        revision: fetched.revision.clone(),
        digest,
        path,
    })
}
