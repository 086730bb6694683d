//! A Helm release of a 30-object chart under `kedge run`, against the real
//! `helm upgrade --install` of the same chart in the same run, on the test
//! control plane:
//!
//! - install: config with the release → the release deployed (kedge), and
//!   `helm upgrade --install` of a new release (helm);
//! - upgrade on changed values: config saved → deployed at the next
//!   revision (kedge, including its reload and planning), and
//!   `helm upgrade --install --set` (helm); median of 3;
//! - kedge's RSS (the daemon: current and peak) and `kedge-helm`'s peak
//!   RSS over all its runs (GNU time around the helper).
//!
//! Both wait with kstatus (kedge's default `wait = true`; helm
//! `--wait=watcher`) and apply server-side.
//!
//! Run: `cargo bench --bench helm_release`. Needs /usr/bin/time.

#[path = "../tests/support/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kedge::state::Store;

const OBJECTS: usize = 30;
const UPGRADES: usize = 3;
const BOUND: Duration = Duration::from_secs(300);

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let cluster = cluster::cluster();
    let helper = cluster::built_tool("scripts/kedge-helm.sh", "KEDGE_HELM_BIN")
        .unwrap_or_else(|err| panic!("kedge-helm: {err}"));
    let helm = cluster::built_tool("scripts/helm-cli.sh", "KEDGE_HELM_CLI_BIN")
        .unwrap_or_else(|err| panic!("helm: {err}"));
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path();
    let package = chart_package(&helm, root);
    let peaks = root.join("helper-peak-kib");
    let wrapper = helper_under_time(root, &helper, &peaks);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (ns_kedge, ns_helm) = runtime.block_on(async {
        let client = cluster.client().await;
        (
            cluster::TestNamespace::new(&client, "bench-hr-kedge").await,
            cluster::TestNamespace::new(&client, "bench-hr-helm").await,
        )
    });

    let kedge = Kedge::new(
        root,
        &cluster.kubeconfig,
        &wrapper,
        &package,
        &ns_kedge.name,
    );
    kedge.configure("v0");
    let started = Instant::now();
    let daemon = kedge.start();
    kedge.wait_revision(1);
    let kedge_install = started.elapsed();
    let mut kedge_upgrades = Vec::new();
    for round in 1..=UPGRADES {
        let started = Instant::now();
        kedge.configure(&format!("v{round}"));
        kedge.wait_revision(round as u32 + 1);
        kedge_upgrades.push(started.elapsed());
    }
    let (rss, peak) = rss_kib(daemon.0.id());

    let helm_cli = HelmCli {
        helm: helm.clone(),
        kubeconfig: cluster.kubeconfig.clone(),
        namespace: ns_helm.name.clone(),
        package: package.clone(),
        home: root.join("helm-home"),
    };
    let helm_install = helm_cli.upgrade_install("v0");
    let helm_upgrades: Vec<Duration> = (1..=UPGRADES)
        .map(|round| helm_cli.upgrade_install(&format!("v{round}")))
        .collect();
    drop(daemon);

    let helper_peak = std::fs::read_to_string(&peaks)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let kedge_upgrade = median(kedge_upgrades);
    let helm_upgrade = median(helm_upgrades);
    println!("Helm release of a {OBJECTS}-object chart (ConfigMaps), kedge vs helm v4.3.1 in the same run");
    println!("| | kedge | helm upgrade --install | kedge / helm |");
    println!("|---|---|---|---|");
    row(
        "install (until deployed, kstatus wait)",
        kedge_install,
        helm_install,
    );
    row(
        &format!("upgrade on new values (median of {UPGRADES})"),
        kedge_upgrade,
        helm_upgrade,
    );
    println!(
        "kedge daemon RSS after the runs: {} MiB (peak {} MiB); kedge-helm peak RSS: {} MiB",
        rss / 1024,
        peak / 1024,
        helper_peak / 1024
    );
}

fn row(what: &str, kedge: Duration, helm: Duration) {
    println!(
        "| {what} | {:.2} s | {:.2} s | {:.2}x |",
        kedge.as_secs_f64(),
        helm.as_secs_f64(),
        kedge.as_secs_f64() / helm.as_secs_f64()
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// A chart of [`OBJECTS`] ConfigMaps whose data is the value `value`,
/// packaged by the real helm.
fn chart_package(helm: &Path, root: &Path) -> PathBuf {
    let chart = root.join("bench");
    std::fs::create_dir_all(chart.join("templates")).expect("mkdir chart");
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: bench\nversion: 1.0.0\n",
    )
    .expect("Chart.yaml");
    std::fs::write(chart.join("values.yaml"), "value: v0\n").expect("values.yaml");
    std::fs::write(
        chart.join("templates/configmaps.yaml"),
        format!(
            "{{{{- range $i := until {OBJECTS} }}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench-{{{{ $i }}}}\ndata:\n  value: {{{{ $.Values.value | quote }}}}\n{{{{- end }}}}\n"
        ),
    )
    .expect("template");
    let out = Command::new(helm)
        .args(["package", "-d"])
        .arg(root)
        .arg(&chart)
        .env("HELM_CONFIG_HOME", root.join("helm-home/config"))
        .env("HELM_CACHE_HOME", root.join("helm-home/cache"))
        .env("HELM_DATA_HOME", root.join("helm-home/data"))
        .output()
        .expect("helm package");
    assert!(
        out.status.success(),
        "helm package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    root.join("bench-1.0.0.tgz")
}

/// A helper path that runs kedge-helm under GNU time, appending each run's
/// peak RSS (KiB) to `peaks`.
fn helper_under_time(root: &Path, helper: &Path, peaks: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = root.join("kedge-helm");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec /usr/bin/time -f %M -a -o {} {}\n",
            peaks.display(),
            helper.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    wrapper
}

struct Kedge {
    config: PathBuf,
    state_dir: PathBuf,
    agent: String,
    release: String,
}

impl Kedge {
    fn new(
        root: &Path,
        kubeconfig: &Path,
        helper: &Path,
        package: &Path,
        namespace: &str,
    ) -> Kedge {
        let state_dir = root.join("state");
        Kedge {
            config: root.join("kedge.toml"),
            agent: format!(
                "[agent]\nstate_dir = {:?}\nsocket = {:?}\nkubeconfig = {:?}\nhelm_helper = {:?}\n",
                state_dir.display().to_string(),
                root.join("kedge.sock").display().to_string(),
                kubeconfig.display().to_string(),
                helper.display().to_string(),
            ),
            release: format!(
                "[helm_release.bench]\nchart = {{ file = {:?} }}\ntarget_namespace = \"{namespace}\"\nrelease_name = \"bench\"\ninterval = \"1h\"\n",
                package.display().to_string()
            ),
            state_dir,
        }
    }

    fn configure(&self, value: &str) {
        let text = format!(
            "{}{}values = {{ value = \"{value}\" }}\n",
            self.agent, self.release
        );
        let temp = self.config.with_extension("tmp");
        std::fs::write(&temp, text).expect("write config");
        std::fs::rename(&temp, &self.config).expect("rename config");
    }

    fn start(&self) -> Daemon {
        Daemon(
            Command::new(env!("CARGO_BIN_EXE_kedge"))
                .args(["run", "--config"])
                .arg(&self.config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn kedge run"),
        )
    }

    /// Waits until the release is Ready at Helm revision `revision`.
    fn wait_revision(&self, revision: u32) {
        let deadline = Instant::now() + BOUND;
        let database = self.state_dir.join("kedge.db");
        loop {
            let row = Store::open_read_only(&database)
                .ok()
                .and_then(|store| store.helm_release_status("bench").ok().flatten());
            if row.is_some_and(|r| r.ready && r.release_revision == revision) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "release revision {revision} not ready within {BOUND:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

struct HelmCli {
    helm: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    package: PathBuf,
    home: PathBuf,
}

impl HelmCli {
    fn upgrade_install(&self, value: &str) -> Duration {
        let started = Instant::now();
        let out = Command::new(&self.helm)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.namespace, "upgrade", "--install", "bench"])
            .arg(&self.package)
            .args([
                "--set",
                &format!("value={value}"),
                "--wait=watcher",
                "--server-side=true",
                "--timeout",
                "5m",
            ])
            .env("HELM_CONFIG_HOME", self.home.join("config"))
            .env("HELM_CACHE_HOME", self.home.join("cache"))
            .env("HELM_DATA_HOME", self.home.join("data"))
            .output()
            .expect("run helm");
        assert!(
            out.status.success(),
            "helm upgrade --install: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed()
    }
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
