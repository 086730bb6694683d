use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// A running test control plane.
pub struct TestCluster {
    pub kubeconfig: PathBuf,
    pub server: String,
    pub log: PathBuf,
    /// How long the control plane took from spawn to ready.
    pub startup: Duration,
    _process: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Result<TestCluster, String>> = OnceLock::new();

/// The shared control plane, started on first call.
///
/// # Panics
/// When the control plane cannot be built or started: the message says why
/// and where its log is.
pub fn cluster() -> &'static TestCluster {
    match CLUSTER.get_or_init(start) {
        Ok(cluster) => cluster,
        Err(err) => panic!("test control plane unavailable: {err}"),
    }
}

impl TestCluster {
    /// The control plane's process (API server and etcd in one).
    pub fn pid(&self) -> u32 {
        self._process
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .id()
    }

    /// A new client for the calling test's runtime.
    pub async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .expect("kubeconfig written by testcluster is readable");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("kubeconfig written by testcluster is valid");
        Client::try_from(config).expect("client from testcluster kubeconfig")
    }
}

/// The repository this test binary was built from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Go program of the project, built (or found in the cache) by `script
/// path`; the environment variable `env_override` names a binary to use
/// instead.
pub fn built_tool(script: &str, env_override: &str) -> Result<PathBuf, String> {
    if let Ok(bin) = std::env::var(env_override) {
        return Ok(PathBuf::from(bin));
    }
    let script = repo_root().join(script);
    let output = Command::new(&script)
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} path failed ({})",
            script.display(),
            output.status
        ));
    }
    Ok(PathBuf::from(
        String::from_utf8_lossy(&output.stdout).trim(),
    ))
}

/// Builds (or finds in the cache) the control plane binary. `KEDGE_TESTCLUSTER_BIN`
/// overrides it.
fn binary() -> Result<PathBuf, String> {
    built_tool("scripts/testcluster.sh", "KEDGE_TESTCLUSTER_BIN")
}

fn start() -> Result<TestCluster, String> {
    let bin = binary()?;
    // The control plane removes this directory after a clean stop (statics are
    // never dropped, so this process cannot); after a failed start it stays,
    // with the log.
    let dir = tempfile::Builder::new()
        .prefix("kedge-test-cluster-")
        .tempdir()
        .map_err(|e| format!("temp dir: {e}"))?
        .keep();
    let kubeconfig = dir.join("kubeconfig");
    let log = dir.join("testcluster.log");
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let started = Instant::now();
    let mut child = Command::new(&bin)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--exit-on-stdin-close")
        .arg("--cleanup-dir")
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let ready = wait_ready_line(stdout, &log)?;
    let startup = started.elapsed();
    eprintln!(
        "test control plane ready in {:.1}s: {ready}",
        startup.as_secs_f64()
    );
    let server = ready
        .split_whitespace()
        .find_map(|w| w.strip_prefix("server="))
        .unwrap_or_default()
        .to_string();
    Ok(TestCluster {
        kubeconfig,
        server,
        log,
        startup,
        _process: Mutex::new((child, stdin)),
    })
}

fn wait_ready_line(stdout: std::process::ChildStdout, log: &Path) -> Result<String, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines.find_map(|l| l.ok().filter(|l| l.starts_with("testcluster ready")));
        let _ = tx.send(ready);
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let tail = || {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .rev()
            .take(15)
            .collect::<Vec<_>>()
            .join("\n")
    };
    match rx.recv_timeout(Duration::from_secs(180)) {
        Ok(Some(line)) => Ok(line),
        Ok(None) => Err(format!(
            "testcluster exited before ready; log {}:\n{}",
            log.display(),
            tail()
        )),
        Err(_) => Err(format!(
            "testcluster not ready after 180s; log {}",
            log.display()
        )),
    }
}

/// A namespace of its own for one test, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` and returns it.
    pub async fn new(client: &Client, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{:08x}", rand_u32());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": { "name": name }
        }))
        .expect("namespace literal");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Drop cannot await and the test's runtime may be shutting down, so
        // the delete runs on a small runtime of its own. Best effort: the
        // whole control plane goes away with the test binary anyway.
        let name = self.name.clone();
        let Some(Ok(cluster)) = CLUSTER.get() else {
            return;
        };
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = cluster.client().await;
                Api::<Namespace>::all(client)
                    .delete(&name, &DeleteParams::background())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}
