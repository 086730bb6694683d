//! The scheduler over a real `file://` repository: the first sync, a
//! trigger that syncs at once whatever the interval, the broadcast of new
//! artifacts, and a clean shutdown.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kedge::config::{Config, SourceKind, SourceRef};
use kedge::reconcile::{scheduler, SourceUpdate, Trigger};
use kedge::source::Limits;
use kedge::state::Store;

use crate::support::git::FixtureRepo;

async fn next_update(updates: &mut tokio::sync::broadcast::Receiver<SourceUpdate>) -> SourceUpdate {
    tokio::time::timeout(Duration::from_secs(30), updates.recv())
        .await
        .expect("an update within 30s")
        .expect("the scheduler is running")
}

#[tokio::test]
async fn a_trigger_syncs_at_once_and_new_artifacts_are_broadcast() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let first = repo.commit(&[("a.yaml", "1\n")], "one");
    let state_dir = root.path().join("state");
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"1h\"\n",
        state_dir.display().to_string(),
        repo.bare.display()
    );
    let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
    let store = Arc::new(Mutex::new(Store::open_in_memory().expect("store")));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = scheduler(&config, store.clone(), Limits::default(), shutdown);
    let mut updates = running.subscribe();
    let fleet = SourceRef {
        kind: SourceKind::Git,
        name: "fleet".into(),
    };

    let update = next_update(&mut updates).await;
    assert_eq!(update.source, fleet);
    assert_eq!(update.artifact.revision, format!("main@sha1:{first}"));

    let second = repo.commit(&[("a.yaml", "2\n")], "two");
    running
        .triggers()
        .send(Trigger::Source(fleet.clone()))
        .await
        .expect("send trigger");
    let update = next_update(&mut updates).await;
    assert_eq!(update.artifact.revision, format!("main@sha1:{second}"));
    let status = store
        .lock()
        .expect("store lock")
        .source_status("git", "fleet")
        .expect("status")
        .expect("recorded");
    assert!(status.ready);
    assert_eq!(
        status.revision.as_deref(),
        Some(update.artifact.revision.as_str())
    );

    stop.send(true).expect("signal shutdown");
    tokio::time::timeout(Duration::from_secs(15), running.join())
        .await
        .expect("every task stops after shutdown");
}

#[tokio::test]
async fn a_remote_that_never_answers_is_recorded_as_a_timeout() {
    let root = tempfile::tempdir().expect("tempdir");
    // Accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let text = format!(
        "[agent]\nstate_dir = {:?}\n[git.mute]\nurl = \"git://127.0.0.1:{port}/mute.git\"\ninterval = \"1h\"\ntimeout = \"1s\"\n",
        root.path().display().to_string()
    );
    let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
    let store = Arc::new(Mutex::new(Store::open_in_memory().expect("store")));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = scheduler(&config, store.clone(), Limits::default(), shutdown);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        let status = store
            .lock()
            .expect("lock")
            .source_status("git", "mute")
            .expect("status");
        if let Some(status) = status {
            break status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no outcome recorded within 20s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    assert!(!status.ready);
    assert_eq!(status.reason, "GitOperationFailed");
    assert!(
        status.message.contains("timed out after 1s"),
        "{}",
        status.message
    );
    assert_eq!(status.consecutive_failures, 1);
    stop.send(true).expect("signal shutdown");
    tokio::time::timeout(Duration::from_secs(15), running.join())
        .await
        .expect("every task stops after shutdown");
    drop(silent);
}
