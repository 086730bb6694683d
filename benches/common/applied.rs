//! Waiting for kustomizations of a `kedge run` to be Ready at a commit,
//! read from its state database as `kedge status` reads it.

use std::path::Path;
use std::time::{Duration, Instant};

use kedge::state::Store;

/// Polls every 5 ms until every kustomization in `names` is Ready at
/// `main@sha1:<commit>`; panics after `bound`, pointing at `log`.
pub fn wait_applied(state_dir: &Path, names: &[&str], commit: &str, bound: Duration, log: &Path) {
    let revision = format!("main@sha1:{commit}");
    let deadline = Instant::now() + bound;
    loop {
        let done = Store::open_read_only(&state_dir.join("kedge.db"))
            .ok()
            .is_some_and(|store| {
                names.iter().all(|name| {
                    store
                        .kustomization_status(name)
                        .ok()
                        .flatten()
                        .is_some_and(|s| {
                            s.ready && s.last_applied_revision.as_deref() == Some(revision.as_str())
                        })
                })
            });
        if done {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{names:?} not applied at {commit} within {bound:?}; see {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
