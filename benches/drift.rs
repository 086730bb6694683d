//! Drift revert as a user sees it: `kedge run` (source and kustomization
//! interval 1 h, so only the drift watch explains a revert) has applied 10
//! ConfigMaps; another field manager edits one ("kubectl-edit", a merge
//! patch of a managed field); the clock runs from sending the edit until a
//! GET (every 5 ms) shows the declared value again. The daemon's whole
//! path is in it: its watch, the 100 ms quiet period, a full reconcile
//! (artifact, build, dry-run, apply, SQLite).
//!
//! Reference, measured on the same edits in the same run: when a plain
//! watch of the namespace (this process, kube-rs) sees the edit. That is
//! the floor any watch-based revert starts from.
//!
//! Run: `cargo bench --bench drift` (release build; `KEDGE_BENCH_SAMPLES=N`,
//! default 30). Figures go to docs/BENCHMARKS.md.

#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/support/git.rs"]
#[allow(dead_code)]
mod git;
#[path = "../tests/support/http_server.rs"]
#[allow(dead_code)]
mod http_server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use git::FixtureRepo;
use k8s_openapi::api::core::v1::ConfigMap;
use kedge::state::Store;
use kube::api::{Patch, PatchParams};
use kube::runtime::watcher;
use kube::Api;
use serde_json::json;
use tokio::sync::mpsc;

const NAMESPACE: &str = "bench-drift";
const OBJECTS: usize = 10;

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn configmap(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\ndata:\n  key: declared\n")
}

fn start_daemon(root: &Path, repo: &FixtureRepo) -> Daemon {
    let config = root.join("kedge.toml");
    let text = format!(
        "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"1h\"\n\n[kustomization.drift]\nsource = \"git/fleet\"\npath = \"./apps\"\ninterval = \"1h\"\nprune = true\n",
        root.join("state").display().to_string(),
        cluster::cluster().kubeconfig.display().to_string(),
        root.join("kedge.sock").display().to_string(),
        repo.bare.display()
    );
    std::fs::write(&config, text).expect("write config");
    let log = std::fs::File::create(root.join("kedge.log")).expect("log");
    Daemon(
        Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn kedge"),
    )
}

fn wait_applied(root: &Path, commit: &str) {
    let revision = format!("main@sha1:{commit}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let applied = Store::open_read_only(&root.join("state/kedge.db"))
            .ok()
            .and_then(|store| store.kustomization_status("drift").ok().flatten())
            .is_some_and(|s| s.ready && s.last_applied_revision.as_deref() == Some(&revision));
        if applied {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not applied within 120 s; see {}",
            root.join("kedge.log").display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn value(configmaps: &Api<ConfigMap>, name: &str) -> Option<String> {
    let cm = configmaps.get_opt(name).await.ok().flatten()?;
    cm.data.unwrap_or_default().get("key").cloned()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn summary(samples: &mut [Duration]) -> (Duration, Duration, Duration) {
    samples.sort();
    let n = samples.len();
    (samples[n / 2], samples[(n * 9) / 10], samples[n - 1])
}

async fn measure(samples: usize) -> (Vec<Duration>, Vec<Duration>) {
    let client = cluster::cluster().client().await;
    let configmaps: Api<ConfigMap> = Api::namespaced(client, NAMESPACE);

    // The reference: a plain watch of the namespace, timestamping each
    // edited value it sees.
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let watch = watcher::watcher(configmaps.clone(), watcher::Config::default());
    tokio::spawn(async move {
        let mut events = Box::pin(watch);
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(cm)) = event {
                if let Some(v) = cm.data.unwrap_or_default().get("key") {
                    let _ = seen_tx.send((v.clone(), Instant::now()));
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;

    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    let mut reverted = Vec::new();
    let mut seen = Vec::new();
    for i in 0..samples {
        let name = format!("cm-{:02}", i % OBJECTS);
        let marker = format!("edited-{i}");
        let edited = Instant::now();
        configmaps
            .patch(
                &name,
                &edit,
                &Patch::Merge(json!({ "data": { "key": marker } })),
            )
            .await
            .expect("edit");
        let deadline = edited + Duration::from_secs(60);
        while value(&configmaps, &name).await.as_deref() != Some("declared") {
            assert!(
                Instant::now() < deadline,
                "sample {i}: not reverted within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        reverted.push(edited.elapsed());
        while let Ok((v, at)) = seen_rx.try_recv() {
            if v == marker {
                seen.push(at.saturating_duration_since(edited));
            }
        }
        // Apart, so one sample never falls into the previous one's quiet
        // period, nor within the runner's MIN_GAP (1 s) of the previous
        // revert: that measures one edit, as a user makes it.
        tokio::time::sleep(kedge::reconcile::runner::MIN_GAP + Duration::from_millis(200)).await;
    }
    (reverted, seen)
}

fn main() {
    let samples: usize = std::env::var("KEDGE_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let root = tempfile::tempdir().expect("tempdir").keep();
    let repo = FixtureRepo::new(&root, "fleet");
    let mut files = vec![(
        "apps/ns.yaml".to_string(),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {NAMESPACE}\n"),
    )];
    files.extend((0..OBJECTS).map(|i| {
        (
            format!("apps/cm-{i:02}.yaml"),
            configmap(&format!("cm-{i:02}")),
        )
    }));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let commit = repo.commit(&refs, "10 configmaps");
    let daemon = start_daemon(&root, &repo);
    wait_applied(&root, &commit);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut reverted, mut seen) = runtime.block_on(measure(samples));
    drop(daemon);

    let (median, p90, max) = summary(&mut reverted);
    println!("\ndrift revert under `kedge run` ({samples} samples, 1 h intervals, test control plane v1.33.13)");
    println!("{:<58} {:>8} {:>8} {:>8}", "figure", "median", "p90", "max");
    println!(
        "{:<58} {:>8} {:>8} {:>8}",
        "kedge: edit sent → value back (GET every 5 ms)",
        ms(median),
        ms(p90),
        ms(max)
    );
    if seen.len() == reverted.len() {
        let (w_median, w_p90, w_max) = summary(&mut seen);
        println!(
            "{:<58} {:>8} {:>8} {:>8}",
            "reference: edit sent → seen by a plain watch",
            ms(w_median),
            ms(w_p90),
            ms(w_max)
        );
        println!(
            "kedge median − watch median: {} (the 100 ms quiet period, a reconcile, the GET poll)",
            ms(median.saturating_sub(w_median))
        );
    } else {
        println!(
            "reference: the watch saw {} of {} edits",
            seen.len(),
            reverted.len()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
