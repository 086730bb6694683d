//! Smart HTTP through `git http-backend` with Basic auth on loopback, over
//! HTTPS (rustls, a private CA from `ca_file`) and plain HTTP.

use std::path::Path;

use kedge::source::SyncOutcome;

use crate::git_fetch::{source_from, Syncer};
use crate::support::git::{http_git, test_ca, FixtureRepo};

fn password_file(dir: &Path, password: &str) -> String {
    let path = dir.join("password");
    std::fs::write(&path, format!("{password}\n")).expect("write password file");
    path.display().to_string()
}

#[test]
fn basic_auth_over_https_with_a_private_ca_fetches_the_branch_and_its_next_commit() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let first = repo.commit(&[("apps/web.yaml", "w: 1\n")], "one");
    let ca = test_ca(root.path());
    let server = http_git(root.path(), "kedge", "s3cret", Some(&ca));
    let body = format!(
        "username = \"kedge\"\npassword_file = {:?}\nca_file = {:?}",
        password_file(root.path(), "s3cret"),
        ca.ca_pem.display().to_string()
    );
    let source = source_from(
        &format!("https://127.0.0.1:{}/fleet.git", server.port),
        &body,
    );
    let syncer = Syncer::new();

    let one = syncer.sync(&source).expect("fetch over https");
    let second = repo.commit(&[("apps/web.yaml", "w: 2\n")], "two");
    let two = syncer.sync(&source).expect("fetch the next commit");

    assert_eq!(one.artifact().revision, format!("main@sha1:{first}"));
    assert!(matches!(two, SyncOutcome::NewArtifact { .. }));
    assert_eq!(two.artifact().revision, format!("main@sha1:{second}"));
}

#[test]
fn https_without_the_private_ca_is_refused() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    repo.commit(&[("a.yaml", "a\n")], "one");
    let ca = test_ca(root.path());
    let server = http_git(root.path(), "kedge", "s3cret", Some(&ca));
    let body = format!(
        "username = \"kedge\"\npassword_file = {:?}",
        password_file(root.path(), "s3cret")
    );
    let source = source_from(
        &format!("https://127.0.0.1:{}/fleet.git", server.port),
        &body,
    );

    let err = Syncer::new().sync(&source).expect_err("unknown CA");

    assert_eq!(err.reason(), "GitOperationFailed");
}

#[test]
fn a_wrong_password_is_a_git_operation_failure_that_does_not_show_the_password() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    repo.commit(&[("a.yaml", "a\n")], "one");
    let ca = test_ca(root.path());
    let server = http_git(root.path(), "kedge", "s3cret", Some(&ca));
    let body = format!(
        "username = \"kedge\"\npassword_file = {:?}\nca_file = {:?}",
        password_file(root.path(), "not-the-password"),
        ca.ca_pem.display().to_string()
    );
    let source = source_from(
        &format!("https://127.0.0.1:{}/fleet.git", server.port),
        &body,
    );

    let err = Syncer::new().sync(&source).expect_err("wrong password");

    assert_eq!(err.reason(), "GitOperationFailed");
    let message = err.to_string();
    assert!(!message.contains("not-the-password"), "{message}");
    assert!(
        message.contains("fleet"),
        "the error names the source: {message}"
    );
}

#[test]
fn credentials_are_never_sent_in_clear_text_over_plain_http() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    repo.commit(&[("a.yaml", "a\n")], "one");
    let server = http_git(root.path(), "kedge", "s3cret", None);
    let body = format!(
        "username = \"kedge\"\npassword_file = {:?}",
        password_file(root.path(), "s3cret")
    );
    // check-config refuses this; a config that bypassed it still sends nothing.
    let mut source = source_from(
        &format!("https://127.0.0.1:{}/fleet.git", server.port),
        &body,
    );
    source.url = format!("http://127.0.0.1:{}/fleet.git", server.port);

    let err = Syncer::new()
        .sync(&source)
        .expect_err("clear-text credentials");

    assert!(err.to_string().contains("clear text"), "{err}");
    assert!(!err.to_string().contains("s3cret"), "{err}");
}

#[test]
fn a_bearer_token_over_https_is_sent_as_an_authorization_header() {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let head = repo.commit(&[("a.yaml", "a\n")], "one");
    let ca = test_ca(root.path());
    let server = crate::support::git::http_git_bearer(root.path(), "t0ken", Some(&ca));
    let token_file = root.path().join("token");
    std::fs::write(&token_file, "t0ken\n").expect("write token");
    let body = format!(
        "bearer_token_file = {:?}\nca_file = {:?}",
        token_file.display().to_string(),
        ca.ca_pem.display().to_string()
    );
    let source = source_from(
        &format!("https://127.0.0.1:{}/fleet.git", server.port),
        &body,
    );

    let outcome = Syncer::new()
        .sync(&source)
        .expect("fetch with a bearer token");

    assert_eq!(outcome.artifact().revision, format!("main@sha1:{head}"));
}
