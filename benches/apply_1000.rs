//! Apply 1,000 ConfigMaps against the test control plane, and measure how
//! fast drift is reverted. Prints each figure and its ratio to references
//! measured in the same run:
//!
//! - kedge `Manager::apply`, 16 and 1 requests in flight (dry-run of the
//!   whole set, then apply), and a re-apply of the unchanged set;
//! - the floor: bare server-side apply requests from the same client, 16 in
//!   flight, no dry-run (what the Go reference client measured), and the
//!   same requests as dry-runs (what kedge's validation costs);
//! - `kubectl apply --server-side -f <dir>` of the same 1,000 files;
//! - drift: a `kubectl-edit` patch of a managed field, seen by the drift
//!   watch, debounced 50 ms, re-applied; time until the value is back.
//!
//! Run: `KEDGE_TESTCLUSTER_BIN=<path> cargo bench --bench apply_1000`
//! (`KEDGE_BENCH_RUNS`, default 3; `KEDGE_BENCH_KUBECTL=0` skips kubectl).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge::apply::{debounce, inventory, Action, ApplyOptions, Manager, Owner};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::{json, Value};

#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "common/kubectl.rs"]
mod kubectl;

use cluster::{cluster, TestNamespace};

const OBJECTS: usize = 1000;

fn configmaps(ns: &str) -> Vec<Value> {
    (0..OBJECTS)
        .map(|i| {
            json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": { "name": format!("cm-{i:04}"), "namespace": ns },
                "data": { "index": i.to_string(), "payload": "x".repeat(64) }
            })
        })
        .collect()
}

/// CPU time (user + system) of this process so far, from /proc/self/stat
/// (clock ticks of 10 ms, the Linux default USER_HZ): the client's share of
/// the 2 cores it shares with the control plane.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

struct Run {
    kedge_16: f64,
    kedge_1: f64,
    kedge_unchanged: f64,
    floor_16: f64,
    dry_run_16: f64,
}

async fn kedge_apply(
    client: &Client,
    prefix: &str,
    concurrency: usize,
) -> (f64, f64, TestNamespace) {
    let ns = TestNamespace::new(client, prefix).await;
    let manager = Manager::new(client.clone());
    manager.kinds().refresh().await.expect("discovery");
    let owner = Owner::new(&ns.name, "Kustomization");
    let options = ApplyOptions {
        concurrency,
        ..ApplyOptions::default()
    };
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let changes = manager
        .apply(configmaps(&ns.name), &owner, &options)
        .await
        .expect("kedge apply");
    let first = started.elapsed();
    if concurrency > 1 {
        println!("  client CPU, kedge apply: {:.2} s", cpu_seconds() - cpu);
    }
    assert_eq!(changes.count(Action::Created), OBJECTS);
    let started = Instant::now();
    let again = manager
        .apply(configmaps(&ns.name), &owner, &options)
        .await
        .expect("kedge re-apply");
    let unchanged = started.elapsed();
    assert_eq!(again.count(Action::Unchanged), OBJECTS);
    (seconds(first), seconds(unchanged), ns)
}

/// The floor: one server-side apply request per object, 16 in flight
/// (`dry_run`: the same requests as server-side dry-runs).
async fn bare_ssa(client: &Client, prefix: &str, dry_run: bool) -> (f64, TestNamespace) {
    let ns = TestNamespace::new(client, prefix).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let mut params = PatchParams::apply("bench").force();
    params.dry_run = dry_run;
    let objects = configmaps(&ns.name);
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let results: Vec<_> = futures::stream::iter(&objects)
        .map(|o| {
            let name = o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let (api, params) = (&api, &params);
            async move { api.patch(&name, params, &Patch::Apply(o)).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let took = started.elapsed();
    let what = if dry_run { "dry-run" } else { "apply" };
    println!("  client CPU, bare {what}: {:.2} s", cpu_seconds() - cpu);
    assert!(results.iter().all(Result::is_ok), "bare apply failed");
    (seconds(took), ns)
}

async fn kubectl_apply(client: &Client, kubeconfig: &Path) -> (f64, TestNamespace) {
    let ns = TestNamespace::new(client, "bench-kubectl").await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, object) in configmaps(&ns.name).iter().enumerate() {
        let yaml = serde_yaml::to_string(object).expect("yaml");
        std::fs::write(dir.path().join(format!("cm-{i:04}.yaml")), yaml).expect("write");
    }
    let took = kubectl::apply_server_side(dir.path(), kubeconfig, "bench-kubectl");
    (seconds(took), ns)
}

/// Edits a managed field as `kubectl edit` would and times until a
/// drift-watch-driven re-apply has put it back.
async fn drift_revert(client: &Client, samples: usize) -> Vec<f64> {
    let ns = TestNamespace::new(client, "bench-drift").await;
    let manager = Manager::new(client.clone());
    let owner = Owner::new(&ns.name, "Kustomization");
    let set = {
        let ns = ns.name.clone();
        move || {
            vec![json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "drifty", "namespace": ns },
                "data": { "key": "ours" }
            })]
        }
    };
    let applied = manager
        .apply(set(), &owner, &ApplyOptions::default())
        .await
        .expect("apply");
    let drift = manager
        .drift_watch(&inventory::from_changeset(&applied), &owner)
        .await
        .expect("watch");
    let reconciler = {
        let (manager, owner, set) = (manager.clone(), owner.clone(), set.clone());
        tokio::spawn(async move {
            let mut batches = Box::pin(debounce(drift, Duration::from_millis(50)));
            while batches.next().await.is_some() {
                if let Err(err) = manager.apply(set(), &owner, &ApplyOptions::default()).await {
                    eprintln!("re-apply failed: {err}");
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns.name);
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let mut latencies = Vec::new();
    for i in 0..samples {
        let started = Instant::now();
        api.patch(
            "drifty",
            &edit,
            &Patch::Merge(json!({ "data": { "key": format!("edited-{i}") } })),
        )
        .await
        .expect("edit");
        loop {
            let cm = api.get("drifty").await.expect("get");
            let value = cm.data.unwrap_or_default().remove("key");
            if value.as_deref() == Some("ours") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "drift never reverted"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        latencies.push(seconds(started.elapsed()));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    reconciler.abort();
    latencies
}

async fn bench() {
    let cluster = cluster();
    let client = cluster.client().await;
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut keep = Vec::new();
    let mut results = Vec::new();
    for run in 0..runs {
        let (floor_16, ns) = bare_ssa(&client, "bench-floor", false).await;
        keep.push(ns);
        let (dry_run_16, _) = bare_ssa(&client, "bench-dry", true).await;
        let (kedge_16, kedge_unchanged, ns) = kedge_apply(&client, "bench-k16", 16).await;
        keep.push(ns);
        let (kedge_1, _, ns) = kedge_apply(&client, "bench-k1", 1).await;
        keep.push(ns);
        println!(
            "run {run}: floor(16) {floor_16:.3} s | dry-run(16) {dry_run_16:.3} s | kedge(16) {kedge_16:.3} s | kedge(1) {kedge_1:.3} s | kedge re-apply unchanged(16) {kedge_unchanged:.3} s"
        );
        results.push(Run {
            kedge_16,
            kedge_1,
            kedge_unchanged,
            floor_16,
            dry_run_16,
        });
    }
    let pick = |f: fn(&Run) -> f64| median(results.iter().map(f).collect());
    let (floor, k16, k1, unchanged) = (
        pick(|r| r.floor_16),
        pick(|r| r.kedge_16),
        pick(|r| r.kedge_1),
        pick(|r| r.kedge_unchanged),
    );
    println!("\n{OBJECTS} ConfigMaps, median of {runs} runs:");
    let dry_run = pick(|r| r.dry_run_16);
    println!("  bare SSA, 16 in flight (floor)        {floor:7.3} s");
    println!(
        "  bare SSA dry-run, 16 in flight        {dry_run:7.3} s  = {:.2}x floor",
        dry_run / floor
    );
    println!(
        "  kedge apply, 16 in flight             {k16:7.3} s  = {:.2}x floor",
        k16 / floor
    );
    println!(
        "  kedge apply, 1 in flight              {k1:7.3} s  = {:.2}x floor",
        k1 / floor
    );
    println!(
        "  kedge re-apply, unchanged, 16         {unchanged:7.3} s  = {:.2}x floor",
        unchanged / floor
    );

    if std::env::var("KEDGE_BENCH_KUBECTL").as_deref() != Ok("0") {
        let (kubectl, ns) = kubectl_apply(&client, &cluster.kubeconfig).await;
        keep.push(ns);
        println!(
            "  kubectl apply --server-side -f dir    {kubectl:7.3} s  = {:.1}x kedge(16)",
            kubectl / k16
        );
    }

    let latencies = drift_revert(&client, 10).await;
    let max = latencies.iter().cloned().fold(0.0, f64::max);
    println!(
        "\ndrift (kubectl-edit patch → watch → 50 ms debounce → re-apply), {} samples: median {:.0} ms, max {:.0} ms",
        latencies.len(),
        median(latencies.clone()) * 1000.0,
        max * 1000.0
    );
    drop(keep);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}
