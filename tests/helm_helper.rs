//! kedge-helm, the Helm SDK helper, driven through `kedge::helm::Helper`
//! against the test control plane and its simulated node: install, status,
//! upgrade, rollback, test hooks, uninstall, a failed upgrade, a
//! release left pending by a killed helper, and post-rendering by kedge
//! over the helper's pipe.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge::helm::{Error, Helper, Op, Outcome, Request};
use kube::Api;
use serde_json::json;

use crate::support::{built_tool, cluster, repo_root, TestNamespace};

fn helper() -> Helper {
    static PATH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let path = PATH.get_or_init(|| built_tool("scripts/kedge-helm.sh", "KEDGE_HELM_BIN"));
    match path {
        Ok(path) => Helper::at(path).unwrap_or_else(|err| panic!("{err}")),
        Err(err) => panic!("kedge-helm unavailable: {err}"),
    }
}

fn chart() -> PathBuf {
    repo_root().join("tests/fixtures/helm-release/web")
}

fn request(op: Op, release: &str, namespace: &str) -> Request {
    let mut request = Request::new(op, release, namespace);
    request.kubeconfig = Some(cluster().kubeconfig.clone());
    request.chart = Some(chart());
    request.wait = true;
    request.timeout_seconds = 60;
    request
}

fn with_values(mut request: Request, values: serde_json::Value) -> Request {
    if let serde_json::Value::Object(values) = values {
        request.values = values;
    }
    request
}

async fn run(request: &Request) -> Result<Outcome, Error> {
    helper().run(request, std::future::pending()).await
}

async fn ok(request: &Request) -> Outcome {
    run(request)
        .await
        .unwrap_or_else(|err| panic!("{:?}: {err}", request.op))
}

#[tokio::test]
async fn a_release_installs_upgrades_rolls_back_and_uninstalls_as_helm_stores_it() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "helm-cycle").await;
    let installed = ok(&request(Op::Install, "web", &ns.name)).await;
    let release = installed.release.unwrap_or_default();
    assert_eq!((release.revision, release.status.as_str()), (1, "deployed"));
    assert_eq!(
        (release.chart_name.as_str(), release.chart_version.as_str()),
        ("web", "1.0.0")
    );
    // Waited with kstatus: the simulated node made the Deployment available.
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns.name)
        .get("web")
        .await
        .unwrap_or_else(|err| panic!("the release's Deployment: {err}"));
    let ready = deployment.status.and_then(|s| s.ready_replicas);
    assert_eq!(ready, Some(1));
    let managers = crate::support::field_managers(&deployment.metadata);
    assert!(managers.iter().any(|m| m == "kedge"), "{managers:?}");

    let upgraded = ok(&with_values(
        request(Op::Upgrade, "web", &ns.name),
        json!({"message": "changed", "replicaCount": 2}),
    ))
    .await;
    let after_upgrade = upgraded.release.unwrap_or_default();
    assert_eq!(after_upgrade.revision, 2);
    assert_ne!(after_upgrade.config_digest, release.config_digest);
    let config = Api::<ConfigMap>::namespaced(client.clone(), &ns.name)
        .get("web-config")
        .await
        .unwrap_or_else(|err| panic!("the release's ConfigMap: {err}"));
    assert_eq!(
        config
            .data
            .unwrap_or_default()
            .get("message")
            .map(String::as_str),
        Some("changed")
    );

    let rolled_back = ok(&request(Op::Rollback, "web", &ns.name)).await;
    let after_rollback = rolled_back.release.unwrap_or_default();
    assert_eq!(after_rollback.revision, 3);
    assert_eq!(after_rollback.config_digest, release.config_digest);
    let statuses: Vec<(u32, String)> = rolled_back
        .history
        .iter()
        .map(|r| (r.revision, r.status.clone()))
        .collect();
    assert_eq!(
        statuses,
        [
            (1, "superseded".to_string()),
            (2, "superseded".to_string()),
            (3, "deployed".to_string())
        ]
    );

    let tested = ok(&request(Op::Test, "web", &ns.name)).await;
    let tests = tested.release.unwrap_or_default().tests;
    assert_eq!(tests.len(), 1, "{tests:?}");
    assert_eq!(tests[0].phase, "Succeeded");

    ok(&request(Op::Uninstall, "web", &ns.name)).await;
    let gone = ok(&request(Op::Status, "web", &ns.name)).await;
    assert_eq!(gone.release, None);
    let left = Api::<Deployment>::namespaced(client, &ns.name)
        .get_opt("web")
        .await
        .ok()
        .flatten();
    assert!(left.is_none_or(|d| d.metadata.deletion_timestamp.is_some()));
}

#[tokio::test]
async fn an_upgrade_whose_pods_never_become_ready_fails_and_says_so() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "helm-fail").await;
    ok(&request(Op::Install, "web", &ns.name)).await;
    let mut upgrade = with_values(
        request(Op::Upgrade, "web", &ns.name),
        json!({"podFate": "unready"}),
    );
    upgrade.timeout_seconds = 5;
    let result = run(&upgrade).await;
    let Err(Error::Failed {
        message, outcome, ..
    }) = result
    else {
        panic!("an upgrade that cannot become ready must fail, not: {result:?}");
    };
    let release = outcome.release.unwrap_or_default();
    assert_eq!(
        (release.revision, release.status.as_str()),
        (2, "failed"),
        "{message}"
    );

    let test_fails = with_values(
        request(Op::Test, "web", &ns.name),
        json!({"testFate": "fail"}),
    );
    // The test hook's fate comes from the stored release's values: a
    // failing test needs a release that renders it so.
    let mut failing = with_values(
        request(Op::Upgrade, "web", &ns.name),
        json!({"testFate": "fail"}),
    );
    failing.timeout_seconds = 30;
    ok(&failing).await;
    let Err(Error::Failed { outcome, .. }) = run(&test_fails).await else {
        panic!("a failing test hook must fail the test action");
    };
    let tests = outcome.release.unwrap_or_default().tests;
    assert_eq!(tests.first().map(|t| t.phase.as_str()), Some("Failed"));
}

#[tokio::test]
async fn a_release_left_pending_by_a_killed_helper_is_unlocked() {
    let client = cluster().client().await;
    let ns = TestNamespace::new(&client, "helm-lock").await;
    ok(&request(Op::Install, "web", &ns.name)).await;
    let ns_name = ns.name.clone();
    let stuck = with_values(
        request(Op::Upgrade, "web", &ns.name),
        json!({"podFate": "unready"}),
    );
    let upgrading = tokio::spawn(async move { run(&stuck).await });
    crate::support::eventually(
        Duration::from_secs(60),
        "the upgrade records revision 2 as pending-upgrade",
        || async {
            let status = ok(&request(Op::Status, "web", &ns_name)).await;
            status
                .release
                .is_some_and(|r| r.status == "pending-upgrade")
        },
    )
    .await;
    // Aborting drops the helper's future, which kills it (SIGKILL), as a power cut would.
    upgrading.abort();
    assert!(upgrading.await.is_err_and(|e| e.is_cancelled()));
    let still = ok(&request(Op::Status, "web", &ns.name)).await;
    let still = still.release.unwrap_or_default();
    assert_eq!(
        (still.revision, still.status.as_str()),
        (2, "pending-upgrade")
    );
    let unlocked = ok(&request(Op::Unlock, "web", &ns.name)).await;
    assert_eq!(
        unlocked.release.map(|r| r.status),
        Some("failed".to_string())
    );
    // And the release takes actions again.
    let upgraded = ok(&request(Op::Upgrade, "web", &ns.name)).await;
    assert_eq!(upgraded.release.map(|r| r.revision), Some(3));
}

#[tokio::test]
async fn a_post_render_request_is_answered_by_kedge_over_the_same_pipe() {
    let mut render = Request::new(Op::Render, "web", "default");
    render.chart = Some(chart());
    render.offline = true;
    render.post_render = true;
    let asked = std::sync::Mutex::new(0);
    let retag = |manifest: &str| -> Result<String, String> {
        *asked.lock().expect("count") += 1;
        Ok(manifest.replace("registry.invalid/web:1.0", "registry.invalid/web:9.9"))
    };
    let outcome = helper()
        .run_post_rendering(&render, &retag, std::future::pending())
        .await
        .unwrap_or_else(|err| panic!("render with kedge's post-renderer: {err}"));
    assert!(
        outcome.manifest.contains("image: registry.invalid/web:9.9"),
        "{}",
        outcome.manifest
    );
    assert_eq!(
        *asked.lock().expect("count"),
        1,
        "one manifest, hooks included"
    );

    let refuse = |_: &str| -> Result<String, String> { Err("no such patch target".into()) };
    let refused = helper()
        .run_post_rendering(&render, &refuse, std::future::pending())
        .await;
    let message = match refused {
        Err(Error::Failed { message, .. }) => message,
        other => panic!("a post-renderer's error fails the action: {other:?}"),
    };
    assert!(message.contains("no such patch target"), "{message}");
    // Without a post-renderer, kedge says so rather than hang.
    let Err(Error::Failed { message, .. }) = run(&render).await else {
        panic!("a post-render request without a post-renderer fails");
    };
    assert!(message.contains("no post-renderer"), "{message}");
}

#[tokio::test]
async fn a_missing_chart_is_named_in_the_error() {
    let mut install = request(Op::Install, "web", "default");
    install.chart = Some(PathBuf::from("/nonexistent/chart-9.9.9.tgz"));
    let Err(Error::Failed { message, .. }) = run(&install).await else {
        panic!("a missing chart must fail");
    };
    assert!(
        message.contains("/nonexistent/chart-9.9.9.tgz"),
        "{message}"
    );
}

/// What `helm template` prints for `chart`, or its error.
fn helm_template(chart: &std::path::Path) -> Result<String, String> {
    let helm = built_tool("scripts/helm-cli.sh", "KEDGE_HELM_CLI_BIN")
        .unwrap_or_else(|err| panic!("the helm CLI is unavailable: {err}"));
    let output = std::process::Command::new(helm)
        .args(["template", "release-name"])
        .arg(chart)
        .args(["--namespace", "default"])
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("kedge-helm-cli-cache"),
        )
        .output()
        .unwrap_or_else(|err| panic!("running helm: {err}"));
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// kedge-helm's offline render, laid out as `helm template` prints it.
async fn kedge_render(chart: &std::path::Path) -> Result<String, String> {
    let mut render = Request::new(Op::Render, "release-name", "default");
    render.chart = Some(chart.to_path_buf());
    render.offline = true;
    render.crds = Some(kedge::helm::CrdPolicy::Skip);
    let outcome = run(&render).await.map_err(|err| err.to_string())?;
    let mut text = format!("{}\n", outcome.manifest.trim());
    for hook in &outcome.hooks {
        text.push_str(&format!(
            "---\n# Source: {}\n{}\n",
            hook.path, hook.manifest
        ));
    }
    Ok(text)
}

/// Whether `ours` equals `theirs` except on lines where two renders by
/// helm itself differ (random names and values).
fn equal_but_random(ours: &str, theirs: &str, theirs_again: &str) -> bool {
    let (ours, theirs, again): (Vec<_>, Vec<_>, Vec<_>) = (
        ours.lines().collect(),
        theirs.lines().collect(),
        theirs_again.lines().collect(),
    );
    ours.len() == theirs.len()
        && theirs.len() == again.len()
        && (0..ours.len()).all(|i| ours[i] == theirs[i] || theirs[i] != again[i])
}

/// The charts of the fidelity check: kedge's own test charts, and the
/// Helm module's own command test charts (in Go's module cache once
/// kedge-helm is built).
fn fidelity_charts() -> Vec<PathBuf> {
    let gomodcache = std::process::Command::new("go")
        .args(["env", "GOMODCACHE"])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .unwrap_or_else(|err| panic!("go env GOMODCACHE: {err}"));
    let helm_charts = gomodcache.join("helm.sh/helm/v4@v4.3.1/pkg/cmd/testdata/testcharts");
    let mut charts = Vec::new();
    for dir in [
        repo_root().join("tests/fixtures/helm-release"),
        repo_root().join("tests/fixtures/charts"),
        helm_charts.clone(),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert!(
                dir != helm_charts,
                "Helm's test charts are missing: {}",
                dir.display()
            );
            continue;
        };
        charts.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "tgz")),
        );
    }
    charts.sort();
    charts
}

#[tokio::test]
async fn kedge_helm_renders_every_test_chart_as_helm_template_does() {
    let mut compared = 0;
    let mut mismatches = Vec::new();
    for chart in fidelity_charts() {
        let ours = kedge_render(&chart).await;
        let theirs = helm_template(&chart);
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => {
                compared += 1;
                let again = helm_template(&chart).unwrap_or_default();
                if !equal_but_random(ours, theirs, &again) {
                    mismatches.push(format!(
                        "{}:\n--- kedge-helm\n{ours}\n--- helm template\n{theirs}",
                        chart.display()
                    ));
                }
            }
            (Err(_), Err(_)) => {}
            _ => mismatches.push(format!(
                "{}: kedge-helm {:?}, helm template {:?}",
                chart.display(),
                ours.as_ref().map(|_| "rendered"),
                theirs.as_ref().map(|_| "rendered"),
            )),
        }
    }
    eprintln!("kedge-helm render: {compared} charts compared with helm template");
    assert!(compared >= 20, "too few charts rendered: {compared}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
