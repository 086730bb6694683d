//! SSH sources through Debian's `sshd` on a 127.0.0.1 port: strict host
//! key checking against the configured known_hosts file.

use std::path::Path;

use crate::git_fetch::{source_from, Syncer};
use crate::support::git::{ssh_keygen, sshd, FixtureRepo};

struct SshFixture {
    root: tempfile::TempDir,
    repo: FixtureRepo,
    client_key: std::path::PathBuf,
    server: crate::support::git::Sshd,
}

fn ssh_fixture() -> SshFixture {
    let root = tempfile::tempdir().expect("tempdir");
    let repo = FixtureRepo::new(root.path(), "fleet");
    let client_key = root.path().join("client_key");
    ssh_keygen(&client_key);
    let server_dir = root.path().join("sshd");
    std::fs::create_dir_all(&server_dir).expect("mkdir sshd");
    let server = sshd(&server_dir, &client_key.with_extension("pub"));
    SshFixture {
        root,
        repo,
        client_key,
        server,
    }
}

fn ssh_body(key: &Path, known_hosts: &Path) -> String {
    format!(
        "ssh_key_file = {:?}\nknown_hosts_file = {:?}\ntimeout = \"20s\"",
        key.display().to_string(),
        known_hosts.display().to_string()
    )
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

#[test]
fn ssh_with_the_right_host_key_fetches_the_branch() {
    let f = ssh_fixture();
    let head = f.repo.commit(&[("apps/web.yaml", "w\n")], "one");
    let known_hosts = f.root.path().join("known_hosts");
    std::fs::write(&known_hosts, &f.server.known_hosts_line).expect("write known_hosts");
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        current_user(),
        f.server.server.port,
        f.repo.bare.display()
    );
    let source = source_from(&url, &ssh_body(&f.client_key, &known_hosts));

    let outcome = Syncer::new().sync(&source).expect("fetch over ssh");

    assert_eq!(outcome.artifact().revision, format!("main@sha1:{head}"));
}

#[test]
fn ssh_refuses_a_host_key_that_is_not_in_known_hosts_with_a_clear_error() {
    let f = ssh_fixture();
    f.repo.commit(&[("a.yaml", "a\n")], "one");
    let other_host_key = f.root.path().join("other_host_key");
    ssh_keygen(&other_host_key);
    let public = std::fs::read_to_string(other_host_key.with_extension("pub")).expect("read key");
    let mut fields = public.split_whitespace();
    let wrong_line = format!(
        "[127.0.0.1]:{} {} {}\n",
        f.server.server.port,
        fields.next().expect("type"),
        fields.next().expect("key")
    );
    let known_hosts = f.root.path().join("known_hosts");
    std::fs::write(&known_hosts, wrong_line).expect("write known_hosts");
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        current_user(),
        f.server.server.port,
        f.repo.bare.display()
    );
    let source = source_from(&url, &ssh_body(&f.client_key, &known_hosts));

    let err = Syncer::new().sync(&source).expect_err("wrong host key");

    assert_eq!(err.reason(), "GitOperationFailed");
    let message = err.to_string();
    assert!(
        message.to_lowercase().contains("host key"),
        "the error says why: {message}"
    );
}

#[test]
fn ssh_refuses_an_unknown_host_with_an_empty_known_hosts_file() {
    let f = ssh_fixture();
    f.repo.commit(&[("a.yaml", "a\n")], "one");
    let known_hosts = f.root.path().join("known_hosts");
    std::fs::write(&known_hosts, "").expect("write known_hosts");
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        current_user(),
        f.server.server.port,
        f.repo.bare.display()
    );
    let source = source_from(&url, &ssh_body(&f.client_key, &known_hosts));

    let err = Syncer::new().sync(&source).expect_err("unknown host");

    assert!(err.to_string().to_lowercase().contains("host key"), "{err}");
}
