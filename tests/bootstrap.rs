//! `kedge bootstrap git` against real Git servers on loopback: an empty
//! repository (HTTPS through git http-backend), a directory already there,
//! a read-only key over SSH, a second run, unreachable servers, a deploy
//! key accepted while bootstrap waits (Debian's sshd), and end to end
//! with `kedge run` until the node's directory is applied.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;

use crate::kustomization_run::run_daemon;
use crate::support::git::{free_port, git, http_git, ssh_keygen, sshd, test_ca, FixtureRepo, Sshd};
use crate::support::{cluster, eventually, TestNamespace};

const NODE: &str = "clusters/edge-1";

/// A fleet repository (bare, exported by the servers), a node directory
/// (`etc/kedge.toml`, `etc/keys/`) and a state directory, in one tempdir.
struct Node {
    root: tempfile::TempDir,
    repo: FixtureRepo,
    config: PathBuf,
    keys: PathBuf,
}

impl Node {
    fn new() -> Node {
        let root = tempfile::tempdir().expect("tempdir");
        let repo = FixtureRepo::new(root.path(), "fleet");
        let etc = root.path().join("etc");
        std::fs::create_dir_all(&etc).expect("mkdir etc");
        Node {
            config: etc.join("kedge.toml"),
            keys: etc.join("keys"),
            repo,
            root,
        }
    }

    /// A config like the packaged one: an `[agent]` table, nothing else.
    fn write_packaged_config(&self) {
        let text = format!(
            "# shipped\n[agent]\nstate_dir = {:?}\nsocket = {:?}\n",
            self.root.path().join("state").display().to_string(),
            self.socket().display().to_string(),
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join("kedge.sock")
    }

    /// `kedge bootstrap git ARGS --config … --keys-dir … --path clusters/edge-1`.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kedge"));
        command
            .args(["bootstrap", "git", "--path", NODE])
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--keys-dir")
            .arg(&self.keys)
            .stdin(Stdio::null());
        command
    }

    fn bootstrap(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kedge bootstrap")
    }

    fn config_text(&self) -> String {
        std::fs::read_to_string(&self.config).unwrap_or_default()
    }

    fn backup(&self) -> PathBuf {
        let mut name = self.config.as_os_str().to_os_string();
        name.push(".bootstrap-old");
        name.into()
    }

    /// The files of branch main in the bare repository.
    fn files_on_main(&self) -> Vec<String> {
        git(&self.repo.bare, &["ls-tree", "-r", "--name-only", "main"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn commits_on_main(&self) -> usize {
        git(&self.repo.bare, &["rev-list", "--count", "main"])
            .parse()
            .expect("a count")
    }

    fn has_branches(&self) -> bool {
        !git(&self.repo.bare, &["for-each-ref", "refs/heads"]).is_empty()
    }

    /// An sshd serving the repository, accepting `client_key`.
    fn sshd(&self, client_key: &Path) -> Sshd {
        let dir = self.root.path().join("sshd");
        std::fs::create_dir_all(&dir).expect("mkdir sshd");
        sshd(&dir, &client_key.with_extension("pub"))
    }

    fn ssh_url(&self, server: &Sshd) -> String {
        format!(
            "ssh://{}@127.0.0.1:{}{}",
            current_user(),
            server.server.port,
            self.repo.bare.display()
        )
    }
}

fn current_user() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "root".to_string())
}

fn text(output: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "bootstrap failed: {}",
        text(output)
    );
}

#[test]
fn an_empty_repository_gets_the_node_directory_in_one_commit_and_the_config_points_at_it() {
    let node = Node::new();
    node.write_packaged_config();
    let ca = test_ca(node.root.path());
    let server = http_git(node.root.path(), "kedge", "s3cret", Some(&ca));
    let password = node.root.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("write password");
    let url = format!("https://127.0.0.1:{}/fleet.git", server.port);
    let (password, ca_file) = (
        password.display().to_string(),
        ca.ca_pem.display().to_string(),
    );

    let output = node.bootstrap(&[
        "--url",
        &url,
        "--branch",
        "main",
        "--username",
        "kedge",
        "--password-file",
        &password,
        "--ca-file",
        &ca_file,
        "--no-wait",
    ]);

    assert_success(&output);
    assert_eq!(
        node.files_on_main(),
        [format!("{NODE}/README.md"), format!("{NODE}/kedge.toml")]
    );
    assert_eq!(node.commits_on_main(), 1);
    let fragment = git(
        &node.repo.bare,
        &["show", &format!("main:{NODE}/kedge.toml")],
    );
    assert!(fragment.contains("[kustomization.edge-1]"), "{fragment}");
    assert!(
        fragment.contains(&format!("path = \"{NODE}\"")),
        "{fragment}"
    );
    assert!(
        !fragment.lines().any(|line| line.starts_with("[git.")),
        "the source stays local: {fragment}"
    );

    let config: toml::Table = toml::from_str(&node.config_text()).expect("config is TOML");
    let from = &config["agent"]["config_from"];
    assert_eq!(from["source"].as_str(), Some("git/fleet"));
    assert_eq!(
        from["path"].as_str(),
        Some(format!("{NODE}/kedge.toml").as_str())
    );
    assert_eq!(
        config["agent"]["socket"].as_str(),
        Some(node.socket().display().to_string().as_str()),
        "[agent] kept"
    );
    let fleet = &config["git"]["fleet"];
    assert_eq!(fleet["url"].as_str(), Some(url.as_str()));
    assert_eq!(fleet["ref"]["branch"].as_str(), Some("main"));
    assert_eq!(fleet["username"].as_str(), Some("kedge"));
    assert_eq!(fleet["password_file"].as_str(), Some(password.as_str()));
    assert_eq!(fleet["ca_file"].as_str(), Some(ca_file.as_str()));
    assert!(
        std::fs::read_to_string(node.backup()).is_ok_and(|old| old.starts_with("# shipped")),
        "the old config is kept"
    );
    let checked = Command::new(env!("CARGO_BIN_EXE_kedge"))
        .arg("check-config")
        .arg(&node.config)
        .output()
        .expect("run kedge check-config");
    assert!(checked.status.success(), "check-config: {}", text(&checked));
}

#[test]
fn a_node_directory_already_on_the_branch_is_used_as_it_is() {
    let node = Node::new();
    let fragment =
        "[kustomization.mine]\nsource = \"git/fleet\"\npath = \"clusters/edge-1/apps\"\ninterval = \"5m\"\nprune = true\n";
    let head = node
        .repo
        .commit(&[(&format!("{NODE}/kedge.toml"), fragment)], "by hand");
    let url = node.repo.bare.display().to_string();
    let kubeconfig = node.root.path().join("k3s.yaml");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\n").expect("write kubeconfig");
    let kubeconfig = kubeconfig.display().to_string();

    let output = node.bootstrap(&["--url", &url, "--kubeconfig", &kubeconfig, "--no-wait"]);

    assert_success(&output);
    assert_eq!(
        git(&node.repo.bare, &["rev-parse", "main"]),
        head,
        "no commit"
    );
    let config: toml::Table = toml::from_str(&node.config_text()).expect("config is TOML");
    assert_eq!(
        config["agent"]["kubeconfig"].as_str(),
        Some(kubeconfig.as_str()),
        "--kubeconfig is the cluster"
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("used as it is"),
        "{}",
        text(&output)
    );
    assert!(node.config_text().contains("config_from"));
    assert!(!node.backup().exists(), "there was no config to keep");
}

#[test]
fn a_node_directory_the_node_would_refuse_is_an_error_before_anything_is_written() {
    let node = Node::new();
    node.write_packaged_config();
    let packaged = node.config_text();
    node.repo.commit(
        &[(
            &format!("{NODE}/kedge.toml"),
            "[agent]\nstate_dir = \"/elsewhere\"\n",
        )],
        "a fragment that may not set [agent]",
    );
    let url = node.repo.bare.display().to_string();

    let output = node.bootstrap(&["--url", &url, "--no-wait"]);

    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(":{NODE}/kedge.toml:1:1")),
        "the problem is located in the fragment: {}",
        text(&output)
    );
    assert!(stderr.contains("[agent]"), "{}", text(&output));
    assert_eq!(node.config_text(), packaged, "config untouched");
    assert!(!node.backup().exists());
}

#[test]
fn a_read_only_key_pushes_nothing_and_prints_what_to_commit() {
    let node = Node::new();
    let client_key = node.root.path().join("client_key");
    ssh_keygen(&client_key);
    let server = node.sshd(&client_key);
    make_read_only(&node.root.path().join("sshd"), &client_key);
    let known_hosts = node.root.path().join("known_hosts");
    std::fs::write(&known_hosts, &server.known_hosts_line).expect("write known_hosts");
    let url = node.ssh_url(&server);
    let (key, known_hosts) = (
        client_key.display().to_string(),
        known_hosts.display().to_string(),
    );
    let args = [
        "--url",
        &url,
        "--private-key-file",
        &key,
        "--known-hosts-file",
        &known_hosts,
        "--no-wait",
    ];

    let refused = node.bootstrap(&args);
    assert!(!refused.status.success(), "{}", text(&refused));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("read-only deploy key"),
        "the server's word: {stderr}"
    );
    assert!(stderr.contains("--read-only"), "what to do: {stderr}");
    assert!(!node.config.exists(), "a failed push writes no config");

    let output = node.bootstrap(&[&args[..], &["--read-only"]].concat());

    assert_success(&output);
    assert!(!node.has_branches(), "nothing pushed");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("nothing pushed"), "{}", text(&output));
    assert!(
        stdout.contains(&format!("==> {NODE}/kedge.toml <==")),
        "{}",
        text(&output)
    );
    assert!(
        stdout.contains("[kustomization.edge-1]"),
        "{}",
        text(&output)
    );
    assert!(
        stdout.contains(&format!("==> {NODE}/README.md <==")),
        "{}",
        text(&output)
    );
    assert!(stdout.contains("git push"), "{}", text(&output));
    let config = node.config_text();
    assert!(config.contains("config_from"), "{config}");
    assert!(
        config.contains(&format!(
            "ssh_key_file = {:?}",
            client_key.display().to_string()
        )),
        "{config}"
    );
    assert!(!node.keys.exists(), "no key made, no host key scanned");
}

/// Lets `key` only fetch from the test sshd, as a forge's read-only deploy
/// key: any other command is refused with a message.
fn make_read_only(sshd_dir: &Path, key: &Path) {
    let script = sshd_dir.join("read-only.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\ncase \"$SSH_ORIGINAL_COMMAND\" in\n  git-upload-pack*) exec sh -c \"$SSH_ORIGINAL_COMMAND\" ;;\n  *) echo 'read-only deploy key' >&2; exit 1 ;;\nesac\n",
    )
    .expect("write the forced command");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    std::fs::write(
        sshd_dir.join("authorized_keys"),
        format!("command=\"{}\" {public}", script.display()),
    )
    .expect("write authorized_keys");
}

#[test]
fn running_bootstrap_twice_changes_nothing_the_second_time() {
    let node = Node::new();
    // The file the .deb ships, as on a fresh install.
    let shipped = crate::support::repo_root().join("packaging/deb/kedge.toml");
    std::fs::copy(&shipped, &node.config).expect("copy the packaged config");
    let url = format!("file://{}", node.repo.bare.display());
    let first = node.bootstrap(&["--url", &url, "--no-wait"]);
    assert_success(&first);
    let (commit, config, backup) = (
        git(&node.repo.bare, &["rev-parse", "main"]),
        node.config_text(),
        std::fs::read_to_string(node.backup()).expect("backup of the packaged config"),
    );
    assert_eq!(
        backup,
        std::fs::read_to_string(&shipped).expect("packaged config")
    );
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let (config_time, backup_time) = (modified(&node.config), modified(&node.backup()));

    let second = node.bootstrap(&["--url", &url, "--no-wait"]);

    assert_success(&second);
    assert_eq!(
        git(&node.repo.bare, &["rev-parse", "main"]),
        commit,
        "no new commit"
    );
    assert_eq!(node.config_text(), config);
    assert_eq!(modified(&node.config), config_time, "config not rewritten");
    assert_eq!(std::fs::read_to_string(node.backup()).ok(), Some(backup));
    assert_eq!(modified(&node.backup()), backup_time, "no backup churn");
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("already as bootstrap writes it"),
        "{}",
        text(&second)
    );
}

#[test]
fn an_unreachable_server_is_a_clear_error_and_nothing_is_written() {
    let node = Node::new();
    let port = free_port();
    for url in [
        format!("https://127.0.0.1:{port}/fleet.git"),
        format!("ssh://git@127.0.0.1:{port}/fleet.git"),
    ] {
        let output = node.bootstrap(&["--url", &url, "--yes", "--timeout", "20s", "--no-wait"]);

        assert!(!output.status.success(), "{url}: {}", text(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("127.0.0.1") && stderr.contains(&port.to_string()),
            "the error names the server: {}",
            text(&output)
        );
        assert!(
            stderr.contains("cannot read the repository") || stderr.contains("cannot reach"),
            "{}",
            text(&output)
        );
        assert!(!node.config.exists(), "{url}: no config written");
        assert!(!node.keys.exists(), "{url}: no key written");
    }
}

#[test]
fn a_password_is_never_sent_over_plain_http() {
    let node = Node::new();
    let password = node.root.path().join("password");
    std::fs::write(&password, "s3cret\n").expect("write password");
    // Nothing listens there: trying to connect would be another error.
    let url = format!("http://127.0.0.1:{}/fleet.git", free_port());

    let output = node.bootstrap(&[
        "--url",
        &url,
        "--username",
        "kedge",
        "--password-file",
        &password.display().to_string(),
        "--no-wait",
    ]);

    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("clear text") && stderr.contains("https"),
        "refused before connecting: {}",
        text(&output)
    );
    assert!(!node.config.exists());
}

#[test]
fn the_host_key_is_trusted_only_when_the_user_says_so() {
    let node = Node::new();
    let client_key = node.root.path().join("client_key");
    ssh_keygen(&client_key);
    let server = node.sshd(&client_key);
    let url = node.ssh_url(&server);
    let key = client_key.display().to_string();
    let args = ["--url", &url, "--private-key-file", &key, "--no-wait"];

    let unanswered = node.bootstrap(&args);

    assert!(!unanswered.status.success(), "{}", text(&unanswered));
    let stdout = String::from_utf8_lossy(&unanswered.stdout);
    assert!(
        stdout.contains("SHA256:"),
        "the fingerprint is shown: {stdout}"
    );
    assert!(
        String::from_utf8_lossy(&unanswered.stderr).contains("--yes"),
        "{}",
        text(&unanswered)
    );
    assert!(!node.keys.join("known_hosts").exists(), "nothing trusted");
    assert!(!node.config.exists());

    let mut child = node
        .command(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kedge bootstrap");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(b"yes\n")
        .expect("answer");
    let answered = child.wait_with_output().expect("bootstrap ends");

    assert_success(&answered);
    let known_hosts = std::fs::read_to_string(node.keys.join("known_hosts")).expect("known_hosts");
    let host_key = server
        .known_hosts_line
        .split_whitespace()
        .nth(2)
        .expect("key");
    assert!(known_hosts.contains(host_key), "{known_hosts}");
    assert_eq!(node.commits_on_main(), 1);
}

#[test]
fn a_generated_deploy_key_is_waited_for_until_the_server_accepts_it() {
    let node = Node::new();
    let other_key = node.root.path().join("someone_else");
    ssh_keygen(&other_key);
    let server = node.sshd(&other_key);
    let url = node.ssh_url(&server);
    let child = node
        .command(&["--url", &url, "--yes", "--timeout", "90s", "--no-wait"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kedge bootstrap");

    // The user pastes the printed key into the forge: here, authorized_keys.
    let public = node.keys.join("fleet.pub");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !public.exists() {
        assert!(Instant::now() < deadline, "no deploy key made within 60s");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(3));
    let key = std::fs::read_to_string(&public).expect("read the deploy key");
    let authorized = node.root.path().join("sshd/authorized_keys");
    let mut keys = std::fs::read_to_string(&authorized).expect("authorized_keys");
    keys.push_str(&key);
    std::fs::write(&authorized, keys).expect("accept the deploy key");
    let output = child.wait_with_output().expect("bootstrap ends");

    assert_success(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("SHA256:"),
        "the host key's fingerprint: {stdout}"
    );
    assert!(
        stdout.contains(key.trim()),
        "the public key is printed: {stdout}"
    );
    assert!(stdout.contains("waiting for the key"), "{stdout}");
    assert!(key.starts_with("ssh-ed25519 "), "{key}");
    let known_hosts = std::fs::read_to_string(node.keys.join("known_hosts")).expect("known_hosts");
    let host_key = server
        .known_hosts_line
        .split_whitespace()
        .nth(2)
        .expect("key");
    assert!(known_hosts.contains(host_key), "{known_hosts}");
    assert_eq!(
        node.commits_on_main(),
        1,
        "the node directory is pushed over SSH"
    );
    assert!(node.config_text().contains(&format!(
        "ssh_key_file = {:?}",
        node.keys.join("fleet").display().to_string()
    )));
}

/// A node directory holding one ConfigMap of a test namespace, and a
/// config like the packaged one that reaches the test control plane.
struct EndToEnd {
    client: kube::Client,
    ns: TestNamespace,
    node: Node,
    path: String,
}

impl EndToEnd {
    async fn new(path: &str) -> EndToEnd {
        let client = cluster().client().await;
        let ns = TestNamespace::new(&client, "bootstrap").await;
        let node = Node::new();
        node.repo.commit(
            &[(
                &format!("{path}/web.yaml"),
                &format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\n  namespace: {}\ndata:\n  key: bootstrapped\n",
                    ns.name
                ),
            )],
            "a manifest before kedge",
        );
        std::fs::write(
            &node.config,
            format!(
                "[agent]\nstate_dir = {:?}\nsocket = {:?}\nkubeconfig = {:?}\n",
                node.root.path().join("state").display().to_string(),
                node.socket().display().to_string(),
                cluster().kubeconfig.display().to_string(),
            ),
        )
        .expect("write config");
        EndToEnd {
            client,
            ns,
            node,
            path: path.to_string(),
        }
    }

    fn log(&self) -> PathBuf {
        self.node.root.path().join("kedge.log")
    }

    /// `kedge bootstrap git` (waiting for Ready), its stdout read line by line.
    fn spawn_bootstrap(&self) -> Running {
        let url = self.node.repo.bare.display().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_kedge"))
            .args(["bootstrap", "git", "--url", &url, "--path", &self.path])
            .args(["--timeout", "120s", "--config"])
            .arg(&self.node.config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kedge bootstrap");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                collected.lock().expect("lines").push(line);
            }
        });
        Running { child, lines }
    }

    /// Bootstrap succeeded, said `said`, and the ConfigMap is applied.
    async fn assert_done(&self, running: Running, said: &str) {
        let (output, stdout) = running.finish();
        let log = std::fs::read_to_string(self.log()).unwrap_or_default();
        assert!(
            output.status.success(),
            "{}{stdout}\nkedge log:\n{log}",
            text(&output)
        );
        assert!(stdout.contains(said), "{stdout}");
        let ready = format!("kustomization/{}: Ready", last_component(&self.path));
        assert!(stdout.contains(&ready), "{stdout}");
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.ns.name);
        eventually(Duration::from_secs(10), "the ConfigMap applied", || {
            let configmaps = configmaps.clone();
            async move { configmaps.get_opt("web").await.ok().flatten().is_some() }
        })
        .await;
    }
}

fn last_component(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

struct Running {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Running {
    fn stdout(&self) -> String {
        self.lines.lock().expect("lines").join("\n")
    }

    /// Waits until bootstrap printed a line holding `text`.
    fn wait_for_line(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.stdout().contains(text) {
            assert!(
                Instant::now() < deadline,
                "bootstrap did not say {text:?} within 60s: {}",
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the exit; the output (stderr) and the stdout lines.
    fn finish(self) -> (Output, String) {
        let output = self.child.wait_with_output().expect("bootstrap ends");
        // The reader thread ends with the pipe.
        std::thread::sleep(Duration::from_millis(100));
        let stdout = self.lines.lock().expect("lines").join("\n");
        (output, stdout)
    }
}

#[tokio::test]
async fn bootstrap_starts_nothing_itself_but_waits_until_kedge_has_applied_the_node_directory() {
    let e2e = EndToEnd::new("clusters/bootstrap-e2e").await;

    let running = e2e.spawn_bootstrap();
    // No daemon runs, and no systemd runs kedge for this file: bootstrap
    // says how to start it and waits.
    running.wait_for_line("start it with `kedge run --config");
    let _daemon = run_daemon(&e2e.node.config, &e2e.log());

    e2e.assert_done(running, "waiting up to 2m").await;
}

#[tokio::test]
async fn a_running_kedge_is_told_to_restart_and_bootstrap_waits_across_the_restart() {
    let e2e = EndToEnd::new("clusters/bootstrap-restart").await;
    let daemon = run_daemon(&e2e.node.config, &e2e.log());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !e2e.node.socket().exists() {
        assert!(Instant::now() < deadline, "kedge did not start within 30s");
        std::thread::sleep(Duration::from_millis(50));
    }

    let running = e2e.spawn_bootstrap();
    // A reload keeps the old [agent] table, config_from with it.
    running.wait_for_line("restart it");
    drop(daemon);
    let _daemon = run_daemon(&e2e.node.config, &e2e.log());

    e2e.assert_done(running, "the old [agent] table").await;
}
