//! `kedge run` with damage in its state directory: a file deleted from an
//! unpacked tree, an artifact overwritten with random bytes (with and
//! without its unpacked tree), and a damaged artifact that can only be
//! refetched. Nothing is pruned because of the damage, and it is repaired.

use std::path::{Path, PathBuf};
use std::process::Command;

use kedge::state::Store;
use sha2::{Digest, Sha256};

use crate::kustomization_run::{configmap, kustomization, value_of, Setup};
use crate::support::{cluster, TestNamespace};

/// The recorded artifact (path, sha256) of source git/fleet.
fn recorded_artifact(setup: &Setup) -> (PathBuf, String) {
    let store = Store::open_read_only(&setup.state_dir.join("kedge.db")).expect("open state");
    let status = store
        .source_status("git", "fleet")
        .expect("read source status")
        .expect("git/fleet recorded");
    (
        status.artifact_path.expect("an artifact path"),
        status.artifact_digest.expect("an artifact digest"),
    )
}

fn sha256_of(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(kedge::source::store::hex(&Sha256::digest(&bytes)))
}

/// Overwrites `path` with as many random bytes as it holds.
fn overwrite_with_random_bytes(path: &Path) {
    let len = std::fs::metadata(path).expect("artifact metadata").len() as usize;
    let noise: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(len.max(64))
        .collect();
    std::fs::write(path, noise).expect("overwrite artifact");
}

fn inventory(setup: &Setup, name: &str) -> Vec<String> {
    Store::open_read_only(&setup.state_dir.join("kedge.db"))
        .expect("open state")
        .inventory(name)
        .expect("inventory")
}

fn source_events(setup: &Setup) -> Vec<kedge::state::Event> {
    Store::open_read_only(&setup.state_dir.join("kedge.db"))
        .expect("open state")
        .events("git", "fleet", 50)
        .expect("events")
}

fn reconcile(setup: &Setup, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("reconcile")
        .args(args)
        .arg("--config")
        .arg(&setup.config)
        .output()
        .expect("run kedge reconcile");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn now_millis() -> i64 {
    kedge::state::now_millis()
}

/// Two ConfigMaps a and b under ./apps, applied.
fn applied_a_and_b(setup: &Setup) -> String {
    setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "1")),
            ("apps/b.yaml", &configmap("b", "1")),
        ],
        "a and b",
    )
}

#[tokio::test]
async fn a_file_deleted_from_an_unpacked_tree_does_not_prune_its_object() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "dmg-tree").await;
    let setup = Setup::new(&kustomization("damage-apps-1", "./apps", &ns.name, ""));
    let commit = applied_a_and_b(&setup);
    let _daemon = setup.start();
    setup.wait_applied("damage-apps-1", &commit);
    let (_, digest) = recorded_artifact(&setup);
    let unpacked_b = setup
        .state_dir
        .join("unpacked")
        .join(&digest)
        .join("apps/b.yaml");
    assert!(unpacked_b.is_file(), "{} unpacked", unpacked_b.display());

    std::fs::remove_file(&unpacked_b).expect("delete b from the unpacked tree");
    let requested = now_millis();
    let reply = reconcile(&setup, &["kustomization", "damage-apps-1"]);
    let status = setup.wait_for("damage-apps-1", "a reconcile after the request", |s| {
        s.last_attempt_at.is_some_and(|at| at >= requested)
    });
    assert!(status.ready, "{reply}\n{status:#?}");
    assert_eq!(
        value_of(&client, &ns.name, "b").await.as_deref(),
        Some("1"),
        "b is still declared in Git and must not be pruned: {status:#?}"
    );
    assert_eq!(inventory(&setup, "damage-apps-1").len(), 2);
    assert!(unpacked_b.is_file(), "the tree was unpacked again");
}

#[tokio::test]
async fn an_artifact_overwritten_while_its_tree_exists_is_rebuilt_and_applied() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "dmg-art").await;
    let setup = Setup::new(&kustomization("damage-apps-2", "./apps", &ns.name, ""));
    let first = applied_a_and_b(&setup);
    let _daemon = setup.start();
    setup.wait_applied("damage-apps-2", &first);
    let (artifact, digest) = recorded_artifact(&setup);

    overwrite_with_random_bytes(&artifact);
    // The source syncs every second: it notices and rebuilds the artifact.
    setup.wait_for("damage-apps-2", "the artifact rebuilt", |_| {
        sha256_of(&artifact).as_deref() == Some(digest.as_str())
    });
    // The event is recorded once the sync that rebuilt it returns.
    setup.wait_for("damage-apps-2", "an ArtifactRestored event", |_| {
        source_events(&setup)
            .iter()
            .any(|e| e.reason == "ArtifactRestored")
    });
    let events = source_events(&setup);
    let restored = events
        .iter()
        .find(|e| e.reason == "ArtifactRestored")
        .unwrap_or_else(|| panic!("an ArtifactRestored event: {events:#?}"));
    assert!(
        restored.message.contains(&artifact.display().to_string()),
        "{}",
        restored.message
    );

    // And the source goes on normally: the next commit is applied.
    let second = setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "2"))], "a is 2");
    setup.wait_applied("damage-apps-2", &second);
    assert_eq!(value_of(&client, &ns.name, "a").await.as_deref(), Some("2"));
    assert_eq!(value_of(&client, &ns.name, "b").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_damaged_artifact_without_its_tree_is_rebuilt_offline_after_a_restart() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "dmg-offline").await;
    let setup = Setup::new(&kustomization("damage-apps-3", "./apps", &ns.name, ""));
    let commit = applied_a_and_b(&setup);
    {
        let mut daemon = setup.start();
        setup.wait_applied("damage-apps-3", &commit);
        daemon.0.kill().expect("kill -9");
        daemon.0.wait().expect("wait");
    }
    let (artifact, digest) = recorded_artifact(&setup);
    // The remote is gone: only the local repository can rebuild it.
    let away = setup.repo.bare.with_extension("unreachable");
    std::fs::rename(&setup.repo.bare, &away).expect("make the remote unreachable");
    overwrite_with_random_bytes(&artifact);
    std::fs::remove_dir_all(setup.state_dir.join("unpacked").join(&digest))
        .expect("remove the unpacked tree");

    let restarted = now_millis();
    let _daemon = setup.start();
    let status = setup.wait_for(
        "damage-apps-3",
        "a successful reconcile after the restart",
        |s| s.ready && s.last_attempt_at.is_some_and(|at| at >= restarted),
    );
    assert_eq!(
        status.last_applied_revision,
        Some(format!("main@sha1:{commit}"))
    );
    assert_eq!(sha256_of(&artifact), Some(digest), "rebuilt byte for byte");
    assert_eq!(value_of(&client, &ns.name, "a").await.as_deref(), Some("1"));
    assert_eq!(value_of(&client, &ns.name, "b").await.as_deref(), Some("1"));
    assert_eq!(inventory(&setup, "damage-apps-3").len(), 2);
    assert!(!setup.repo.bare.exists(), "the remote stayed unreachable");
}

#[tokio::test]
async fn a_damaged_artifact_that_only_a_fetch_can_rebuild_fails_by_name_then_recovers() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "dmg-refetch").await;
    let setup = Setup::new(&kustomization("damage-apps-4", "./apps", &ns.name, ""));
    let commit = applied_a_and_b(&setup);
    {
        let mut daemon = setup.start();
        setup.wait_applied("damage-apps-4", &commit);
        daemon.0.kill().expect("kill -9");
        daemon.0.wait().expect("wait");
    }
    let (artifact, digest) = recorded_artifact(&setup);
    let away = setup.repo.bare.with_extension("unreachable");
    std::fs::rename(&setup.repo.bare, &away).expect("make the remote unreachable");
    std::fs::remove_dir_all(setup.state_dir.join("sources/git/fleet"))
        .expect("remove the local repository");
    overwrite_with_random_bytes(&artifact);
    std::fs::remove_dir_all(setup.state_dir.join("unpacked").join(&digest))
        .expect("remove the unpacked tree");

    let restarted = now_millis();
    let _daemon = setup.start();
    let failed = setup.wait_for("damage-apps-4", "ArtifactFailed after the restart", |s| {
        !s.ready && s.last_attempt_at.is_some_and(|at| at >= restarted)
    });
    assert_eq!(failed.reason, "ArtifactFailed", "{failed:#?}");
    assert!(
        failed.message.contains(&artifact.display().to_string())
            && failed.message.contains("sha256")
            && !failed.message.contains("gzip"),
        "names the artifact and what is wrong: {}",
        failed.message
    );
    setup.wait_for("damage-apps-4", "the source no longer Ready", |_| {
        Store::open_read_only(&setup.state_dir.join("kedge.db"))
            .ok()
            .and_then(|store| store.source_status("git", "fleet").ok().flatten())
            .is_some_and(|s| !s.ready && s.reason == "ArtifactFailed")
    });
    assert_eq!(
        value_of(&client, &ns.name, "b").await.as_deref(),
        Some("1"),
        "nothing pruned while the artifact is damaged"
    );
    assert_eq!(inventory(&setup, "damage-apps-4").len(), 2);

    // The remote is back: the next fetch rebuilds the artifact.
    let recovered = now_millis();
    std::fs::rename(&away, &setup.repo.bare).expect("the remote is back");
    reconcile(&setup, &["source", "git/fleet"]);
    setup.wait_for("damage-apps-4", "recovered once the remote is back", |s| {
        s.ready && s.last_attempt_at.is_some_and(|at| at >= recovered)
    });
    assert_eq!(sha256_of(&artifact), Some(digest));
    assert_eq!(value_of(&client, &ns.name, "b").await.as_deref(), Some("1"));
}
