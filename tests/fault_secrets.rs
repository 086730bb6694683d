//! No credential in clear text: `kedge run` fetches with a password, a
//! bearer token and an SSH key, successfully and then with wrong ones, and
//! is given a token in a URL's user part; then every output kedge made —
//! its log (debug level), `kedge status`, `kedge events`, `kedge
//! check-config`, the SQLite database and every file of the state
//! directory — is searched for each secret.

use std::path::Path;
use std::time::Duration;

use kedge::protocol::StatusReport;

use crate::daemon_common::{stderr, stdout, Setup};
use crate::support::git::{http_git, http_git_bearer, ssh_keygen, sshd, test_ca};

const PASSWORD: &str = "pw-SECRET-1f3a8e";
const WRONG_PASSWORD: &str = "pw-SECRET-wrong-77c1";
const TOKEN: &str = "tok-SECRET-9c2d41";
const WRONG_TOKEN: &str = "tok-SECRET-wrong-5b0e";
const USERINFO_TOKEN: &str = "ghp_SECRETUSERINFO8d2f";

fn report(setup: &Setup) -> StatusReport {
    let out = setup.cli(&["status", "-o", "json"]);
    serde_json::from_str(&stdout(&out)).unwrap_or_else(|err| panic!("status -o json: {err}"))
}

fn source_ready(setup: &Setup, name: &str) -> Option<bool> {
    report(setup)
        .sources
        .into_iter()
        .find(|row| row.name == name && row.since.is_some())
        .map(|row| row.ready)
}

/// The longest line of an SSH private key: most of its secret.
fn key_body(path: &Path) -> String {
    std::fs::read_to_string(path)
        .expect("read key")
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .max_by_key(|l| l.len())
        .expect("a key line")
        .to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write secret file");
}

/// Every file under `dir`, as bytes, with its path.
fn files_under(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn no_credential_shows_in_logs_status_events_the_database_or_the_state_directory() {
    let setup = Setup::new("", "");
    setup.repo.commit(&[("a.yaml", "a\n")], "one");
    let root = setup.root.path();
    let ca = test_ca(root);
    let basic = http_git(root, "kedge", PASSWORD, Some(&ca));
    let bearer = http_git_bearer(root, TOKEN, Some(&ca));
    let client_key = root.join("client_key");
    ssh_keygen(&client_key);
    let other_key = root.join("other_key");
    ssh_keygen(&other_key);
    let sshd_dir = root.join("sshd");
    std::fs::create_dir_all(&sshd_dir).expect("mkdir sshd");
    let ssh = sshd(&sshd_dir, &client_key.with_extension("pub"));
    let known_hosts = root.join("known_hosts");
    write(&known_hosts, &ssh.known_hosts_line);
    let (password_file, token_file, key_file) =
        (root.join("password"), root.join("token"), root.join("key"));
    write(&password_file, PASSWORD);
    write(&token_file, TOKEN);
    std::fs::copy(&client_key, &key_file).expect("copy key");
    let key_secrets = [key_body(&client_key), key_body(&other_key)];
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or("root".into());
    let sources = |pass_url: &str| {
        format!(
            "[git.pass]\nurl = {pass_url:?}\ninterval = \"1h\"\nusername = \"kedge\"\npassword_file = {:?}\nca_file = {:?}\n\n\
             [git.token]\nurl = \"https://127.0.0.1:{}/fleet.git\"\ninterval = \"1h\"\nbearer_token_file = {:?}\nca_file = {:?}\n\n\
             [git.key]\nurl = \"ssh://{user}@127.0.0.1:{}{}\"\ninterval = \"1h\"\ntimeout = \"20s\"\nssh_key_file = {:?}\nknown_hosts_file = {:?}\n",
            password_file.display().to_string(),
            ca.ca_pem.display().to_string(),
            bearer.port,
            token_file.display().to_string(),
            ca.ca_pem.display().to_string(),
            ssh.server.port,
            setup.repo.bare.display(),
            key_file.display().to_string(),
            known_hosts.display().to_string(),
        )
    };
    let pass_url = format!("https://127.0.0.1:{}/fleet.git", basic.port);
    setup.write_config(&setup.config_text("", &sources(&pass_url)));
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    for name in ["pass", "token", "key"] {
        setup.wait_until(
            &format!("git/{name} fetched"),
            Duration::from_secs(60),
            || source_ready(&setup, name) == Some(true),
        );
    }

    // Wrong credentials: every fetch fails.
    write(&password_file, WRONG_PASSWORD);
    write(&token_file, WRONG_TOKEN);
    std::fs::copy(&other_key, &key_file).expect("swap key");
    for name in ["pass", "token", "key"] {
        let out = setup.cli(&["reconcile", "source", &format!("git/{name}")]);
        assert!(!out.status.success(), "git/{name} with a wrong credential");
        assert_eq!(source_ready(&setup, name), Some(false));
    }

    // A token in the URL's user part: refused on reload, and by check-config.
    let userinfo_url = format!(
        "https://{USERINFO_TOKEN}@127.0.0.1:{}/fleet.git",
        basic.port
    );
    let refused_config = setup.config_text("", &sources(&userinfo_url));
    let check = {
        let file = root.join("userinfo.toml");
        write(&file, &refused_config);
        std::process::Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["check-config", "--config"])
            .arg(&file)
            .output()
            .expect("run check-config")
    };
    assert!(
        !check.status.success(),
        "check-config refuses the user part"
    );
    setup.replace_config(&refused_config);
    setup.wait_until(
        "the refused config reported",
        Duration::from_secs(30),
        || !report(&setup).problems.is_empty(),
    );

    let mut outputs: Vec<(String, Vec<u8>)> = vec![
        ("the log".into(), setup.log_text().into_bytes()),
        ("check-config".into(), [check.stdout, check.stderr].concat()),
    ];
    for args in [
        &["status"][..],
        &["status", "-o", "json"],
        &["events", "--limit", "1000"],
        &["events", "git/pass"],
    ] {
        let out = setup.cli(args);
        outputs.push((
            format!("kedge {}", args.join(" ")),
            format!("{}{}", stdout(&out), stderr(&out)).into_bytes(),
        ));
    }
    files_under(&setup.state_dir, &mut outputs);
    assert!(
        outputs.iter().any(|(path, _)| path.ends_with("kedge.db")),
        "the database is searched"
    );
    let log = setup.log_text();
    assert!(
        log.contains("git/pass") || log.contains("pass"),
        "the log is not empty"
    );

    let secrets: Vec<&str> = [PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN, USERINFO_TOKEN]
        .into_iter()
        .chain(key_secrets.iter().map(String::as_str))
        .collect();
    let leaks: Vec<String> = outputs
        .iter()
        .flat_map(|(what, bytes)| {
            secrets
                .iter()
                .filter(|secret| contains(bytes, secret))
                .map(move |secret| format!("{secret} in {what}"))
        })
        .collect();
    assert!(leaks.is_empty(), "secrets leaked: {leaks:#?}");
}
