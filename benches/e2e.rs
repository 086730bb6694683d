//! End-to-end figures of `kedge run` against the test control plane, the
//! ones DESIGN.md compares with Flux:
//!
//! - first sync of 20 ConfigMaps after declaring a source and a kustomization
//!   (spawn → applied), against `git clone --depth 1` + `kubectl apply
//!   --server-side` of the same files in the same run;
//! - commit → applied after a reconcile request (`kedge reconcile
//!   kustomization NAME --with-source`);
//! - a new commit adding 1,000 ConfigMaps to one of 20 kustomizations, then a
//!   request → applied, against `kubectl apply --server-side` of the same
//!   files;
//! - idle RSS with 20 kustomizations, and RSS after the 1,000 objects.
//!
//! Flux's figures are constants from DESIGN.md (measured on kind on this
//! machine, never in this run): the table says so next to each.
//!
//! Run: `cargo bench --bench e2e` (prints a table; figures go to
//! docs/BENCHMARKS.md). Needs `kubectl` on PATH for the references.

#[path = "common/applied.rs"]
mod applied;
#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/support/git.rs"]
#[allow(dead_code)]
mod git;
#[path = "../tests/support/http_server.rs"]
#[allow(dead_code)]
mod http_server;
#[path = "common/kubectl.rs"]
mod kubectl;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git::FixtureRepo;
use kedge::state::Store;

/// Long: every figure after the first sync starts with a reconcile request,
/// as `kedge reconcile kustomization NAME --with-source` sends it.
const SOURCE_INTERVAL: &str = "1h";

/// The benchmark's files: removed when the run completes.
struct Scratch(PathBuf);

impl Scratch {
    fn path(&self) -> &Path {
        &self.0
    }
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn configmap(namespace: &str, name: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  key: \"{value}\"\n")
}

fn kustomization_table(name: &str, path: &str) -> String {
    format!("[kustomization.{name}]\nsource = \"git/fleet\"\npath = \"{path}\"\ninterval = \"1h\"\nprune = true\n\n")
}

struct Run {
    root: PathBuf,
    repo: FixtureRepo,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Run {
    fn new(root: &Path, kustomizations: &str) -> Run {
        let repo = FixtureRepo::new(root, "fleet");
        let state_dir = root.join("state");
        let config = root.join("kedge.toml");
        let text = format!(
            "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\n\n[git.fleet]\nurl = \"file://{}\"\ninterval = \"{SOURCE_INTERVAL}\"\n\n{kustomizations}",
            state_dir.display().to_string(),
            cluster::cluster().kubeconfig.display().to_string(),
            root.join("kedge.sock").display().to_string(),
            repo.bare.display()
        );
        std::fs::write(&config, text).expect("write config");
        Run {
            root: root.to_path_buf(),
            repo,
            config,
            state_dir,
        }
    }

    fn start(&self) -> Daemon {
        let log = std::fs::File::create(self.root.join("kedge.log")).expect("log");
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_kedge"))
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn kedge"),
        )
    }

    /// Asks the daemon to fetch the source and reconcile `name` now, and
    /// waits for its reply (sent once the outcome is recorded).
    fn request(&self, name: &str) {
        let status = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args([
                "reconcile",
                "kustomization",
                name,
                "--with-source",
                "--socket",
            ])
            .arg(self.root.join("kedge.sock"))
            .stdout(Stdio::null())
            .status()
            .expect("run kedge reconcile");
        assert!(status.success(), "kedge reconcile {name} failed");
    }

    /// Waits until every kustomization in `names` is Ready at `commit`.
    fn wait_applied(&self, names: &[String], commit: &str) {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        applied::wait_applied(
            &self.state_dir,
            &names,
            commit,
            Duration::from_secs(120),
            &self.root.join("kedge.log"),
        );
    }
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn namespace_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    let cluster = cluster::cluster();
    let kubeconfig = cluster.kubeconfig.clone();
    // Kept when a step fails, so its kedge.log can be read.
    let scratch = tempfile::tempdir().expect("tempdir");
    let scratch_path = scratch.keep();
    let scratch = Scratch(scratch_path);
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // 1. First sync of 20 ConfigMaps.
    let root = scratch.path().join("first");
    std::fs::create_dir_all(&root).expect("mkdir");
    let run = Run::new(&root, &kustomization_table("apps", "./apps"));
    let mut files = vec![(
        "apps/00-namespace.yaml".to_string(),
        namespace_yaml("bench-first"),
    )];
    files.extend((0..20).map(|i| {
        (
            format!("apps/cm-{i:02}.yaml"),
            configmap("bench-first", &format!("cm-{i:02}"), "1"),
        )
    }));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let commit = run.repo.commit(&refs, "20 configmaps");
    let started = Instant::now();
    let daemon = run.start();
    run.wait_applied(&["apps".to_string()], &commit);
    let kedge_first = started.elapsed();
    let mut request_latencies = Vec::new();
    for round in 0..5 {
        let commit = run.repo.commit(
            &[(
                "apps/cm-00.yaml",
                &configmap("bench-first", "cm-00", &format!("v{round}")),
            )],
            "change one",
        );
        let started = Instant::now();
        run.request("apps");
        run.wait_applied(&["apps".to_string()], &commit);
        request_latencies.push(started.elapsed());
    }
    request_latencies.sort();
    drop(daemon);
    let reference_dir = root.join("reference");
    let started = Instant::now();
    let cloned = Command::new("git")
        .args(["clone", "-q", "--depth", "1"])
        .arg(format!("file://{}", run.repo.bare.display()))
        .arg(&reference_dir)
        .status()
        .expect("git clone");
    assert!(cloned.success());
    let text = std::fs::read_dir(reference_dir.join("apps"))
        .expect("apps")
        .count();
    assert_eq!(text, 21);
    let sed = |s: String| s.replace("bench-first", "bench-first-ref");
    for (path, content) in &files {
        std::fs::write(reference_dir.join(path), sed(content.clone())).expect("rewrite");
    }
    kubectl::apply_server_side(&reference_dir.join("apps"), &kubeconfig, "reference");
    let reference_first = started.elapsed();
    rows.push((
        "first sync, 20 ConfigMaps (spawn → applied)".into(),
        secs(kedge_first),
        format!(
            "{} (git clone + kubectl apply --server-side); Flux 1.7–1.9 s (DESIGN.md, not this run)",
            secs(reference_first)
        ),
    ));

    rows.push((
        "commit → applied after a reconcile request (median of 5)".into(),
        secs(request_latencies[2]),
        format!(
            "min {} max {}; Flux 0.9–1.1 s (DESIGN.md, not this run)",
            secs(request_latencies[0]),
            secs(request_latencies[4])
        ),
    ));

    // 2. 20 kustomizations: idle RSS; then one commit of 1,000 ConfigMaps.
    let root = scratch.path().join("many");
    std::fs::create_dir_all(&root).expect("mkdir");
    let names: Vec<String> = (0..20).map(|i| format!("k{i:02}")).collect();
    let tables: String = names
        .iter()
        .map(|n| kustomization_table(n, &format!("./{n}")))
        .collect();
    let run = Run::new(&root, &tables);
    let mut files = vec![("k00/ns.yaml".to_string(), namespace_yaml("bench-many"))];
    for name in &names {
        files.push((
            format!("{name}/cm.yaml"),
            configmap("bench-many", &format!("{name}-base"), "1"),
        ));
    }
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let commit = run.repo.commit(&refs, "20 kustomizations");
    let daemon = run.start();
    run.wait_applied(&names, &commit);
    std::thread::sleep(Duration::from_secs(5));
    let idle = rss_mib(daemon.0.id());
    rows.push((
        "idle RSS, 20 kustomizations".into(),
        format!("{idle:.1} MiB"),
        "no reference in this run; Flux 205 MiB (two controllers, DESIGN.md)".into(),
    ));

    let mut big = Vec::new();
    for i in 0..1000 {
        big.push((
            format!("k00/big-{i:04}.yaml"),
            configmap("bench-many", &format!("big-{i:04}"), "1"),
        ));
    }
    let refs: Vec<(&str, &str)> = big.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    // The clock starts once the commit exists: writing and committing 1,000
    // files is the fixture's work, not kedge's.
    let commit = run.repo.commit(&refs, "1000 configmaps");
    let started = Instant::now();
    run.request("k00");
    run.wait_applied(&names, &commit);
    let kedge_big = started.elapsed();
    let after = rss_mib(daemon.0.id());
    let reconcile_ms = Store::open_read_only(&run.state_dir.join("kedge.db"))
        .ok()
        .and_then(|store| store.kustomization_status("k00").ok().flatten())
        .and_then(|status| status.last_duration_ms)
        .unwrap_or(-1);
    drop(daemon);

    let reference_dir = root.join("reference");
    std::fs::create_dir_all(&reference_dir).expect("mkdir");
    std::fs::write(
        reference_dir.join("00-namespace.yaml"),
        namespace_yaml("bench-many-ref"),
    )
    .expect("ns");
    for (index, (_, content)) in big.iter().enumerate() {
        std::fs::write(
            reference_dir.join(format!("cm-{index:04}.yaml")),
            content.replace("bench-many", "bench-many-ref"),
        )
        .expect("write");
    }
    let reference_big = kubectl::apply_server_side(&reference_dir, &kubeconfig, "reference");
    rows.push((
        "1,000 ConfigMaps in one of 20 kustomizations, commit + request → applied".into(),
        secs(kedge_big),
        format!(
            "(reconcile itself {reconcile_ms} ms) {} kubectl apply --server-side (ratio {:.1}×); Flux 13.8–14.3 s (DESIGN.md, not this run)",
            secs(reference_big),
            reference_big.as_secs_f64() / kedge_big.as_secs_f64()
        ),
    ));
    rows.push((
        "RSS after 1,000 objects".into(),
        format!("{after:.1} MiB"),
        "no reference in this run; Flux 179 MiB (DESIGN.md)".into(),
    ));

    println!("\nkedge end to end (source interval {SOURCE_INTERVAL}, test control plane v1.33.13)");
    println!("{:<60} {:>12}   reference", "figure", "kedge");
    for (figure, value, reference) in rows {
        println!("{figure:<60} {value:>12}   {reference}");
    }
    let _ = std::fs::remove_dir_all(scratch.path());
}
