//! Fetching Git sources into artifacts over `file://`, a local path and
//! `git daemon`: refs, change detection, ignore rules, hostile trees.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use kedge::config::{Config, GitSource};
use kedge::source::{self, Limits, SyncOutcome};
use kedge::state::{SourceOutcome, SourceStatus, Store};
use sha2::Digest;

use crate::support::git::{git_daemon, FixtureRepo};

/// A source named `fleet` from a TOML body, through the real config parser.
pub fn source_from(url: &str, body: &str) -> GitSource {
    let text = format!("[git.fleet]\nurl = {url:?}\n{body}\n");
    match Config::parse(Path::new("test.toml"), &text) {
        Ok(config) => match config.git("fleet") {
            Some(source) => source.clone(),
            None => panic!("no git/fleet in {text}"),
        },
        Err(err) => panic!("test config must be valid: {err}\n{text}"),
    }
}

/// Syncs a source again and again into one state directory, remembering
/// the outcome like the scheduler does.
pub struct Syncer {
    pub state_dir: tempfile::TempDir,
    pub store: Store,
    pub limits: Limits,
}

impl Syncer {
    pub fn new() -> Syncer {
        Syncer {
            state_dir: tempfile::tempdir().expect("tempdir"),
            store: Store::open_in_memory().expect("in-memory store"),
            limits: Limits::default(),
        }
    }

    pub fn previous(&self, source: &GitSource) -> Option<SourceStatus> {
        self.store
            .source_status("git", &source.name)
            .expect("read status")
    }

    pub fn sync(&self, source: &GitSource) -> Result<SyncOutcome, source::Error> {
        let previous = self.previous(source);
        let result = source::sync_git_source(
            source,
            self.state_dir.path(),
            previous.as_ref(),
            self.limits,
            &AtomicBool::new(false),
        );
        let outcome = match &result {
            Ok(outcome) => SourceOutcome::Ready {
                revision: &outcome.artifact().revision,
                digest: &outcome.artifact().digest,
                path: &outcome.artifact().path,
                inputs: outcome.inputs(),
                new_artifact: matches!(outcome, SyncOutcome::NewArtifact { .. }),
            },
            Err(err) => SourceOutcome::Failed {
                reason: err.reason(),
                message: "failed",
            },
        };
        self.store
            .record_source_outcome("git", &source.name, &source.url, 0, outcome)
            .expect("record outcome");
        result
    }
}

/// Unpacks an artifact and returns the sorted relative paths of its files
/// and symlinks, with the unpack directory.
pub fn unpack(artifact: &Path) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    source::extract(artifact, dir.path()).expect("extract artifact");
    let mut paths = Vec::new();
    collect(dir.path(), dir.path(), &mut paths);
    paths.sort();
    (dir, paths)
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.is_dir() {
            collect(root, &path, out);
        } else {
            out.push(
                path.strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

fn new_artifact(outcome: SyncOutcome) -> source::Artifact {
    match outcome {
        SyncOutcome::NewArtifact { artifact, .. } => artifact,
        other => panic!("expected a new artifact, got {other:?}"),
    }
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).expect("read artifact");
    kedge::source::store::hex(&sha2::Sha256::digest(&bytes))
}

fn fixture() -> (tempfile::TempDir, FixtureRepo) {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    (root, repo)
}

fn file_url(repo: &FixtureRepo) -> String {
    format!("file://{}", repo.bare.display())
}

#[test]
fn a_branch_over_file_url_becomes_a_tar_gz_named_by_its_sha256_with_a_branch_revision() {
    let (_root, repo) = fixture();
    let head = repo.commit(
        &[
            ("apps/web.yaml", "kind: ConfigMap\n"),
            (".github/workflows/ci.yml", "on: push\n"),
            ("logo.png", "png"),
        ],
        "first",
    );
    let syncer = Syncer::new();
    let source = source_from(&file_url(&repo), "ref = { branch = \"main\" }");

    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    assert_eq!(artifact.revision, format!("main@sha1:{head}"));
    assert_eq!(sha256_hex(&artifact.path), artifact.digest);
    assert_eq!(
        artifact.path.file_name().and_then(|n| n.to_str()),
        Some(format!("{}.tar.gz", artifact.digest).as_str())
    );
    assert!(artifact
        .path
        .starts_with(syncer.state_dir.path().join("artifacts/git/fleet")));
    let (dir, files) = unpack(&artifact.path);
    assert_eq!(
        files,
        ["apps/web.yaml"],
        "Flux's default excludes drop CI files and images"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("apps/web.yaml")).expect("read"),
        "kind: ConfigMap\n"
    );
}

#[test]
fn a_sync_of_an_unchanged_commit_rebuilds_a_damaged_artifact() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let syncer = Syncer::new();
    let source = source_from(&file_url(&repo), "");
    let first = new_artifact(syncer.sync(&source).expect("first sync"));

    std::fs::write(&first.path, b"not a tar.gz at all").expect("damage the artifact");
    let again = syncer.sync(&source).expect("second sync");

    assert_eq!(again.artifact().digest, first.digest);
    assert_eq!(
        sha256_hex(&first.path),
        first.digest,
        "rebuilt byte for byte"
    );
    std::fs::remove_file(&first.path).expect("lose the artifact");
    syncer.sync(&source).expect("third sync");
    assert_eq!(sha256_hex(&first.path), first.digest, "a missing one too");
}

#[test]
fn a_damaged_artifact_is_restored_from_the_local_repository_without_the_remote() {
    let (root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n"), ("b/c.yaml", "c: 1\n")], "one");
    let syncer = Syncer::new();
    let source = source_from(&file_url(&repo), "");
    let first = new_artifact(syncer.sync(&source).expect("first sync"));
    let previous = syncer.previous(&source).expect("recorded");
    let intact =
        source::restore_artifact(&source, syncer.state_dir.path(), &previous, syncer.limits)
            .expect("check an intact artifact");
    assert!(intact.is_none(), "{intact:?}");

    std::fs::rename(&repo.bare, root.path().join("gone.git")).expect("remote unreachable");
    std::fs::write(&first.path, vec![7u8; 300]).expect("damage the artifact");
    let restored =
        source::restore_artifact(&source, syncer.state_dir.path(), &previous, syncer.limits)
            .expect("restore from the local repository")
            .expect("a damaged artifact is restored");

    assert_eq!(restored.artifact, first);
    assert!(
        restored.damage.to_string().contains("sha256"),
        "says what was wrong: {}",
        restored.damage
    );
    assert_eq!(
        sha256_hex(&first.path),
        first.digest,
        "rebuilt byte for byte"
    );
}

#[test]
fn an_artifact_that_cannot_be_restored_says_which_and_why() {
    let (root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let syncer = Syncer::new();
    let source = source_from(&file_url(&repo), "");
    let first = new_artifact(syncer.sync(&source).expect("first sync"));
    let previous = syncer.previous(&source).expect("recorded");

    std::fs::rename(&repo.bare, root.path().join("gone.git")).expect("remote unreachable");
    std::fs::remove_dir_all(source::sync::repository_dir(
        syncer.state_dir.path(),
        "fleet",
    ))
    .expect("lose the local repository");
    std::fs::remove_file(&first.path).expect("lose the artifact");
    let err = source::restore_artifact(&source, syncer.state_dir.path(), &previous, syncer.limits)
        .expect_err("nothing to restore from");

    assert_eq!(err.reason(), "ArtifactFailed");
    let message = err.to_string();
    assert!(
        message.contains(&first.path.display().to_string()) && message.contains("missing"),
        "{message}"
    );
}

#[test]
fn a_local_path_url_works_like_file_url_and_the_fetch_is_shallow() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let head = repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let syncer = Syncer::new();
    let source = source_from(repo.bare.to_str().expect("utf-8"), "");

    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    assert_eq!(artifact.revision, format!("main@sha1:{head}"));
    let local = source::sync::repository_dir(syncer.state_dir.path(), "fleet");
    assert!(
        local.join("shallow").is_file(),
        "a branch is fetched with depth 1"
    );
}

#[test]
fn an_unchanged_commit_gives_no_new_artifact_and_a_new_commit_does() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let syncer = Syncer::new();
    let source = source_from(&file_url(&repo), "");

    let first = new_artifact(syncer.sync(&source).expect("first sync"));
    let again = syncer.sync(&source).expect("second sync");
    assert!(
        matches!(&again, SyncOutcome::Unchanged { artifact, .. } if *artifact == first),
        "{again:?}"
    );

    let head = repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let second = new_artifact(syncer.sync(&source).expect("third sync"));
    assert_eq!(second.revision, format!("main@sha1:{head}"));
    assert_ne!(second.digest, first.digest);
    assert!(first.path.is_file(), "the previous artifact is kept");
}

#[test]
fn the_same_commit_gives_byte_identical_artifacts_in_different_state_dirs() {
    let (_root, repo) = fixture();
    repo.commit(
        &[
            ("a.yaml", "a: 1\n"),
            ("b/c.yaml", "c: 1\n"),
            ("run.sh", "#!/bin/sh\n"),
        ],
        "one",
    );
    crate::support::git::git(&repo.work, &["update-index", "--chmod=+x", "run.sh"]);
    repo.commit_all("executable");
    let source = source_from(&file_url(&repo), "");

    let (first, second) = (Syncer::new(), Syncer::new());
    let one = new_artifact(first.sync(&source).expect("sync one"));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let two = new_artifact(second.sync(&source).expect("sync two"));

    assert_eq!(one.digest, two.digest);
}

#[test]
fn a_tag_ref_names_the_tag_in_the_revision() {
    let (_root, repo) = fixture();
    let tagged = repo.commit(&[("a.yaml", "v: 1\n")], "one");
    repo.tag("v1.2.0");
    repo.commit(&[("a.yaml", "v: 2\n")], "two");
    let source = source_from(&file_url(&repo), "ref = { tag = \"v1.2.0\" }");

    let syncer = Syncer::new();
    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    assert_eq!(artifact.revision, format!("v1.2.0@sha1:{tagged}"));
}

#[test]
fn a_semver_ref_picks_the_highest_tag_in_range() {
    let (_root, repo) = fixture();
    repo.commit(&[("v.yaml", "1.0.0\n")], "1.0.0");
    repo.tag("v1.0.0");
    let wanted = repo.commit(&[("v.yaml", "1.4.2\n")], "1.4.2");
    repo.tag("v1.4.2");
    repo.commit(&[("v.yaml", "2.0.0\n")], "2.0.0");
    repo.tag("v2.0.0");
    let source = source_from(&file_url(&repo), "ref = { semver = \">=1.0, <2\" }");

    let syncer = Syncer::new();
    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    assert_eq!(artifact.revision, format!("v1.4.2@sha1:{wanted}"));
}

#[test]
fn a_commit_ref_fetches_that_commit_even_behind_the_branch() {
    let (_root, repo) = fixture();
    let old = repo.commit(&[("a.yaml", "old\n")], "old");
    repo.commit(&[("a.yaml", "new\n")], "new");
    let source = source_from(&file_url(&repo), &format!("ref = {{ commit = \"{old}\" }}"));

    let syncer = Syncer::new();
    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    assert_eq!(artifact.revision, format!("sha1:{old}"));
    let (dir, _) = unpack(&artifact.path);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.yaml")).expect("read"),
        "old\n"
    );
}

#[test]
fn a_missing_branch_is_an_error_naming_the_branch() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a\n")], "one");
    let source = source_from(&file_url(&repo), "ref = { branch = \"nope\" }");

    let err = Syncer::new().sync(&source).expect_err("no such branch");

    assert_eq!(err.reason(), "GitOperationFailed");
    assert!(err.to_string().contains("branch \"nope\""), "{err}");
}

#[test]
fn config_ignore_patterns_and_sourceignore_files_leave_files_out() {
    let (_root, repo) = fixture();
    repo.commit(
        &[
            ("apps/web.yaml", "w\n"),
            ("docs/guide.yaml", "d\n"),
            ("README.md", "r\n"),
            (".sourceignore", "secret/\n"),
            ("secret/key.yaml", "k\n"),
            ("apps/.sourceignore", "*.txt\n"),
            ("apps/notes.txt", "n\n"),
        ],
        "one",
    );
    let source = source_from(&file_url(&repo), "ignore = [\"docs/\", \"*.md\"]");

    let syncer = Syncer::new();
    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    let (_dir, files) = unpack(&artifact.path);
    assert_eq!(
        files,
        [".sourceignore", "apps/.sourceignore", "apps/web.yaml"]
    );
}

#[test]
fn changing_the_ignore_setting_rebuilds_the_artifact_of_the_same_commit() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a\n"), ("b.yaml", "b\n")], "one");
    let syncer = Syncer::new();
    let first = new_artifact(
        syncer
            .sync(&source_from(&file_url(&repo), ""))
            .expect("sync"),
    );

    let second = new_artifact(
        syncer
            .sync(&source_from(&file_url(&repo), "ignore = [\"b.yaml\"]"))
            .expect("sync"),
    );

    assert_eq!(first.revision, second.revision);
    assert_ne!(first.digest, second.digest);
    assert_eq!(unpack(&second.path).1, ["a.yaml"]);
}

#[test]
fn symlinks_pointing_outside_the_repository_are_left_out_and_inside_ones_kept() {
    let (_root, repo) = fixture();
    std::fs::create_dir_all(repo.work.join("apps")).expect("mkdir");
    std::fs::write(repo.work.join("apps/web.yaml"), "w\n").expect("write");
    std::os::unix::fs::symlink("/etc/passwd", repo.work.join("passwd")).expect("symlink");
    std::os::unix::fs::symlink("../../..", repo.work.join("apps/up")).expect("symlink");
    std::os::unix::fs::symlink("web.yaml", repo.work.join("apps/alias.yaml")).expect("symlink");
    repo.commit_all("hostile");
    let source = source_from(&file_url(&repo), "");

    let syncer = Syncer::new();
    let artifact = new_artifact(syncer.sync(&source).expect("sync"));

    let (dir, files) = unpack(&artifact.path);
    assert_eq!(files, ["apps/alias.yaml", "apps/web.yaml"]);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("apps/alias.yaml")).expect("read"),
        "w\n"
    );
}

#[test]
fn a_file_over_the_size_limit_fails_the_artifact_and_names_the_file() {
    let (_root, repo) = fixture();
    repo.commit(
        &[
            ("small.yaml", "s\n"),
            ("big/blob.bin", &"x".repeat(3 << 20)),
        ],
        "huge",
    );
    let mut syncer = Syncer::new();
    syncer.limits.max_file_bytes = 1 << 20;
    let source = source_from(&file_url(&repo), "");

    let err = syncer.sync(&source).expect_err("too large");

    assert_eq!(err.reason(), "ArtifactFailed");
    assert!(
        err.to_string().contains("big/blob.bin is 3145728 bytes"),
        "{err}"
    );
    let dir = syncer.state_dir.path().join("artifacts/git/fleet");
    let left: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .collect();
    assert!(
        left.is_empty(),
        "no partial artifact is left behind: {left:?}"
    );
}

#[test]
fn git_daemon_on_loopback_serves_a_branch_and_then_its_new_commit() {
    let (root, repo) = fixture();
    let first = repo.commit(&[("a.yaml", "1\n")], "one");
    let daemon = git_daemon(root.path());
    let syncer = Syncer::new();
    let source = source_from(&format!("git://127.0.0.1:{}/fleet.git", daemon.port), "");

    let one = new_artifact(syncer.sync(&source).expect("first sync"));
    assert!(matches!(
        syncer.sync(&source).expect("poll"),
        SyncOutcome::Unchanged { .. }
    ));
    let second = repo.commit(&[("a.yaml", "2\n")], "two");
    let two = new_artifact(syncer.sync(&source).expect("second sync"));

    assert_eq!(one.revision, format!("main@sha1:{first}"));
    assert_eq!(two.revision, format!("main@sha1:{second}"));
}

#[test]
fn an_unreachable_remote_is_a_git_operation_failure_and_the_last_artifact_stays_recorded() {
    let (root, repo) = fixture();
    repo.commit(&[("a.yaml", "1\n")], "one");
    let daemon = git_daemon(root.path());
    let syncer = Syncer::new();
    let source = source_from(&format!("git://127.0.0.1:{}/fleet.git", daemon.port), "");
    let good = new_artifact(syncer.sync(&source).expect("first sync"));
    drop(daemon);

    let err = syncer.sync(&source).expect_err("daemon is gone");

    assert_eq!(err.reason(), "GitOperationFailed");
    let status = syncer.previous(&source).expect("status recorded");
    assert!(!status.ready);
    assert_eq!(status.revision.as_deref(), Some(good.revision.as_str()));
    assert_eq!(status.artifact_path.as_deref(), Some(good.path.as_path()));
    assert!(good.path.is_file());
}

#[test]
fn a_local_repository_owned_by_another_user_is_refused_with_the_reason_and_the_fix() {
    let (_root, repo) = fixture();
    repo.commit(&[("a.yaml", "a: 1\n")], "one");
    if !crate::support::running_as_root() {
        eprintln!("skipped: giving the repository to another user needs root");
        return;
    }
    let chowned = std::process::Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&repo.bare)
        .status()
        .expect("run chown");
    assert!(chowned.success());
    let source = source_from(repo.bare.to_str().expect("utf-8"), "");

    let err = Syncer::new()
        .sync(&source)
        .expect_err("git refuses it")
        .to_string();

    assert!(
        err.contains("dubious ownership")
            && err.contains("uid 65534")
            && err.contains("safe.directory"),
        "{err}"
    );
}
