//! A real Gitea on loopback for the commit status tests: built from its
//! pinned Go module by scripts/gitea.sh, run with a temporary `app.ini`
//! (SQLite, 127.0.0.1 on a free port, install locked, no mailer, offline),
//! with an admin user, an API token and one repository. Dropping it stops
//! the server.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::git::{free_port, git};

pub const USER: &str = "kedge";
/// Gitea's own password rules: long enough, nothing to do with any secret.
const PASSWORD: &str = "kedge-test-password-7Qx";

/// A running Gitea; stops when dropped.
pub struct Gitea {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
    child: Child,
    /// An API token with write access to repositories.
    pub token: String,
}

fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("KEDGE_GITEA_BIN") {
        return PathBuf::from(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gitea.sh");
    let output = Command::new(&script)
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(output.status.success(), "{} path failed", script.display());
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn app_ini(dir: &Path, port: u16, assets: &Path) -> String {
    let d = dir.display();
    let assets = assets.display();
    format!(
        "APP_NAME = kedge test
RUN_MODE = prod
WORK_PATH = {d}
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = {port}
ROOT_URL = http://127.0.0.1:{port}/
DISABLE_SSH = true
START_SSH_SERVER = false
OFFLINE_MODE = true
LFS_START_SERVER = false
APP_DATA_PATH = {d}/data
STATIC_ROOT_PATH = {assets}

[database]
DB_TYPE = sqlite3
PATH = {d}/gitea.db

[repository]
ROOT = {d}/repositories

[security]
INSTALL_LOCK = true
SECRET_KEY = kedge-test-secret-key
INTERNAL_TOKEN = eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJuYmYiOjE3MDAwMDAwMDB9.kedge-test-internal-token

[oauth2]
ENABLED = false

[service]
DISABLE_REGISTRATION = true

[mailer]
ENABLED = false

[session]
PROVIDER = memory

[cache]
ADAPTER = memory

[actions]
ENABLED = false

[packages]
ENABLED = false

[cron]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = file
LEVEL = Info
ROOT_PATH = {d}/log
"
    )
}

impl Gitea {
    /// Starts Gitea under `dir` and creates user [`USER`] (an admin), its
    /// token and repository `USER/REPO` (empty, default branch `main`).
    pub fn start(dir: &Path, repo: &str) -> Gitea {
        let bin = binary();
        let port = free_port();
        std::fs::create_dir_all(dir).expect("gitea dir");
        // scripts/gitea.sh copies Gitea's locales and templates there.
        let assets = PathBuf::from(format!("{}.assets", bin.display()));
        std::fs::write(dir.join("app.ini"), app_ini(dir, port, &assets)).expect("write app.ini");
        let log = std::fs::File::create(dir.join("gitea.out")).expect("gitea output");
        let child = Command::new(&bin)
            .args(["web", "--config"])
            .arg(dir.join("app.ini"))
            .arg("--work-path")
            .arg(dir)
            .env("HOME", dir)
            .env("GITEA_WORK_DIR", dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start gitea");
        let mut gitea = Gitea {
            port,
            dir: dir.to_path_buf(),
            bin,
            child,
            token: String::new(),
        };
        gitea.wait_listening();
        gitea.admin(&[
            "user",
            "create",
            "--username",
            USER,
            "--password",
            PASSWORD,
            "--email",
            "kedge@kedge.invalid",
            "--admin",
            "--must-change-password=false",
        ]);
        gitea.token = gitea.create_token();
        let created = gitea.api(
            "POST",
            "/api/v1/user/repos",
            Some(serde_json::json!({ "name": repo, "default_branch": "main", "private": false })),
        );
        assert_eq!(created["name"], repo, "{created}");
        gitea
    }

    fn wait_listening(&mut self) {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("gitea exited ({status}): {}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "gitea not listening after 120s: {}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("gitea.out")).unwrap_or_default()
    }

    /// `gitea admin ARGS` on this server's config.
    fn admin(&self, args: &[&str]) {
        let out = Command::new(&self.bin)
            .arg("admin")
            .args(args)
            .arg("--config")
            .arg(self.dir.join("app.ini"))
            .arg("--work-path")
            .arg(&self.dir)
            .env("HOME", &self.dir)
            .env("GITEA_WORK_DIR", &self.dir)
            .output()
            .expect("run gitea admin");
        assert!(
            out.status.success(),
            "gitea admin {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A token made through the API with the user's password.
    fn create_token(&self) -> String {
        kedge::source::install_tls_provider();
        let response = reqwest::blocking::Client::new()
            .post(self.url(&format!("/api/v1/users/{USER}/tokens")))
            .basic_auth(USER, Some(PASSWORD))
            .header("content-type", "application/json")
            .body(
                serde_json::json!({
                    "name": "kedge",
                    "scopes": ["write:repository", "write:user"],
                })
                .to_string(),
            )
            .send()
            .expect("create a Gitea token");
        let status = response.status();
        let body: serde_json::Value =
            serde_json::from_str(&response.text().unwrap_or_default()).expect("token JSON");
        assert!(status.is_success(), "creating a token: {status} {body}");
        body["sha1"].as_str().expect("token in sha1").to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// `http://127.0.0.1:PORT/USER/REPO`, the repository's address.
    pub fn repo_url(&self, repo: &str) -> String {
        self.url(&format!("/{USER}/{repo}"))
    }

    /// An API request with the token; the JSON answer.
    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        kedge::source::install_tls_provider();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = reqwest::blocking::Client::new()
            .request(method, self.url(path))
            .header("authorization", format!("token {}", self.token));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().expect("Gitea API request");
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }

    /// The statuses of `sha`, oldest first, as (context, state, description).
    pub fn statuses(&self, repo: &str, sha: &str) -> Vec<(String, String, String)> {
        let listed = self.api(
            "GET",
            &format!("/api/v1/repos/{USER}/{repo}/statuses/{sha}?sort=oldest&limit=50"),
            None,
        );
        let field =
            |s: &serde_json::Value, key: &str| s[key].as_str().unwrap_or_default().to_string();
        let mut statuses: Vec<(i64, (String, String, String))> = listed
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let state = s.get("status").or_else(|| s.get("state"));
                let state = state.and_then(|v| v.as_str()).unwrap_or_default();
                (
                    s["id"].as_i64().unwrap_or_default(),
                    (
                        field(s, "context"),
                        state.to_string(),
                        field(s, "description"),
                    ),
                )
            })
            .collect();
        statuses.sort_by_key(|(id, _)| *id);
        statuses.into_iter().map(|(_, s)| s).collect()
    }

    /// Pushes branch `main` of the work repository `work` to `USER/REPO`
    /// over HTTP.
    pub fn push(&self, work: &Path, repo: &str) {
        let url = format!(
            "http://{USER}:{}@127.0.0.1:{}/{USER}/{repo}.git",
            self.token, self.port
        );
        git(work, &["push", "-q", "--force", &url, "main"]);
    }
}

impl Drop for Gitea {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
