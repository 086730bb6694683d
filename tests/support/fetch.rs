//! A source fetched and recorded as `kedge run` does, without the daemon:
//! the "connected machine" of the bundle tests and bench.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use kedge::config::{Config, SourceRef};
use kedge::source::{self, Artifact, Limits, SyncOutcome};
use kedge::state::{SourceOutcome, Store};

/// Syncs `source` of the config at `config` and records the outcome in
/// its state, so `kedge bundle create` finds the artifact.
pub fn fetch_and_record(config: &Path, source: &SourceRef) -> Artifact {
    let config = Config::load(config).expect("config");
    let configured = config.source(source).expect("configured source");
    let (kind, name) = (source.kind.as_str(), source.name.as_str());
    let store = Store::open(&config.database_path()).expect("state");
    let previous = store.source_status(kind, name).expect("status");
    let outcome = source::sync(
        configured,
        &config.agent.state_dir,
        previous.as_ref(),
        None,
        None,
        Limits::default(),
        &AtomicBool::new(false),
    )
    .expect("fetch");
    let artifact = outcome.artifact().clone();
    store
        .record_source_outcome(
            kind,
            name,
            &source::display_url(configured),
            kedge::state::now_millis(),
            SourceOutcome::Ready {
                revision: &artifact.revision,
                digest: &artifact.digest,
                path: &artifact.path,
                inputs: outcome.inputs(),
                new_artifact: matches!(outcome, SyncOutcome::NewArtifact { .. }),
            },
        )
        .expect("record the fetch");
    artifact
}
