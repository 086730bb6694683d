//! Scale as a user sees it: `kedge run` with N kustomizations of one Git
//! source (`git daemon` on loopback), each a Namespace and 20 ConfigMaps,
//! against the test control plane. Per N it prints:
//!
//! - the time from spawn until every kustomization is Ready at the commit
//!   (from the state database, polled every 100 ms);
//! - peak RSS (VmHWM) and idle RSS (VmRSS after [`SETTLE`] of quiet);
//! - the watches kedge holds at the API server (its `WATCH` long-running
//!   requests, from the server's /metrics, minus those open before kedge
//!   started) and its TCP connections to the server;
//! - its CPU over an idle window (`KEDGE_BENCH_IDLE_SECONDS`, default 60).
//!
//! References measured in the same run: the floor, bare server-side
//! applies of the same N × 21 objects from this process with kedge's own
//! bound of requests in flight (no dry-run, no Git, no state); and the
//! first N's memory (20 kustomizations by default), to which the others'
//! RSS is compared per kustomization.
//!
//! With `KEDGE_BENCH_OBSERVE=1`, each count runs twice in the same
//! process: without, then with `[agent] metrics` scraped every second
//! during the idle window and an `[alert]` on every object posting to an
//! HTTP server on loopback; it prints the second run's figures against
//! the first's (the cost of metrics and alerting).
//!
//! Run: `cargo bench --bench scale` (`KEDGE_BENCH_SCALE=20,200,1000` picks
//! the counts). Figures go to docs/BENCHMARKS.md.

#[path = "../tests/support/capture.rs"]
#[allow(dead_code)]
mod capture;
#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/support/git.rs"]
#[allow(dead_code)]
mod git;
#[path = "../tests/support/http_server.rs"]
#[allow(dead_code)]
mod http_server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use git::FixtureRepo;
use k8s_openapi::api::core::v1::Namespace;
use kedge::state::Store;
use kube::api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Api, Client};
use serde_json::{json, Value};

/// Objects per kustomization besides its Namespace.
const CONFIGMAPS: usize = 20;
/// A second floor's window, to tell whether the API server here is bound
/// by its CPU (no faster with more in flight) or by round trips.
const WIDE_IN_FLIGHT: usize = 128;
/// Quiet time after all are Ready before idle RSS is read.
const SETTLE: Duration = Duration::from_secs(15);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn namespace_name(prefix: &str, k: usize) -> String {
    format!("{prefix}-{k}")
}

fn objects(prefix: &str, k: usize) -> Vec<Value> {
    let ns = namespace_name(prefix, k);
    let mut objects = vec![json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": ns }
    })];
    objects.extend((1..=CONFIGMAPS).map(|i| {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": format!("c{i}"), "namespace": ns },
            "data": { "a": "b" }
        })
    }));
    objects
}

fn yaml_stream(objects: &[Value]) -> String {
    objects
        .iter()
        .map(|o| serde_yaml::to_string(o).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The floor: every object of `count` kustomizations as one bare
/// server-side apply, namespaces first, `in_flight` at once.
async fn bare_apply(client: &Client, prefix: &str, count: usize, in_flight: usize) -> Duration {
    let started = Instant::now();
    let sets: Vec<Vec<Value>> = (1..=count).map(|k| objects(prefix, k)).collect();
    let (namespaces, configmaps): (Vec<&Value>, Vec<&Value>) = sets
        .iter()
        .flatten()
        .partition(|o| o["kind"] == "Namespace");
    for batch in [namespaces, configmaps] {
        let results: Vec<_> = futures::stream::iter(batch)
            .map(|object| apply_one(client, object))
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 0, "bare apply: {failed} objects refused");
    }
    started.elapsed()
}

async fn apply_one(client: &Client, object: &Value) -> Result<DynamicObject, kube::Error> {
    let kind = object["kind"].as_str().unwrap_or_default();
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind));
    let name = object["metadata"]["name"].as_str().unwrap_or_default();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        name,
        &PatchParams::apply("bench").force(),
        &Patch::Apply(object),
    )
    .await
}

/// Open WATCH requests at the API server, from its /metrics
/// (`apiserver_longrunning_requests`).
async fn server_watches(client: &Client) -> u64 {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("metrics request");
    let text = client.request_text(request).await.unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_longrunning_requests{") && l.contains("verb=\"WATCH\"")
        })
        .filter_map(|l| l.rsplit_once(' '))
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Requests the API server has answered, by verb (`PATCH dry-run` apart),
/// from its /metrics (`apiserver_request_total`).
async fn server_requests(client: &Client) -> BTreeMap<String, u64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("metrics request");
    let text = client.request_text(request).await.unwrap_or_default();
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_string())
    };
    let mut counts = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let (Some(verb), Some((_, value))) = (label(line, "verb"), line.rsplit_once(' ')) else {
            continue;
        };
        let dry_run = label(line, "dry_run").is_some_and(|d| !d.is_empty());
        let key = if dry_run {
            format!("{verb} dry-run")
        } else {
            verb
        };
        *counts.entry(key).or_default() += value.parse::<f64>().unwrap_or(0.0) as u64;
    }
    counts
}

/// What `after` counted beyond `before`, as "VERB n, …".
fn requests_between(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    after
        .iter()
        .map(|(verb, n)| (verb, n - before.get(verb).copied().unwrap_or(0).min(*n)))
        .filter(|(_, n)| *n > 0)
        .map(|(verb, n)| format!("{verb} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// CPU seconds (user + system) of `pid` so far (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<f64> = after_name
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0
}

/// TCP connections of `pid` to 127.0.0.1:`port`.
fn connections(pid: u32, port: u16) -> usize {
    let out = Command::new("ss")
        .args(["-tnp", "state", "established"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let (peer, owner) = (format!("127.0.0.1:{port}"), format!("pid={pid},"));
    out.lines()
        .filter(|l| l.contains(&owner) && l.split_whitespace().nth(3) == Some(peer.as_str()))
        .count()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

struct Figures {
    count: usize,
    ready: Duration,
    floor: Duration,
    /// The floor with [`WIDE_IN_FLIGHT`] requests in flight.
    wide_floor: Duration,
    peak_mib: f64,
    idle_mib: f64,
    /// Of which file-backed: mostly the binary's code.
    idle_file_mib: f64,
    /// CPU seconds the control plane spent on the floor.
    floor_server_cpu: f64,
    /// Requests the API server answered during the floor, and from kedge's
    /// spawn until all were Ready.
    floor_requests: String,
    requests: String,
    cpu_to_ready: Cpu,
    watches: u64,
    connections: usize,
    idle_cpu_percent: f64,
    /// With metrics and alerts: scrapes made in the idle window, their
    /// mean latency, and how long until every first alert was delivered.
    observed: Option<Observed>,
}

/// CPU seconds from kedge's spawn until all were Ready.
struct Cpu {
    kedge: f64,
    server: f64,
}

struct Observed {
    scrapes: usize,
    scrape_ms: f64,
    alerts_delivered: Duration,
}

/// Where the observed run serves metrics and sends alerts.
struct Observe {
    metrics_port: u16,
    alerts: capture::CaptureServer,
}

fn write_repo(root: &Path, prefix: &str, count: usize) -> (FixtureRepo, String) {
    let repo = FixtureRepo::new(root, "fleet");
    for k in 1..=count {
        let dir = repo.work.join(format!("k{k}"));
        std::fs::create_dir_all(&dir).expect("kustomization dir");
        std::fs::write(dir.join("all.yaml"), yaml_stream(&objects(prefix, k))).expect("write");
    }
    let commit = repo.commit_all("scale");
    repo.push();
    (repo, commit)
}

/// Kustomization `k` of run `run`: names of their own per run, or a run
/// would adopt (and prune) the objects an earlier run labelled.
fn kustomization_name(run: usize, k: usize) -> String {
    format!("r{run}k{k}")
}

fn write_config(
    root: &Path,
    run: usize,
    git_port: u16,
    count: usize,
    observe: Option<&Observe>,
) -> PathBuf {
    let metrics = observe.map_or(String::new(), |o| {
        format!("metrics = \"127.0.0.1:{}\"\n", o.metrics_port)
    });
    let mut text = format!(
        "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n{metrics}\n[git.fleet]\nurl = \"git://127.0.0.1:{git_port}/fleet.git\"\ninterval = \"1h\"\n",
        root.join("state").display().to_string(),
        cluster::cluster().kubeconfig.display().to_string(),
        root.join("kedge.sock").display().to_string(),
    );
    if let Some(observe) = observe {
        text.push_str(&format!(
            "\n[alert.all]\nprovider = \"slack\"\naddress = {:?}\nevents = [\"*\"]\n",
            observe.alerts.url("/hook")
        ));
    }
    for k in 1..=count {
        text.push_str(&format!(
            "\n[kustomization.{}]\nsource = \"git/fleet\"\npath = \"./k{k}\"\ninterval = \"1h\"\nprune = true\n",
            kustomization_name(run, k)
        ));
    }
    let config = root.join("kedge.toml");
    std::fs::write(&config, text).expect("write config");
    config
}

fn all_ready(db: &Path, revision: &str, count: usize) -> bool {
    let Ok(store) = Store::open_read_only(db) else {
        return false;
    };
    let statuses = store.kustomization_statuses().unwrap_or_default();
    statuses
        .iter()
        .filter(|s| s.ready && s.last_applied_revision.as_deref() == Some(revision))
        .count()
        == count
}

/// Deletes the namespaces named `prefix-*` and waits until they are gone,
/// so a run starts on a cluster without the last one's objects (kedge's
/// drift watches list every labelled object of their kinds).
async fn delete_namespaces(client: &Client, prefix: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ours = |ns: &Namespace| {
        ns.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(&format!("{prefix}-")))
    };
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .iter()
        .filter(|ns| ours(ns))
        .filter_map(|ns| ns.metadata.name.clone())
        .collect();
    futures::stream::iter(&names)
        .for_each_concurrent(16, |name| {
            let namespaces = &namespaces;
            async move {
                let _ = namespaces.delete(name, &DeleteParams::default()).await;
            }
        })
        .await;
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let left = namespaces
            .list(&ListParams::default())
            .await
            .map(|l| l.items.iter().filter(|ns| ours(ns)).count())
            .unwrap_or(usize::MAX);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} namespaces {prefix}-* still there after 900 s"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Scrapes `/metrics` every second until `stop`: how many, mean latency.
async fn scrape_every_second(port: u16, stop: tokio::sync::watch::Receiver<bool>) -> (usize, f64) {
    kedge::source::install_tls_provider();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (mut scrapes, mut total) = (0usize, Duration::ZERO);
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    while !*stop.borrow() {
        ticks.tick().await;
        let started = Instant::now();
        let ok = match client.get(&url).send().await {
            Ok(response) => response
                .text()
                .await
                .is_ok_and(|t| t.contains("gotk_reconcile_condition")),
            Err(_) => false,
        };
        assert!(ok, "scraping {url} failed");
        total += started.elapsed();
        scrapes += 1;
    }
    (
        scrapes,
        total.as_secs_f64() * 1000.0 / scrapes.max(1) as f64,
    )
}

async fn measure(
    client: &Client,
    run: usize,
    count: usize,
    idle: Duration,
    observe: Option<&Observe>,
) -> Figures {
    let floor_prefix = format!("floor{run}");
    let server_pid = cluster::cluster().pid();
    let server_cpu = cpu_seconds(server_pid);
    let requests_before = server_requests(client).await;
    let floor = bare_apply(client, &floor_prefix, count, kedge::apply::MAX_IN_FLIGHT).await;
    let floor_server_cpu = cpu_seconds(server_pid) - server_cpu;
    let floor_requests = requests_between(&requests_before, &server_requests(client).await);
    delete_namespaces(client, &floor_prefix).await;
    let wide_floor = bare_apply(client, &floor_prefix, count, WIDE_IN_FLIGHT).await;
    delete_namespaces(client, &floor_prefix).await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = scratch.path();
    let prefix = format!("scale{run}");
    let (_repo, commit) = write_repo(root, &prefix, count);
    let daemon_git = git::git_daemon(root);
    let config = write_config(root, run, daemon_git.port, count, observe);
    let port: u16 = cluster::cluster()
        .server
        .rsplit_once(':')
        .and_then(|(_, p)| p.trim_end_matches('/').parse().ok())
        .expect("API server port");
    let watches_before = server_watches(client).await;
    let log = std::fs::File::create(root.join("kedge.log")).expect("log");
    let server_cpu = cpu_seconds(server_pid);
    let requests_before = server_requests(client).await;
    let started = Instant::now();
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config"])
            .arg(&config)
            .env("KEDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge"),
    );
    let pid = daemon.0.id();
    let (db, revision) = (root.join("state/kedge.db"), format!("main@sha1:{commit}"));
    let deadline = started + Duration::from_secs(600);
    while !all_ready(&db, &revision, count) {
        assert!(
            Instant::now() < deadline,
            "{count} kustomizations not all Ready within 600 s; see {}",
            root.join("kedge.log").display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready = started.elapsed();
    let cpu_to_ready = Cpu {
        kedge: cpu_seconds(pid),
        server: cpu_seconds(server_pid) - server_cpu,
    };
    let requests = requests_between(&requests_before, &server_requests(client).await);
    // Every kustomization's first outcome, and the source's, is an alert.
    let alerts_delivered = match observe {
        Some(observe) => {
            while observe.alerts.captured().len() < count + 1 {
                assert!(
                    Instant::now() < deadline,
                    "alerts not all delivered within 600 s"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(started.elapsed())
        }
        None => None,
    };
    tokio::time::sleep(SETTLE).await;
    let idle_kib = status_kib(pid, "VmRSS:");
    let idle_file_kib = status_kib(pid, "RssFile:");
    let watches = server_watches(client).await.saturating_sub(watches_before);
    let connections = connections(pid, port);
    let cpu_before = cpu_seconds(pid);
    let (stop_scraping, scraping) = tokio::sync::watch::channel(false);
    let scraper = observe.map(|o| tokio::spawn(scrape_every_second(o.metrics_port, scraping)));
    tokio::time::sleep(idle).await;
    let idle_cpu_percent = (cpu_seconds(pid) - cpu_before) / idle.as_secs_f64() * 100.0;
    let _ = stop_scraping.send(true);
    let observed = match (scraper, alerts_delivered) {
        (Some(scraper), Some(alerts_delivered)) => {
            let (scrapes, scrape_ms) = scraper.await.expect("scraper");
            Some(Observed {
                scrapes,
                scrape_ms,
                alerts_delivered,
            })
        }
        _ => None,
    };
    let peak_kib = status_kib(pid, "VmHWM:");
    drop(daemon);
    delete_namespaces(client, &prefix).await;
    Figures {
        count,
        ready,
        floor,
        wide_floor,
        peak_mib: mib(peak_kib),
        idle_mib: mib(idle_kib),
        idle_file_mib: mib(idle_file_kib),
        floor_server_cpu,
        floor_requests,
        requests,
        cpu_to_ready,
        watches,
        connections,
        idle_cpu_percent,
        observed,
    }
}

/// The observed run against the plain one of the same count.
fn print_cost(with: &Figures, without: &Figures) {
    let Some(observed) = &with.observed else {
        return;
    };
    println!(
        "{n} kustomizations with [agent] metrics (scraped every 1 s: {scrapes} scrapes, {scrape_ms:.1} ms mean) and an alert on every object (all {alerts} first alerts delivered {delivered:.2} s after start), against the same count without, same process:\n  all Ready        {ready:7.2} s vs {ready0:.2} s = {ratio:.2}x\n  RSS              idle {idle:.1} MiB vs {idle0:.1} MiB ({didle:+.1} MiB), peak {peak:.0} MiB vs {peak0:.0} MiB\n  idle CPU         {cpu:.2} % vs {cpu0:.2} % of a core ({dcpu:+.2} points)",
        n = with.count,
        scrapes = observed.scrapes,
        scrape_ms = observed.scrape_ms,
        alerts = with.count + 1,
        delivered = observed.alerts_delivered.as_secs_f64(),
        ready = with.ready.as_secs_f64(),
        ready0 = without.ready.as_secs_f64(),
        ratio = with.ready.as_secs_f64() / without.ready.as_secs_f64(),
        idle = with.idle_mib,
        idle0 = without.idle_mib,
        didle = with.idle_mib - without.idle_mib,
        peak = with.peak_mib,
        peak0 = without.peak_mib,
        cpu = with.idle_cpu_percent,
        cpu0 = without.idle_cpu_percent,
        dcpu = with.idle_cpu_percent - without.idle_cpu_percent,
    );
}

fn print(f: &Figures, reference: &Figures) {
    let per_k = |mib: f64, r: &Figures| mib / r.count as f64;
    let growth = if f.count > reference.count {
        format!(
            " ({:.3} MiB per kustomization beyond the {}-kustomization run)",
            (f.idle_mib - reference.idle_mib) / (f.count - reference.count) as f64,
            reference.count
        )
    } else {
        format!(" ({:.3} MiB per kustomization)", per_k(f.idle_mib, f))
    };
    println!(
        "{n} kustomizations ({objects} objects):\n  all Ready        {ready:7.2} s  = {ratio:.2}x the floor (bare SSA of the same objects, {inflight} in flight: {floor:.2} s; {wide} in flight: {wide_floor:.2} s)\n  CPU until Ready  kedge {kcpu:.2} s, control plane {scpu:.2} s (the floor cost the control plane {fcpu:.2} s)\n  requests         until Ready: {requests}; floor: {floor_requests}\n  RSS              idle {idle:.0} MiB{growth} of which {file:.0} MiB file-backed (code), peak {peak:.0} MiB\n  API server       {watches} watches, {conns} TCP connections\n  idle CPU         {cpu:.2} % of a core",
        n = f.count,
        objects = f.count * (CONFIGMAPS + 1),
        ready = f.ready.as_secs_f64(),
        ratio = f.ready.as_secs_f64() / f.floor.as_secs_f64(),
        inflight = kedge::apply::MAX_IN_FLIGHT,
        floor = f.floor.as_secs_f64(),
        wide = WIDE_IN_FLIGHT,
        wide_floor = f.wide_floor.as_secs_f64(),
        kcpu = f.cpu_to_ready.kedge,
        scpu = f.cpu_to_ready.server,
        fcpu = f.floor_server_cpu,
        requests = f.requests,
        floor_requests = f.floor_requests,
        file = f.idle_file_mib,
        idle = f.idle_mib,
        peak = f.peak_mib,
        watches = f.watches,
        conns = f.connections,
        cpu = f.idle_cpu_percent,
    );
}

async fn bench() {
    let counts: Vec<usize> = std::env::var("KEDGE_BENCH_SCALE")
        .unwrap_or_else(|_| "20,200,1000".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();
    let idle = Duration::from_secs(
        std::env::var("KEDGE_BENCH_IDLE_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let observe = std::env::var_os("KEDGE_BENCH_OBSERVE").is_some();
    let client = cluster::cluster().client().await;
    let mut all = Vec::new();
    for (run, count) in counts.into_iter().enumerate() {
        let load_before = load();
        let figures = measure(&client, run * 2, count, idle, None).await;
        println!("(load average {load_before} before, {} after)", load());
        print(&figures, all.first().unwrap_or(&figures));
        if observe {
            let with = Observe {
                metrics_port: free_port(),
                alerts: capture::CaptureServer::start(0),
            };
            let observed = measure(&client, run * 2 + 1, count, idle, Some(&with)).await;
            println!("(load average {})", load());
            print_cost(&observed, &figures);
        }
        all.push(figures);
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(bench());
}
