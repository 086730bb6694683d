//! `[receiver.NAME]`: webhooks signed as GitHub, GitLab and the generic
//! types sign them make `kedge run` fetch at once; unsigned, wrongly
//! signed, oversized and flooding requests change nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kedge::state::Store;
use reqwest::blocking::Client;

use crate::daemon_common::Setup;
use crate::observe_metrics::free_port;

const SECRET: &str = "not-a-real-secret-6c1f0e";

struct Hooks {
    setup: Setup,
    secrets: tempfile::TempDir,
    client: Client,
}

/// A daemon with one receiver per `(name, type)`, each on its own port,
/// all fetching `git/fleet` (whose interval is 1h: only a hook fetches).
fn hooks(receivers: &[(&str, &str)]) -> (Hooks, Vec<u16>) {
    let secrets = tempfile::tempdir().expect("tempdir");
    let secret_file = secrets.path().join("hook-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write secret");
    let mut ports = Vec::new();
    let mut tables = String::new();
    for (name, kind) in receivers {
        let port = free_port();
        ports.push(port);
        tables.push_str(&format!(
            "[receiver.{name}]\nlisten = \"127.0.0.1:{port}\"\ntype = \"{kind}\"\nsecret_file = {:?}\nresources = [\"git/fleet\"]\n",
            secret_file.display().to_string()
        ));
    }
    let setup = Setup::new("", &tables);
    kedge::source::install_tls_provider();
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    (
        Hooks {
            setup,
            secrets,
            client,
        },
        ports,
    )
}

fn revision(state_dir: &Path) -> Option<String> {
    Store::open_read_only(&state_dir.join("kedge.db"))
        .ok()?
        .source_status("git", "fleet")
        .ok()??
        .revision
}

fn signature(body: &[u8]) -> String {
    format!("sha256={}", crate::observe_alerts::hmac_hex(SECRET, body))
}

impl Hooks {
    fn post(&self, port: u16, headers: &[(&str, &str)], body: &[u8]) -> u16 {
        let mut request = self
            .client
            .post(format!("http://127.0.0.1:{port}/hook"))
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().map(|r| r.status().as_u16()).unwrap_or(0)
    }

    fn state_dir(&self) -> PathBuf {
        self.setup.state_dir.clone()
    }

    /// Waits for `git/fleet` to be at `commit`; how long it took.
    fn fetched(&self, commit: &str) -> Duration {
        let since = Instant::now();
        let want = format!("main@sha1:{commit}");
        let dir = self.state_dir();
        self.setup.wait_until(
            &format!("a fetch of {commit}"),
            Duration::from_secs(30),
            || revision(&dir).as_deref() == Some(want.as_str()),
        );
        since.elapsed()
    }

    fn stays_at(&self, commit: &str, what: &str) {
        let want = format!("main@sha1:{commit}");
        let dir = self.state_dir();
        self.setup.stays_for(Duration::from_secs(1), what, || {
            revision(&dir).as_deref() == Some(want.as_str())
        });
    }
}

#[test]
fn signed_github_and_gitlab_pushes_fetch_at_once_and_bad_ones_change_nothing() {
    let (hooks, ports) = hooks(&[("github", "github"), ("gitlab", "gitlab")]);
    let (github, gitlab) = (ports[0], ports[1]);
    let first = hooks.setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let _daemon = hooks.setup.start(&[]);
    hooks.setup.wait_ready();
    hooks.fetched(&first);

    let second = hooks.setup.repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let body = br#"{"ref":"refs/heads/main","after":"x"}"#;
    let push = |signature: &str| -> u16 {
        hooks.post(
            github,
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", signature),
            ],
            body,
        )
    };
    assert_eq!(
        push(&signature(b"another body")),
        401,
        "a signature of another body"
    );
    assert_eq!(push("sha256=00"), 401);
    assert_eq!(
        hooks.post(github, &[("X-GitHub-Event", "push")], body),
        401,
        "no signature"
    );
    let oversized = vec![b' '; 1024 * 1024 + 1];
    let signed_oversized = signature(&oversized);
    assert_eq!(
        hooks.post(
            github,
            &[
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &signed_oversized)
            ],
            &oversized
        ),
        413
    );
    assert_eq!(
        hooks.post(
            github,
            &[
                ("X-GitHub-Event", "issues"),
                ("X-Hub-Signature-256", &signature(body))
            ],
            body
        ),
        400,
        "not a push"
    );
    assert_eq!(
        hooks.post(
            github,
            &[
                ("X-GitHub-Event", "ping"),
                ("X-Hub-Signature-256", &signature(body))
            ],
            body
        ),
        200
    );
    hooks.stays_at(&first, "refused webhooks fetch nothing");

    assert_eq!(push(&signature(body)), 202);
    let took = hooks.fetched(&second);
    eprintln!(
        "signed GitHub push → new revision recorded: {:.0} ms (file:// fetch included)",
        took.as_secs_f64() * 1000.0
    );

    let third = hooks.setup.repo.commit(&[("a.yaml", "a: 3\n")], "three");
    let gitlab_push = |token: &str| {
        hooks.post(
            gitlab,
            &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", token)],
            b"{}",
        )
    };
    assert_eq!(gitlab_push("not-the-token"), 401);
    assert_eq!(
        gitlab_push(&SECRET[..SECRET.len() - 1]),
        401,
        "a prefix of the token"
    );
    hooks.stays_at(&second, "a wrong GitLab token fetches nothing");
    assert_eq!(gitlab_push(SECRET), 202);
    hooks.fetched(&third);

    let log = hooks.setup.log_text();
    assert!(log.contains("webhook refused"), "{log}");
    assert!(!log.contains(SECRET), "the secret is in the log:\n{log}");
}

#[test]
fn generic_receivers_fetch_and_a_flood_is_rate_limited() {
    let (hooks, ports) = hooks(&[("ci", "generic-hmac"), ("plain", "generic")]);
    let (hmac_port, plain_port) = (ports[0], ports[1]);
    let first = hooks.setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let _daemon = hooks.setup.start(&[]);
    hooks.setup.wait_ready();
    hooks.fetched(&first);

    let second = hooks.setup.repo.commit(&[("a.yaml", "a: 2\n")], "two");
    let body = b"{\"built\":\"abc\"}";
    assert_eq!(
        hooks.post(hmac_port, &[("X-Signature", &signature(b"{}"))], body),
        401
    );
    assert_eq!(
        hooks.post(hmac_port, &[("X-Signature", &signature(body))], body),
        202
    );
    hooks.fetched(&second);

    let third = hooks.setup.repo.commit(&[("a.yaml", "a: 3\n")], "three");
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(
        hooks.post(plain_port, &[("Authorization", "Bearer nope")], b""),
        401
    );
    assert_eq!(
        hooks.post(plain_port, &[("Authorization", &bearer)], b""),
        202
    );
    hooks.fetched(&third);

    // A flood: the burst is served, the rest refused until tokens come back.
    let statuses: Vec<u16> = (0..40)
        .map(|_| hooks.post(plain_port, &[("Authorization", "Bearer nope")], b""))
        .collect();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    assert!(limited >= 20, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    hooks.setup.wait_until(
        "the rate limit to let one through",
        Duration::from_secs(10),
        || hooks.post(plain_port, &[("Authorization", "Bearer nope")], b"") == 401,
    );
}

#[test]
fn a_receiver_added_by_a_reload_listens_and_one_removed_stops() {
    let (hooks, _) = hooks(&[]);
    let first = hooks.setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let _daemon = hooks.setup.start(&[]);
    hooks.setup.wait_ready();
    hooks.fetched(&first);
    let port = free_port();
    let secret_file = hooks.secrets.path().join("hook-secret");
    let receiver = format!(
        "[receiver.ci]\nlisten = \"127.0.0.1:{port}\"\ntype = \"generic\"\nsecret_file = {:?}\nresources = [\"git/fleet\"]\n",
        secret_file.display().to_string()
    );
    hooks
        .setup
        .replace_config(&hooks.setup.config_text("", &receiver));
    let bearer = format!("Bearer {SECRET}");
    let second = hooks.setup.repo.commit(&[("a.yaml", "a: 2\n")], "two");
    hooks
        .setup
        .wait_until("the new receiver", Duration::from_secs(30), || {
            hooks.post(port, &[("Authorization", &bearer)], b"") == 202
        });
    hooks.fetched(&second);
    hooks.setup.replace_config(&hooks.setup.config_text("", ""));
    hooks
        .setup
        .wait_until("the receiver to stop", Duration::from_secs(30), || {
            hooks.post(port, &[("Authorization", &bearer)], b"") == 0
        });
}

fn problems(tables: &str) -> String {
    kedge::config::Config::parse(
        Path::new("kedge.toml"),
        &format!("[git.fleet]\nurl = \"/srv/fleet\"\n{tables}"),
    )
    .err()
    .map(|err| err.to_string())
    .unwrap_or_default()
}

#[test]
fn receiver_tables_are_validated_with_their_positions() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let secret = secrets.path().join("s");
    std::fs::write(&secret, "x").expect("write secret");
    let table = |kind: &str, secret: &str, resources: &str| {
        format!("[receiver.hook]\nlisten = \"127.0.0.1:9292\"\ntype = \"{kind}\"\n{secret}resources = {resources}\n")
    };
    let with_secret = format!("secret_file = {:?}\n", secret.display().to_string());
    assert_eq!(
        problems(&table("github", &with_secret, "[\"git/fleet\"]")),
        ""
    );
    let unknown = problems(&table("bitbucket", &with_secret, "[\"git/fleet\"]"));
    assert!(
        unknown.contains("kedge.toml:5:8: receiver.hook.type: unknown receiver type \"bitbucket\""),
        "{unknown}"
    );
    let no_secret = problems(&table("generic", "", "[\"git/fleet\"]"));
    assert!(
        no_secret.contains("receiver.hook.secret_file: a receiver needs secret_file"),
        "{no_secret}"
    );
    let no_source = problems(&table("gitlab", &with_secret, "[\"git/other\"]"));
    assert!(
        no_source.contains("receiver.hook.resources: no source [git.other]"),
        "{no_source}"
    );
    let no_resources = problems(&table("gitlab", &with_secret, "[]"));
    assert!(
        no_resources.contains("name at least one source"),
        "{no_resources}"
    );
}
