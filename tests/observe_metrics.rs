//! `[agent] metrics`: `/metrics` scraped over HTTP and parsed by a
//! Prometheus text-format parser while `kedge run` reconciles a
//! kustomization against the test control plane; `kedge metrics`; the
//! loopback rule of the config.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kedge::config::Config;
use kube::api::{Patch, PatchParams};
use kube::Api;
use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

use crate::daemon_common::{stderr, stdout, Setup};
use crate::support::{cluster, TestNamespace};

/// A port nothing listens on now (the daemon binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn parse(text: &str) -> Scrape {
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text format")
}

async fn scrape(port: u16) -> Scrape {
    kedge::source::install_tls_provider();
    let response = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.expect("metrics body"))
}

/// The value of the sample of `metric` whose labels include `labels`; a
/// histogram's value is its count.
fn value(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches =
        |s: &&Sample| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v));
    scrape.samples.iter().find(matches).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
        Value::Summary(_) => f64::NAN,
    })
}

fn configmap(name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: \"{value}\"\n"
    )
}

async fn eventually_scraped(
    setup: &Setup,
    port: u16,
    what: &str,
    mut holds: impl FnMut(&Scrape) -> bool,
) -> Scrape {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let scraped = scrape(port).await;
        if holds(&scraped) {
            return scraped;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}; last scrape: {:?}\nkedge log:\n{}",
            scraped
                .samples
                .iter()
                .map(|s| &s.metric)
                .collect::<Vec<_>>(),
            setup.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn metrics_are_served_on_loopback_and_follow_reconciles_and_drift() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "metrics").await;
    let port = free_port();
    let agent = format!(
        "kubeconfig = {:?}\nmetrics = \"127.0.0.1:{port}\"\n",
        cluster().kubeconfig.display().to_string()
    );
    let kustomization = format!(
        "[kustomization.metrics-apps]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\nretry_interval = \"1h\"\nprune = true\ntarget_namespace = \"{}\"\n",
        ns.name
    );
    let setup = Setup::new(&agent, &kustomization);
    setup.repo.commit(
        &[
            ("apps/a.yaml", &configmap("a", "one")),
            ("apps/b.yaml", &configmap("b", "one")),
        ],
        "one",
    );
    let _daemon = setup.start(&[]);
    setup.wait_ready();
    let k = [("kind", "kustomization"), ("name", "metrics-apps")];
    let applied = [("kustomization", "metrics-apps")];
    let first = eventually_scraped(&setup, port, "the first apply", |s| {
        value(
            s,
            "gotk_reconcile_condition",
            &[k[0], k[1], ("type", "Ready"), ("status", "True")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &first,
            "gotk_reconcile_condition",
            &[k[0], k[1], ("status", "False")]
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &first,
            "kedge_apply_objects_total",
            &[applied[0], ("action", "created")]
        ),
        Some(2.0)
    );
    assert_eq!(value(&first, "gotk_suspend_status", &k), Some(0.0));
    let git = [("kind", "git"), ("name", "fleet")];
    assert_eq!(
        value(
            &first,
            "gotk_reconcile_condition",
            &[git[0], git[1], ("status", "True")]
        ),
        Some(1.0)
    );
    assert!(value(&first, "kedge_artifact_size_bytes", &git).is_some_and(|size| size > 0.0));
    assert!(value(&first, "kedge_source_fetch_duration_seconds", &git).is_some_and(|n| n >= 1.0));
    let runs = value(&first, "gotk_reconcile_duration_seconds", &k).unwrap_or(0.0);
    assert!(runs >= 1.0, "{runs}");
    let now = kedge::state::now_millis() as f64 / 1000.0;
    assert!(value(&first, "kedge_last_success_timestamp_seconds", &k)
        .is_some_and(|at| at > now - 120.0 && at <= now + 1.0));
    assert!(value(&first, "process_resident_memory_bytes", &[]).is_some_and(|rss| rss > 1e6));
    assert!(value(&first, "process_cpu_seconds_total", &[]).is_some_and(|cpu| cpu > 0.0));

    // A new revision: one object configured, one unchanged, one more run.
    setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "two"))], "two");
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let second = eventually_scraped(&setup, port, "the second apply", |s| {
        value(
            s,
            "kedge_apply_objects_total",
            &[applied[0], ("action", "configured")],
        ) == Some(1.0)
    })
    .await;
    assert_eq!(
        value(
            &second,
            "kedge_apply_objects_total",
            &[applied[0], ("action", "unchanged")]
        ),
        Some(1.0)
    );
    assert!(value(&second, "gotk_reconcile_duration_seconds", &k).unwrap_or(0.0) > runs);

    // Drift: an edit by another field manager is counted and reverted.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    configmaps
        .patch(
            "b",
            &PatchParams::apply("kubectl-edit").force(),
            &Patch::Apply(&json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": { "name": "b" }, "data": { "key": "edited" }
            })),
        )
        .await
        .expect("edit by another manager");
    eventually_scraped(&setup, port, "the drift counted and reverted", |s| {
        value(s, "kedge_drift_corrections_total", &k).is_some_and(|n| n >= 1.0)
            && value(
                s,
                "kedge_apply_objects_total",
                &[applied[0], ("action", "configured")],
            ) == Some(2.0)
    })
    .await;

    dashboard_reads_only_served_metrics(&scrape(port).await);

    // `kedge metrics` prints the same metrics once.
    let out = setup.cli(&["metrics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let printed = parse(&stdout(&out));
    assert_eq!(
        value(
            &printed,
            "gotk_reconcile_condition",
            &[k[0], k[1], ("status", "True")]
        ),
        Some(1.0)
    );
    assert!(value(&printed, "kedge_drift_corrections_total", &k).is_some_and(|n| n >= 1.0));

    // Only /metrics is served, and only to GET.
    let other = reqwest::get(format!("http://127.0.0.1:{port}/other"))
        .await
        .expect("GET /other");
    assert_eq!(other.status(), 404);
    let post = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/metrics"))
        .body("x")
        .send()
        .await
        .expect("POST /metrics");
    assert_eq!(post.status(), 405);
}

/// Every metric a query of the Grafana dashboard names is served.
fn dashboard_reads_only_served_metrics(scraped: &Scrape) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/grafana/kedge-dashboard.json");
    let dashboard = std::fs::read_to_string(&path).expect("the Grafana dashboard");
    let names = regex::Regex::new(r"\b(?:gotk|kedge|process)_[a-z_]+").expect("regex");
    let served = |name: &str| {
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        scraped.samples.iter().any(|s| s.metric == family)
    };
    let mut queried: Vec<&str> = names.find_iter(&dashboard).map(|m| m.as_str()).collect();
    queried.sort_unstable();
    queried.dedup();
    assert!(queried.len() >= 8, "{queried:?}");
    let missing: Vec<&&str> = queried.iter().filter(|name| !served(name)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics kedge does not serve: {missing:?}"
    );
}

#[test]
fn kedge_metrics_reads_the_database_when_the_daemon_is_stopped() {
    let setup = Setup::new("", "");
    setup
        .repo
        .commit(&[("apps/a.yaml", &configmap("a", "one"))], "one");
    let mut daemon = setup.start(&[]);
    setup.wait_ready();
    let out = setup.cli(&["reconcile", "source", "git/fleet"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    daemon.stop();
    let out = setup.cli(&["metrics"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is not running"), "{}", stderr(&out));
    let printed = parse(&stdout(&out));
    let git = [("kind", "git"), ("name", "fleet")];
    assert_eq!(
        value(
            &printed,
            "gotk_reconcile_condition",
            &[git[0], git[1], ("status", "True")]
        ),
        Some(1.0)
    );
    assert!(value(&printed, "kedge_artifact_size_bytes", &git).is_some_and(|s| s > 0.0));
    // The CLI's own process is not the daemon's.
    assert_eq!(value(&printed, "process_resident_memory_bytes", &[]), None);
}

fn parsed(agent: &str) -> Result<Config, String> {
    Config::parse(Path::new("kedge.toml"), &format!("[agent]\n{agent}\n"))
        .map_err(|err| err.to_string())
}

#[test]
fn metrics_listen_on_loopback_unless_remote_is_allowed() {
    let local = parsed("metrics = \"127.0.0.1:9797\"").map(|c| c.agent.metrics);
    assert_eq!(local, Ok("127.0.0.1:9797".parse().ok()));
    assert_eq!(
        parsed("metrics = \"[::1]:9797\"").map(|c| c.agent.metrics),
        Ok("[::1]:9797".parse().ok())
    );
    let remote = parsed("metrics = \"0.0.0.0:9797\"");
    let message = remote.err().unwrap_or_default();
    assert!(
        message.contains("kedge.toml:2:11: agent.metrics")
            && message.contains("metrics_allow_remote = true"),
        "{message}"
    );
    let allowed = parsed("metrics = \"0.0.0.0:9797\"\nmetrics_allow_remote = true");
    assert_eq!(
        allowed.map(|c| c.agent.metrics),
        Ok("0.0.0.0:9797".parse().ok())
    );
    let bad = parsed("metrics = \"localhost\"").err().unwrap_or_default();
    assert!(bad.contains("not an address and port"), "{bad}");
    assert_eq!(parsed("").map(|c| c.agent.metrics), Ok(None));
}
