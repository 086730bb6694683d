//! A 1,000-object fleet delivered by signed bundle against the same fleet
//! from a Git source over `git://` on loopback, in one `kedge run`
//! against the test control plane:
//!
//! - bundle: `kedge bundle import FILE` (verify, stage, rollback check,
//!   store) until the kustomization of the bundle-only source is Ready at
//!   the new commit (import → applied);
//! - reference: `kedge reconcile kustomization NAME --with-source` (fetch
//!   from `git daemon` on 127.0.0.1, artifact) until the kustomization of
//!   the Git source is Ready at the same commit (request → applied).
//!
//! Both kustomizations build the same 1,000 ConfigMaps (in namespaces of
//! their own) from one repository; each round changes every ConfigMap, so
//! both apply 1,000 changed objects; the two sides alternate in order,
//! 5 s apart. The bundle is made on the "connected
//! machine" (a fetch over file:// and `kedge bundle create`) before its
//! timer starts; that cost is printed apart.
//!
//! Run: `cargo bench --bench bundle_import` (prints a table; figures go to
//! docs/BENCHMARKS.md). `KEDGE_BENCH_ROUNDS` sets the rounds (default 5).

#[path = "common/applied.rs"]
mod applied;
#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;
#[path = "../tests/support/fetch.rs"]
mod fetch;
#[path = "../tests/support/git.rs"]
#[allow(dead_code)]
mod git;
#[path = "../tests/support/http_server.rs"]
#[allow(dead_code)]
mod http_server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git::FixtureRepo;
use kedge::config::{SourceKind, SourceRef};

const OBJECTS: usize = 1_000;
/// The pause between two measurements.
const SETTLE: Duration = Duration::from_secs(5);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kedge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kedge"))
}

fn fleet_files(value: &str) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (dir, namespace) in [("via-git", "bench-git"), ("via-bundle", "bench-bundle")] {
        files.push((
            format!("{dir}/00-namespace.yaml"),
            format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n"),
        ));
        for i in 0..OBJECTS {
            files.push((
                format!("{dir}/cm-{i:04}.yaml"),
                format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:04}\n  namespace: {namespace}\ndata:\n  key: \"{value}\"\n"
                ),
            ));
        }
    }
    files
}

/// The connected machine: fetches `git/offline` over file:// into its
/// state, as `kedge run` would, and bundles it.
struct Connected {
    config: PathBuf,
    key: PathBuf,
}

impl Connected {
    fn new(root: &Path, repo: &FixtureRepo) -> Connected {
        let dir = root.join("connected");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let config = dir.join("kedge.toml");
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = {:?}\nsocket = {:?}\n\n[git.offline]\nurl = \"file://{}\"\n",
                dir.join("state").display().to_string(),
                dir.join("kedge.sock").display().to_string(),
                repo.bare.display()
            ),
        )
        .expect("write config");
        let key = dir.join("fleet-key");
        git::ssh_keygen(&key);
        Connected { config, key }
    }

    fn fetch_and_bundle(&self, out: &Path, sequence: u64) {
        fetch::fetch_and_record(&self.config, &SourceRef::new(SourceKind::Git, "offline"));
        let made = kedge()
            .args(["bundle", "create", "git/offline", "--config"])
            .arg(&self.config)
            .arg("--sign-key")
            .arg(&self.key)
            .arg("-o")
            .arg(out)
            .args(["--sequence", &sequence.to_string()])
            .stdout(Stdio::null())
            .status()
            .expect("kedge bundle create");
        assert!(made.success(), "kedge bundle create");
    }
}

struct Node {
    root: PathBuf,
    config: PathBuf,
    state_dir: PathBuf,
}

impl Node {
    fn new(root: &Path, git_port: u16, trusted: &Path) -> Node {
        let dir = root.join("node");
        let keys = dir.join("trusted-keys");
        std::fs::create_dir_all(&keys).expect("mkdir");
        std::fs::copy(trusted, keys.join("fleet.pub")).expect("trust key");
        let state_dir = dir.join("state");
        let config = dir.join("kedge.toml");
        let kustomization = |name: &str, source: &str| {
            format!("[kustomization.{name}]\nsource = \"{source}\"\npath = \"./{name}\"\ninterval = \"1h\"\nprune = true\n\n")
        };
        std::fs::write(
            &config,
            format!(
                "[agent]\nstate_dir = {:?}\nkubeconfig = {:?}\nsocket = {:?}\ntrusted_keys_dir = {:?}\n\n\
                 [git.online]\nurl = \"git://127.0.0.1:{git_port}/fleet.git\"\ninterval = \"1h\"\n\n\
                 [git.offline]\nurl = \"bundle:\"\ninterval = \"1h\"\n\n{}{}",
                state_dir.display().to_string(),
                cluster::cluster().kubeconfig.display().to_string(),
                dir.join("kedge.sock").display().to_string(),
                keys.display().to_string(),
                kustomization("via-git", "git/online"),
                kustomization("via-bundle", "git/offline"),
            ),
        )
        .expect("write config");
        Node {
            root: dir,
            config,
            state_dir,
        }
    }

    fn start(&self) -> Daemon {
        let log = std::fs::File::create(self.root.join("kedge.log")).expect("log");
        Daemon(
            kedge()
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn kedge"),
        )
    }

    fn run_cli(&self, args: &[&str]) {
        let output = kedge()
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .output()
            .expect("run kedge");
        assert!(
            output.status.success(),
            "kedge {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn wait_applied(&self, name: &str, commit: &str) {
        applied::wait_applied(
            &self.state_dir,
            &[name],
            commit,
            Duration::from_secs(300),
            &self.root.join("kedge.log"),
        );
    }
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn main() {
    let rounds: usize = std::env::var("KEDGE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    let scratch = tempfile::tempdir().expect("tempdir").keep();
    let repo = FixtureRepo::new(&scratch, "fleet");
    let files = |value: &str| fleet_files(value);
    let commit = |value: &str| {
        let files = files(value);
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        repo.commit(&refs, value)
    };
    let server = git::git_daemon(&scratch);
    let connected = Connected::new(&scratch, &repo);
    let node = Node::new(&scratch, server.port, &connected.key.with_extension("pub"));

    let first = commit("0");
    let bundle = scratch.join("fleet-0.tar");
    connected.fetch_and_bundle(&bundle, 1);
    let daemon = node.start();
    node.wait_applied("via-git", &first);
    node.run_cli(&["bundle", "import", bundle.to_str().expect("utf-8")]);
    node.wait_applied("via-bundle", &first);

    let (mut via_bundle, mut via_git, mut import_cli, mut create) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut size = 0;
    for round in 1..=rounds {
        let commit = commit(&round.to_string());
        let bundle = scratch.join(format!("fleet-{round}.tar"));
        let started = Instant::now();
        connected.fetch_and_bundle(&bundle, round as u64 + 1);
        create.push(started.elapsed());
        size = std::fs::metadata(&bundle).expect("bundle").len();

        let by_bundle = |import_cli: &mut Vec<Duration>, via_bundle: &mut Vec<Duration>| {
            let started = Instant::now();
            node.run_cli(&["bundle", "import", bundle.to_str().expect("utf-8")]);
            import_cli.push(started.elapsed());
            node.wait_applied("via-bundle", &commit);
            via_bundle.push(started.elapsed());
        };
        let by_git = |via_git: &mut Vec<Duration>| {
            let started = Instant::now();
            node.run_cli(&["reconcile", "kustomization", "via-git", "--with-source"]);
            node.wait_applied("via-git", &commit);
            via_git.push(started.elapsed());
        };
        // Alternating, with a pause for the API server to settle, so
        // neither side always follows the other's writes.
        if round % 2 == 0 {
            by_bundle(&mut import_cli, &mut via_bundle);
            std::thread::sleep(SETTLE);
            by_git(&mut via_git);
        } else {
            by_git(&mut via_git);
            std::thread::sleep(SETTLE);
            by_bundle(&mut import_cli, &mut via_bundle);
        }
        std::thread::sleep(SETTLE);
    }
    drop(daemon);

    let (bundle_median, git_median) = (median(via_bundle.clone()), median(via_git.clone()));
    println!("| {OBJECTS} ConfigMaps changed, median of {rounds} | kedge | reference |");
    println!("|---|---|---|");
    println!(
        "| bundle import → applied | {} (min {}, max {}) | {} Git request → applied over git:// on loopback (min {}, max {}) |",
        secs(bundle_median),
        secs(*via_bundle.iter().min().expect("rounds")),
        secs(*via_bundle.iter().max().expect("rounds")),
        secs(git_median),
        secs(*via_git.iter().min().expect("rounds")),
        secs(*via_git.iter().max().expect("rounds")),
    );
    println!(
        "| ratio bundle / Git | {:.2} | |",
        bundle_median.as_secs_f64() / git_median.as_secs_f64()
    );
    println!(
        "| of which `kedge bundle import` (verify, stage, store) | {} | absolute |",
        secs(median(import_cli))
    );
    println!(
        "| connected machine: fetch + `kedge bundle create` | {} | absolute; bundle {:.1} KiB |",
        secs(median(create)),
        size as f64 / 1024.0
    );
    let _ = std::fs::remove_dir_all(&scratch);
}
