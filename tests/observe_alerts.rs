//! `[alert.NAME]`: the outcomes of `kedge run` that change an object, as
//! each provider's request, captured by an HTTP server on 127.0.0.1 and
//! checked against the shape the provider documents (Flux's payloads);
//! retries after 500 and across a restart while the receiver is down.

use std::path::Path;
use std::time::Duration;

use ring::hmac;
use serde_json::Value;

use crate::daemon_common::{stderr, stdout, Setup};
use crate::support::capture::{CaptureServer, Captured};

const TOKEN: &str = "not-a-real-token-4b1d";

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).expect("write secret");
    path.display().to_string()
}

fn alert(name: &str, provider: &str, address: &str, extra: &str) -> String {
    format!(
        "[alert.{name}]\nprovider = \"{provider}\"\n{address}\nevents = [\"git/*\"]\nsummary = \"edge-1 (shop 42)\"\n{extra}\n"
    )
}

/// Waits until `server` got `count` requests at `prefix`.
fn received(setup: &Setup, server: &CaptureServer, prefix: &str, count: usize) -> Vec<Captured> {
    setup.wait_until(
        &format!("{count} request(s) at {prefix}"),
        Duration::from_secs(60),
        || server.at(prefix).len() >= count,
    );
    server.at(prefix)
}

/// HMAC-SHA256 of `body` with `key`, in lowercase hex.
pub(crate) fn hmac_hex(key: &str, body: &[u8]) -> String {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes()), body);
    kedge::source::store::hex(tag.as_ref())
}

/// Breaks `git/fleet` (its repository moves away) and asks for a fetch.
fn break_source(setup: &Setup) -> std::path::PathBuf {
    let moved = setup.repo.bare.with_extension("moved");
    std::fs::rename(&setup.repo.bare, &moved).expect("move the repository away");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(!out.status.success(), "{}{}", stdout(&out), stderr(&out));
    moved
}

#[test]
fn every_provider_gets_its_documented_payload_for_changes_only() {
    let server = CaptureServer::start(0);
    let secrets = tempfile::tempdir().expect("tempdir");
    let dir = secrets.path();
    let slack_file = write(dir, "slack", &server.url("/slack/T0/B0/x"));
    let token_file = write(dir, "token", TOKEN);
    let inline = |path: &str| format!("address = {:?}", server.url(path));
    let token = format!("token_file = {token_file:?}");
    let alerts = [
        alert("generic", "generic", &inline("/generic"), ""),
        alert("hmac", "generic-hmac", &inline("/hmac"), &token),
        alert(
            "slack",
            "slack",
            &format!("address_file = {slack_file:?}"),
            "channel = \"#ops\"",
        ),
        alert(
            "discord",
            "discord",
            &inline("/discord/api/webhooks/1/x"),
            "",
        ),
        alert("teams", "msteams", &inline("/teams"), ""),
        alert("chat", "googlechat", &inline("/chat"), ""),
        alert(
            "matrix",
            "matrix",
            &inline("/matrix"),
            &format!("{token}\nchannel = \"!room:example.org\""),
        ),
        alert(
            "telegram",
            "telegram",
            &inline("/telegram"),
            &format!("{token}\nchannel = \"-100123\""),
        ),
        alert("am", "alertmanager", &inline("/am/api/v2/alerts"), ""),
        alert(
            "errors",
            "generic",
            &inline("/errors"),
            "severity = \"error\"",
        ),
        alert(
            "excluded",
            "generic",
            &inline("/excluded"),
            "exclude = [\"^stored artifact\", \"^fetching \"]",
        ),
    ]
    .concat();
    let setup = Setup::new("", &alerts);
    let commit = setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let revision = format!("main@sha1:{commit}");

    let generic = &received(&setup, &server, "/generic", 1)[0];
    assert_eq!(generic.method, "POST");
    assert_eq!(
        generic.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        generic.headers.get("gotk-component").map(String::as_str),
        Some("kedge")
    );
    let event = generic.json();
    assert_eq!(event["involvedObject"]["kind"], "GitRepository");
    assert_eq!(event["involvedObject"]["name"], "fleet");
    assert_eq!(event["severity"], "info");
    assert_eq!(event["reason"], "Succeeded");
    assert_eq!(event["reportingController"], "kedge");
    assert_eq!(event["metadata"]["revision"], revision.as_str());
    assert_eq!(event["metadata"]["summary"], "edge-1 (shop 42)");
    assert!(
        event["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{event}"
    );

    let signed = &received(&setup, &server, "/hmac", 1)[0];
    assert_eq!(
        signed.headers.get("x-signature"),
        Some(&format!("sha256={}", hmac_hex(TOKEN, &signed.body)))
    );
    assert_eq!(signed.json()["involvedObject"]["name"], "fleet");

    let slack = received(&setup, &server, "/slack/T0/B0/x", 1)[0].json();
    assert_eq!(slack["channel"], "#ops");
    assert_eq!(slack["username"], "kedge");
    let attachment = &slack["attachments"][0];
    assert_eq!(attachment["color"], "good");
    assert_eq!(attachment["author_name"], "git/fleet");
    assert_eq!(attachment["mrkdwn_in"], serde_json::json!(["text"]));
    assert!(attachment["fields"].as_array().is_some_and(|f| f
        .iter()
        .any(|f| f["title"] == "revision" && f["value"] == revision.as_str())));

    let discord = &received(&setup, &server, "/discord/", 1)[0];
    assert_eq!(
        discord.path, "/discord/api/webhooks/1/x/slack",
        "Discord's Slack-compatible endpoint"
    );
    assert_eq!(discord.json()["attachments"][0]["author_name"], "git/fleet");

    let teams = received(&setup, &server, "/teams", 1)[0].json();
    assert_eq!(teams["@type"], "MessageCard");
    assert_eq!(teams["@context"], "http://schema.org/extensions");
    assert_eq!(teams["themeColor"], "0076D7");
    assert_eq!(teams["sections"][0]["activitySubtitle"], "git/fleet");
    assert!(teams["sections"][0]["facts"]
        .as_array()
        .is_some_and(|f| f.iter().any(|f| f["name"] == "summary")));

    let chat = received(&setup, &server, "/chat", 1)[0].json();
    assert_eq!(chat["cards"][0]["header"]["title"], "git/fleet");
    assert!(chat["cards"][0]["sections"][0]["widgets"][0]["textParagraph"]["text"].is_string());
    assert_eq!(
        chat["cards"][0]["sections"][1]["widgets"][0]["keyValue"]["topLabel"],
        "TIMESTAMP"
    );

    let matrix = &received(&setup, &server, "/matrix", 1)[0];
    assert_eq!(matrix.method, "PUT");
    let prefix = "/matrix/_matrix/client/r0/rooms/%21room%3Aexample.org/send/m.room.message/";
    assert!(
        matrix
            .path
            .strip_prefix(prefix)
            .is_some_and(|txn| txn.len() == 64),
        "{}",
        matrix.path
    );
    assert_eq!(
        matrix.headers.get("authorization"),
        Some(&format!("Bearer {TOKEN}"))
    );
    let body = matrix.json();
    assert_eq!(body["msgtype"], "m.text");
    assert!(body["body"]
        .as_str()
        .is_some_and(|b| b.contains("git/fleet") && b.contains(&revision)));

    let telegram = &received(&setup, &server, "/telegram", 1)[0];
    assert_eq!(telegram.path, format!("/telegram/bot{TOKEN}/sendMessage"));
    let body = telegram.json();
    assert_eq!(body["chat_id"], "-100123");
    assert!(body["text"]
        .as_str()
        .is_some_and(|t| t.contains("git/fleet")));

    let am = received(&setup, &server, "/am/api/v2/alerts", 1)[0].json();
    let firing = &am[0];
    assert_eq!(firing["status"], "firing");
    assert_eq!(firing["labels"]["alertname"], "KedgeGitRepositorySucceeded");
    assert_eq!(firing["labels"]["severity"], "info");
    assert_eq!(firing["labels"]["name"], "fleet");
    assert_eq!(firing["labels"]["revision"], revision.as_str());
    assert_eq!(firing["annotations"]["summary"], "edge-1 (shop 42)");
    assert!(firing["annotations"]["message"].is_string());

    // A failure: error payloads; the error-only alert gets this one alone.
    let _moved = break_source(&setup);
    let slack = received(&setup, &server, "/slack/", 2);
    assert_eq!(slack[1].json()["attachments"][0]["color"], "danger");
    let teams = received(&setup, &server, "/teams", 2);
    assert_eq!(teams[1].json()["themeColor"], "FF0000");
    let am = received(&setup, &server, "/am/", 2)[1].json();
    assert_eq!(
        am[0]["labels"]["alertname"],
        "KedgeGitRepositoryGitOperationFailed"
    );
    assert_eq!(am[0]["labels"]["severity"], "error");
    let errors = received(&setup, &server, "/errors", 1);
    assert_eq!(errors[0].json()["severity"], "error");

    // The same failure again is no news.
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(!out.status.success(), "{}", stdout(&out));
    let total = server.captured().len();
    setup.stays_for(
        Duration::from_secs(2),
        "no alert for an unchanged outcome",
        || server.captured().len() == total,
    );
    assert_eq!(server.at("/errors").len(), 1);
    let excluded: Vec<Value> = server.at("/excluded").iter().map(Captured::json).collect();
    assert!(
        excluded.is_empty(),
        "every message was excluded: {excluded:?}"
    );
    let log = setup.log_text();
    assert!(
        !log.contains(TOKEN) && !log.contains("/slack/T0"),
        "a secret is in the log:\n{log}"
    );
}

#[test]
fn alerts_are_retried_after_500_and_delivered_after_a_restart_while_the_receiver_was_down() {
    let server = CaptureServer::start(0);
    let port = server.port;
    let url = server.url("/hook");
    server.fail_next(2);
    let setup = Setup::new(
        "",
        &alert("ops", "generic", &format!("address = {url:?}"), ""),
    );
    let commit = setup.repo.commit(&[("a.yaml", "a: 1\n")], "one");
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    let attempts = received(&setup, &server, "/hook", 3);
    assert!(
        attempts.iter().all(|a| a.body == attempts[0].body),
        "one alert, retried"
    );
    assert_eq!(
        attempts[0].json()["metadata"]["revision"],
        format!("main@sha1:{commit}")
    );
    let out = setup.cli(&["metrics"]);
    let metrics = stdout(&out);
    assert!(
        metrics.contains("kedge_alert_delivery_failures_total{alert=\"ops\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kedge_alerts_sent_total{alert=\"ops\"} 1"),
        "{metrics}"
    );

    // The receiver goes down; a failure is queued and kedge restarts.
    drop(server);
    let _moved = break_source(&setup);
    setup.wait_until("a failed delivery", Duration::from_secs(30), || {
        setup.log_text().contains("alert not delivered")
    });
    daemon.stop();
    let server = CaptureServer::start(port);
    let _daemon = setup.start(&[]);
    let delivered = received(&setup, &server, "/hook", 1);
    let event = delivered[0].json();
    assert_eq!(event["severity"], "error", "{event}");
    assert_eq!(event["reason"], "GitOperationFailed");
    // The restart's own fetch fails the same way: no second alert.
    setup.stays_for(
        Duration::from_secs(2),
        "one alert after the restart",
        || server.at("/hook").len() == 1,
    );
    let value: Value = event;
    assert_eq!(value["involvedObject"]["name"], "fleet");
}

fn problems(table: &str) -> String {
    kedge::config::Config::parse(Path::new("kedge.toml"), table)
        .err()
        .map(|err| err.to_string())
        .unwrap_or_default()
}

#[test]
fn a_token_never_goes_over_plain_http_to_another_host() {
    let alert = |provider: &str, address: &str| {
        problems(&format!(
            "[alert.ops]\nprovider = \"{provider}\"\naddress = \"{address}\"\ntoken_file = \"/etc/hostname\"\nchannel = \"!room\"\nevents = [\"kustomization/*\"]\n"
        ))
    };
    for provider in ["matrix", "generic", "telegram"] {
        let refused = alert(provider, "http://chat.example.org/hook");
        assert!(
            refused.contains("kedge.toml:3:11: alert.ops.address: plain http:// to another host: the token would travel in clear text; use https"),
            "{provider}: {refused}"
        );
        assert_eq!(
            alert(provider, "http://127.0.0.1:8008/hook"),
            "",
            "{provider}: loopback is fine"
        );
        assert_eq!(
            alert(provider, "https://chat.example.org/hook"),
            "",
            "{provider}"
        );
    }
    // generic-hmac sends a signature made with the token, never the token.
    assert_eq!(alert("generic-hmac", "http://hooks.example.org/x"), "");
}

#[test]
fn alert_tables_are_validated_with_their_positions() {
    let table = |provider: &str, extra: &str| {
        format!("[alert.ops]\nprovider = \"{provider}\"\naddress = \"https://hooks.example.org/x\"\nevents = [\"kustomization/*\"]\n{extra}")
    };
    assert_eq!(problems(&table("slack", "severity = \"error\"\n")), "");
    let unknown = problems(&table("pagerduty", ""));
    assert!(
        unknown.contains("kedge.toml:2:12: alert.ops.provider: unknown provider \"pagerduty\""),
        "{unknown}"
    );
    let forge = problems(&table("gitea", ""));
    assert!(
        forge.contains("alert.ops.address: the repository address of provider \"gitea\" is written https://HOST/OWNER/REPO")
            && forge.contains("alert.ops.token_file: provider \"gitea\" needs token_file"),
        "{forge}"
    );
    let token = "token_file = \"/etc/hostname\"\n";
    let github = |events: &str| {
        problems(&format!("[alert.ops]\nprovider = \"github\"\naddress = \"https://github.com/org/fleet\"\n{token}events = {events}\n"))
    };
    assert_eq!(github("[\"kustomization/*\"]"), "");
    let sources = github("[\"git/fleet\", \"kustomization/apps\"]");
    assert!(
        sources.contains(
            "alert.ops.events: \"git/fleet\": a commit status is posted for kustomizations only"
        ) && !sources.contains("\"kustomization/apps\":"),
        "{sources}"
    );
    let plain_ca = problems(&format!(
        "[alert.ops]\nprovider = \"gitea\"\naddress = \"http://git.example.org/o/r\"\n{token}ca_file = \"/etc/hostname\"\nevents = [\"kustomization/*\"]\n"
    ));
    assert!(
        plain_ca.contains("alert.ops.ca_file: ca_file is not used over plain HTTP")
            && plain_ca.contains(
                "alert.ops.address: the repository address is plain http:// to another host"
            ),
        "{plain_ca}"
    );
    let matrix = problems(&table("matrix", ""));
    assert!(
        matrix.contains("alert.ops.token_file: provider \"matrix\" needs token_file")
            && matrix.contains("alert.ops.channel"),
        "{matrix}"
    );
    let pattern = problems(&table("slack", "").replace("kustomization/*", "kustomisation/*"));
    assert!(
        pattern.contains("alert.ops.events: \"kustomisation/*\": write kind/name"),
        "{pattern}"
    );
    let regex = problems(&table("slack", "exclude = [\"(\"]\n"));
    assert!(
        regex.contains("alert.ops.exclude: not a regular expression"),
        "{regex}"
    );
    let severity = problems(&table("slack", "severity = \"warning\"\n"));
    assert!(severity.contains("alert.ops.severity"), "{severity}");
    let no_address = problems("[alert.ops]\nprovider = \"slack\"\nevents = [\"*\"]\n");
    assert!(no_address.contains("needs address_file"), "{no_address}");
}
