//! Apply 1,000 ConfigMaps against the test control plane. Prints each
//! figure and its ratio to references measured in the same run:
//!
//! - kedge `Manager::apply` of a new set with its default window of
//!   requests in flight (`ApplyOptions::default()`), with the floor's 16
//!   and with 1 (dry-run of the whole set, then apply), timed from a fresh `Manager` (its API
//!   discovery included, as after a start);
//! - a re-apply of the unchanged set by the same `Manager` (its memo warm,
//!   as every interval reconcile of a running daemon) and by a fresh one
//!   (memo and discovery cold, as the first reconcile after a restart);
//! - the floor: bare server-side apply requests from the same client, 16 in
//!   flight, no dry-run (what the Go reference client measured), the same
//!   with kedge's window, and the same requests as dry-runs (16 in flight):
//!   the like-for-like reference of a re-apply;
//! - `kubectl apply --server-side -f <dir>` of the same 1,000 files, once
//!   per run (median).
//!
//! Drift revert is measured through the daemon by `benches/drift.rs`.
//!
//! Run: `KEDGE_TESTCLUSTER_BIN=<path> cargo bench --bench apply_1000`
//! (`KEDGE_BENCH_RUNS`, default 3; `KEDGE_BENCH_KUBECTL=0` skips kubectl).

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge::apply::{Action, ApplyOptions, Manager, Owner};
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
    kedge_default: f64,
    kedge_16: f64,
    kedge_1: f64,
    kedge_unchanged: f64,
    kedge_unchanged_restarted: f64,
    floor_16: f64,
    floor_window: f64,
    dry_run_16: f64,
    kubectl: Option<f64>,
}

/// Seconds of kedge's first apply, of a re-apply by the same `Manager`
/// and of a re-apply by a fresh one.
struct KedgeTimes {
    first: f64,
    unchanged: f64,
    unchanged_restarted: f64,
}

async fn kedge_apply(
    client: &Client,
    prefix: &str,
    concurrency: usize,
) -> (KedgeTimes, TestNamespace) {
    let ns = TestNamespace::new(client, prefix).await;
    let owner = Owner::new(&ns.name, "Kustomization");
    let options = ApplyOptions {
        concurrency,
        ..ApplyOptions::default()
    };
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let manager = Manager::new(client.clone());
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
    let started = Instant::now();
    let restarted = Manager::new(client.clone());
    let again = restarted
        .apply(configmaps(&ns.name), &owner, &options)
        .await
        .expect("kedge re-apply after a restart");
    let unchanged_restarted = started.elapsed();
    assert_eq!(again.count(Action::Unchanged), OBJECTS);
    let times = KedgeTimes {
        first: seconds(first),
        unchanged: seconds(unchanged),
        unchanged_restarted: seconds(unchanged_restarted),
    };
    (times, ns)
}

/// The floor: one server-side apply request per object, `in_flight` at
/// once (`dry_run`: the same requests as server-side dry-runs).
async fn bare_ssa(
    client: &Client,
    prefix: &str,
    dry_run: bool,
    in_flight: usize,
) -> (f64, TestNamespace) {
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
        .buffer_unordered(in_flight)
        .collect()
        .await;
    let took = started.elapsed();
    let what = if dry_run { "dry-run" } else { "apply" };
    let what = format!("{what} ({in_flight} in flight)");
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

async fn bench() {
    let cluster = cluster();
    let client = cluster.client().await;
    let runs: usize = std::env::var("KEDGE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let mut keep = Vec::new();
    let mut results = Vec::new();
    let with_kubectl = std::env::var("KEDGE_BENCH_KUBECTL").as_deref() != Ok("0");
    let window = ApplyOptions::default().concurrency;
    for run in 0..runs {
        let (floor_16, ns) = bare_ssa(&client, "bench-floor", false, 16).await;
        keep.push(ns);
        let (floor_window, ns) = bare_ssa(&client, "bench-floorw", false, window).await;
        keep.push(ns);
        let (dry_run_16, _) = bare_ssa(&client, "bench-dry", true, 16).await;
        let (kw, ns) = kedge_apply(&client, "bench-kw", window).await;
        keep.push(ns);
        let (k16, ns) = kedge_apply(&client, "bench-k16", 16).await;
        keep.push(ns);
        let (k1, ns) = kedge_apply(&client, "bench-k1", 1).await;
        keep.push(ns);
        let kubectl = if with_kubectl {
            let (took, ns) = kubectl_apply(&client, &cluster.kubeconfig).await;
            keep.push(ns);
            Some(took)
        } else {
            None
        };
        println!(
            "run {run}: floor(16) {floor_16:.3} s | floor({window}) {floor_window:.3} s | dry-run(16) {dry_run_16:.3} s | kedge({window}) {:.3} s | kedge(16) {:.3} s | kedge(1) {:.3} s | re-apply({window}) {:.3} s | re-apply after restart({window}) {:.3} s | kubectl {kubectl:.3?} s",
            kw.first, k16.first, k1.first, kw.unchanged, kw.unchanged_restarted
        );
        results.push(Run {
            kedge_default: kw.first,
            kedge_16: k16.first,
            kedge_1: k1.first,
            kedge_unchanged: kw.unchanged,
            kedge_unchanged_restarted: kw.unchanged_restarted,
            floor_16,
            floor_window,
            dry_run_16,
            kubectl,
        });
    }
    let pick = |f: fn(&Run) -> f64| median(results.iter().map(f).collect());
    let (floor, kw, k1, unchanged) = (
        pick(|r| r.floor_16),
        pick(|r| r.kedge_default),
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
    let floor_window = pick(|r| r.floor_window);
    println!(
        "  bare SSA, {window:2} in flight               {floor_window:7.3} s  = {:.2}x floor",
        floor_window / floor
    );
    println!(
        "  kedge apply, {window:2} in flight            {kw:7.3} s  = {:.2}x floor ({:.2}x bare SSA with the same window)",
        kw / floor,
        kw / floor_window
    );
    let k16 = pick(|r| r.kedge_16);
    println!(
        "  kedge apply, 16 in flight             {k16:7.3} s  = {:.2}x floor",
        k16 / floor
    );
    println!(
        "  kedge apply, 1 in flight              {k1:7.3} s  = {:.2}x floor",
        k1 / floor
    );
    let restarted = pick(|r| r.kedge_unchanged_restarted);
    println!(
        "  kedge re-apply, unchanged, {window:2}         {unchanged:7.3} s  = {:.2}x bare dry-run (memo warm: same Manager)",
        unchanged / dry_run
    );
    println!(
        "  kedge re-apply after a restart, {window:2}    {restarted:7.3} s  = {:.2}x bare dry-run (fresh Manager: memo and discovery cold)",
        restarted / dry_run
    );
    if with_kubectl {
        let kubectl = median(results.iter().filter_map(|r| r.kubectl).collect());
        println!(
            "  kubectl apply --server-side -f dir    {kubectl:7.3} s  = {:.1}x kedge({window})",
            kubectl / kw
        );
    }
    drop(keep);
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}
