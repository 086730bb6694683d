//! kedge-helm, the Helm SDK helper, driven through `kedge::helm::Helper`
//! against the test control plane and its simulated node: install, status,
//! upgrade, rollback, test hooks, uninstall, a failed upgrade, and a
//! release left pending by a killed helper.

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
    let Err(Error::Failed {
        message, outcome, ..
    }) = run(&upgrade).await
    else {
        panic!("an upgrade that cannot become ready must fail");
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
