//! Commit status alerts (`provider = "github" | "gitlab" | "gitea"`): a
//! kustomization applied by `kedge run` against the test control plane
//! sets the status `kedge/<node>/<kustomization>` on the commit it
//! applied — pending while it waits for health, then success, and failure
//! on a commit that does not build. GitHub's and GitLab's requests are
//! captured on 127.0.0.1 and checked against their documented APIs; Gitea
//! is a real server on loopback, read back through its API.

use std::time::Duration;

use serde_json::Value;

use crate::daemon_common::{stdout, Setup};
use crate::support::capture::{CaptureServer, Captured};
use crate::support::git::{test_ca, tls_acceptor};
use crate::support::gitea::Gitea;
use crate::support::{cluster, TestNamespace};

const TOKEN: &str = "forge-token-not-real-91c2";

fn node() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("host name")
        .trim()
        .to_string()
}

fn configmap(value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shown\ndata:\n  key: \"{value}\"\n"
    )
}

/// A kustomization file naming a resource that does not exist: the build fails.
const BROKEN: &str = "resources:\n- missing.yaml\n";

fn kustomization(namespace: &str) -> String {
    format!(
        "[kustomization.apps]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\nretry_interval = \"1h\"\nprune = true\nwait = true\ntarget_namespace = \"{namespace}\"\n"
    )
}

fn agent() -> String {
    format!(
        "kubeconfig = {:?}\n",
        cluster().kubeconfig.display().to_string()
    )
}

/// The requests `server` got at `prefix`, once there are `count`.
fn received(setup: &Setup, server: &CaptureServer, prefix: &str, count: usize) -> Vec<Captured> {
    setup.wait_until(
        &format!("{count} request(s) at {prefix}"),
        Duration::from_secs(90),
        || server.at(prefix).len() >= count,
    );
    server.at(prefix)
}

fn header<'a>(request: &'a Captured, name: &str) -> &'a str {
    request.headers.get(name).map_or("", String::as_str)
}

fn reconcile_source(setup: &Setup) {
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(out.status.success(), "{}", stdout(&out));
}

#[tokio::test]
async fn github_and_gitlab_get_their_documented_commit_status_requests() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "forge-hub").await;
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = test_ca(certs.path());
    let github = CaptureServer::start_tls(tls_acceptor(&ca));
    let gitlab = CaptureServer::start(0);
    let token_file = certs.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token file");
    let alerts = format!(
        "[alert.hub]\nprovider = \"github\"\naddress = \"https://127.0.0.1:{}/org/fleet\"\ntoken_file = {:?}\nca_file = {:?}\nevents = [\"kustomization/apps\"]\n\n\
         [alert.lab]\nprovider = \"gitlab\"\naddress = {:?}\ntoken_file = {:?}\nevents = [\"kustomization/*\"]\n",
        github.port,
        token_file.display().to_string(),
        ca.ca_pem.display().to_string(),
        gitlab.url("/group/sub/fleet.git"),
        token_file.display().to_string(),
    );
    let setup = Setup::new(&agent(), &format!("{}\n{alerts}", kustomization(&ns.name)));
    let good = setup
        .repo
        .commit(&[("apps/shown.yaml", &configmap("one"))], "one");
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let context = format!("kedge/{}/apps", node());

    // GitHub Enterprise Server (not github.com): <server>/api/v3.
    let hub = received(&setup, &github, "/api/v3/", 2);
    for request in &hub {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.path,
            format!("/api/v3/repos/org/fleet/statuses/{good}")
        );
        assert_eq!(header(request, "authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(header(request, "accept"), "application/vnd.github+json");
        assert_eq!(header(request, "x-github-api-version"), "2022-11-28");
        assert!(header(request, "user-agent").starts_with("kedge/"));
        assert_eq!(header(request, "content-type"), "application/json");
        let body = request.json();
        assert_eq!(body["context"], context.as_str(), "{body}");
        let description = body["description"].as_str().unwrap_or_default();
        assert!(
            !description.is_empty() && description.chars().count() <= 140,
            "{body}"
        );
    }
    let states: Vec<Value> = hub.iter().map(|r| r.json()["state"].clone()).collect();
    assert_eq!(
        states,
        ["pending", "success"],
        "waiting for health, then ready"
    );

    let lab = received(&setup, &gitlab, "/api/v4/", 2);
    for request in &lab {
        assert_eq!(
            request.path,
            format!("/api/v4/projects/group%2Fsub%2Ffleet/statuses/{good}")
        );
        assert_eq!(header(request, "private-token"), TOKEN);
        assert_eq!(request.json()["name"], context.as_str());
    }
    let states: Vec<Value> = lab.iter().map(|r| r.json()["state"].clone()).collect();
    assert_eq!(states, ["running", "success"]);

    // A commit that does not build: failure on that commit, nothing on the good one.
    let broken = setup
        .repo
        .commit(&[("apps/kustomization.yaml", BROKEN)], "broken");
    reconcile_source(&setup);
    let hub = received(&setup, &github, "/api/v3/", 3);
    assert_eq!(
        hub[2].path,
        format!("/api/v3/repos/org/fleet/statuses/{broken}")
    );
    assert_eq!(hub[2].json()["state"], "failure");
    let lab = received(&setup, &gitlab, "/api/v4/", 3);
    assert_eq!(lab[2].json()["state"], "failed");

    // The same failure again is no news.
    let out = setup.cli(&["reconcile", "kustomization", "apps"]);
    assert!(!out.status.success(), "the broken commit still fails");
    setup.stays_for(
        Duration::from_secs(2),
        "no status for an unchanged outcome",
        || github.captured().len() == 3 && gitlab.captured().len() == 3,
    );
    assert!(!setup.log_text().contains(TOKEN), "the token is in the log");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_gitea_shows_the_status_of_each_applied_commit() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "forge-tea").await;
    // Gitea's API is read with a blocking client.
    tokio::task::block_in_place(|| gitea_statuses_follow_the_commits(&ns.name));
}

fn gitea_statuses_follow_the_commits(namespace: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let gitea = Gitea::start(&dir.path().join("gitea"), "fleet");
    let token_file = dir.path().join("gitea-token");
    std::fs::write(&token_file, &gitea.token).expect("token file");
    let setup = Setup::new(&agent(), "");
    let good = setup
        .repo
        .commit(&[("apps/shown.yaml", &configmap("one"))], "one");
    gitea.push(&setup.repo.work, "fleet");
    let config = format!(
        "[agent]\nstate_dir = {:?}\nsocket = {:?}\n{}\n[git.fleet]\nurl = \"{}.git\"\ninterval = \"1h\"\n\n{}\n\
         [alert.tea]\nprovider = \"gitea\"\naddress = {:?}\ntoken_file = {:?}\nevents = [\"kustomization/apps\"]\n",
        setup.state_dir.display().to_string(),
        setup.socket.display().to_string(),
        agent(),
        gitea.repo_url("fleet"),
        kustomization(namespace),
        gitea.repo_url("fleet"),
        token_file.display().to_string(),
    );
    setup.write_config(&config);
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let context = format!("kedge/{}/apps", node());

    let statuses_of = |sha: &str, count: usize| {
        let mut statuses = Vec::new();
        setup.wait_until(
            &format!("{count} status(es) on {sha} in Gitea"),
            Duration::from_secs(90),
            || {
                statuses = gitea.statuses("fleet", sha);
                statuses.len() >= count
            },
        );
        statuses
    };
    let shown = statuses_of(&good, 2);
    assert!(shown.iter().all(|(c, _, _)| *c == context), "{shown:?}");
    let states: Vec<&str> = shown.iter().map(|(_, s, _)| s.as_str()).collect();
    assert_eq!(states, ["pending", "success"], "{shown:?}");
    assert!(
        shown[1].2.starts_with("reconciliation succeeded"),
        "{shown:?}"
    );

    let broken = setup
        .repo
        .commit(&[("apps/kustomization.yaml", BROKEN)], "broken");
    gitea.push(&setup.repo.work, "fleet");
    reconcile_source(&setup);
    let shown = statuses_of(&broken, 1);
    assert_eq!(shown[0].0, context);
    assert_eq!(shown[0].1, "failure", "{shown:?}");
    assert_eq!(
        gitea.statuses("fleet", &good).len(),
        2,
        "the good commit keeps its statuses"
    );
    // Gitea's combined status of the branch is the broken commit's.
    let combined = gitea.api("GET", "/api/v1/repos/kedge/fleet/commits/main/status", None);
    assert_eq!(combined["state"], "failure", "{combined}");
    assert!(
        !setup.log_text().contains(&gitea.token),
        "the token is in the log"
    );
}
