//! Git fixtures and real Git servers on loopback: `git daemon`, smart HTTP
//! through `git http-backend` (a small CGI bridge in this process, with
//! Basic auth), and Debian's `sshd`. Every server is stopped when its value
//! is dropped.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::http_server::{HttpServer, Request, Response};

/// Runs `git` with a fixed identity and no user config; panics with its
/// stderr when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with_env(dir, args, &[])
}

/// [`git`] with more environment variables (e.g. `GNUPGHOME`).
pub fn git_with_env(dir: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let out = Command::new("git")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "kedge test")
        .env("GIT_AUTHOR_EMAIL", "test@kedge.invalid")
        .env("GIT_COMMITTER_NAME", "kedge test")
        .env("GIT_COMMITTER_EMAIL", "test@kedge.invalid")
        .output()
        .unwrap_or_else(|e| panic!("cannot run git {args:?}: {e} (is git installed?)"));
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work repository (branch `main`) under `root/NAME/work`, with a bare
/// copy `root/NAME.git` that servers export and that [`FixtureRepo::push`]
/// updates.
pub struct FixtureRepo {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl FixtureRepo {
    pub fn new(root: &Path, name: &str) -> FixtureRepo {
        let work = root.join(name).join("work");
        let bare = root.join(format!("{name}.git"));
        std::fs::create_dir_all(&work).expect("create fixture dir");
        git(&work, &["init", "-q", "-b", "main"]);
        git(
            root,
            &[
                "init",
                "-q",
                "--bare",
                "-b",
                "main",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        git(
            &work,
            &[
                "remote",
                "add",
                "origin",
                bare.to_str().expect("utf-8 path"),
            ],
        );
        FixtureRepo { work, bare }
    }

    /// Writes `files` (path, content), commits everything, pushes all
    /// branches and tags, and returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (path, content) in files {
            let path = self.work.join(path);
            std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("write fixture file");
        }
        self.commit_all(message)
    }

    /// Commits whatever is in the work tree and pushes.
    pub fn commit_all(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.push();
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn tag(&self, name: &str) {
        git(&self.work, &["tag", "-a", name, "-m", name]);
        self.push();
    }

    pub fn push(&self) {
        git(&self.work, &["push", "-q", "--force", "origin", "--all"]);
        git(&self.work, &["push", "-q", "--force", "origin", "--tags"]);
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port on 127.0.0.1")
}

pub fn wait_for_port(port: u16, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on 127.0.0.1:{port}: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on 127.0.0.1:{port} within 10s");
}

/// A child process killed on drop.
pub struct Server {
    pub port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `git daemon` exporting every repository under `base` on 127.0.0.1;
/// `git://127.0.0.1:PORT/NAME.git`.
pub fn git_daemon(base: &Path) -> Server {
    let port = free_port();
    // `git daemon` would fork `git-daemon` and leave it running when killed.
    let exec_path = git(base, &["--exec-path"]);
    let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
            &base.display().to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn git daemon (is git installed?)");
    wait_for_port(port, "git daemon", &mut child);
    Server { port, child }
}

/// Generates an ed25519 key pair at `path` (and `path.pub`).
pub fn ssh_keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kedge-test", "-f"])
        .arg(path)
        .output()
        .expect("run ssh-keygen (Debian package openssh-client)");
    assert!(
        out.status.success(),
        "ssh-keygen failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Debian's `sshd` on 127.0.0.1 with a generated host key, accepting
/// `client_key.pub` for the current user.
pub struct Sshd {
    pub server: Server,
    /// The `known_hosts` line for this server's real host key.
    pub known_hosts_line: String,
}

pub fn sshd(dir: &Path, client_public_key: &Path) -> Sshd {
    let sshd = Path::new("/usr/sbin/sshd");
    assert!(
        sshd.is_file(),
        "/usr/sbin/sshd is missing: the SSH tests need Debian's openssh-server (apt-get install -y openssh-server)"
    );
    // sshd started as root wants its privilege separation directory.
    let _ = std::fs::create_dir_all("/run/sshd");
    let host_key = dir.join("ssh_host_ed25519_key");
    ssh_keygen(&host_key);
    let authorized = dir.join("authorized_keys");
    std::fs::copy(client_public_key, &authorized).expect("write authorized_keys");
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "ListenAddress 127.0.0.1:{port}\nHostKey {}\nAuthorizedKeysFile {}\nPidFile {}\n\
             StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display(),
        ),
    )
    .expect("write sshd_config");
    let mut child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn /usr/sbin/sshd");
    wait_for_port(port, "sshd", &mut child);
    let public =
        std::fs::read_to_string(host_key.with_extension("pub")).expect("read host public key");
    let mut fields = public.split_whitespace();
    let known_hosts_line = format!(
        "[127.0.0.1]:{port} {} {}\n",
        fields.next().expect("key type"),
        fields.next().expect("key data")
    );
    Sshd {
        server: Server { port, child },
        known_hosts_line,
    }
}

/// Smart HTTP through `git http-backend`, served by a small CGI bridge on
/// 127.0.0.1 that demands Basic auth with one user and password.
pub struct HttpGit {
    pub port: u16,
    _server: HttpServer,
}

pub fn base64(input: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(input)
}

/// A private CA and a server certificate for 127.0.0.1 it signed, made
/// with the `openssl` command (Debian package `openssl`).
pub struct TestCa {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn test_ca(dir: &Path) -> TestCa {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-subj",
        "/CN=kedge test CA",
        "-days",
        "2",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write extensions");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
    TestCa {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.pem"),
        key_pem: dir.join("server.key"),
    }
}

/// A TLS acceptor presenting `ca`'s server certificate for 127.0.0.1.
pub fn tls_acceptor(ca: &TestCa) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&ca.cert_pem)
        .expect("read server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse server.pem");
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_file(&ca.key_pem).expect("parse server.key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate");
    tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config))
}

/// Serves every repository under `project_root` at
/// `http://127.0.0.1:PORT/NAME.git` (or `https://` with `tls`), for
/// `user`:`password` only.
pub fn http_git(project_root: &Path, user: &str, password: &str, tls: Option<&TestCa>) -> HttpGit {
    let expected = format!("Basic {}", base64(format!("{user}:{password}").as_bytes()));
    serve_git(project_root, expected, user, tls)
}

/// Like [`http_git`], for `Authorization: Bearer TOKEN` only.
pub fn http_git_bearer(project_root: &Path, token: &str, tls: Option<&TestCa>) -> HttpGit {
    serve_git(project_root, format!("Bearer {token}"), "token", tls)
}

fn serve_git(project_root: &Path, expected: String, user: &str, tls: Option<&TestCa>) -> HttpGit {
    let (root, user) = (Arc::new(project_root.to_path_buf()), user.to_string());
    let expected = Arc::new(expected);
    let server = HttpServer::start(0, tls.map(tls_acceptor), move |request| {
        let (root, expected, user) = (root.clone(), expected.clone(), user.clone());
        async move { cgi(request, &root, &expected, &user).await }
    });
    HttpGit {
        port: server.port,
        _server: server,
    }
}

fn respond(status: u16, headers: &[(&str, &str)], body: Vec<u8>) -> Response {
    let mut response = hyper::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("valid response")
}

async fn cgi(request: Request, root: &Path, expected: &str, user: &str) -> Response {
    use http_body_util::BodyExt;
    use tokio::io::AsyncWriteExt;

    let authorized = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == expected);
    if !authorized {
        return respond(
            401,
            &[("www-authenticate", "Basic realm=\"kedge-test\"")],
            b"unauthorized\n".to_vec(),
        );
    }
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (method, path, query) = (
        request.method().to_string(),
        request.uri().path().to_string(),
        request.uri().query().unwrap_or("").to_string(),
    );
    let (content_type, encoding, protocol) = (
        header("content-type"),
        header("content-encoding"),
        header("git-protocol"),
    );
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return respond(400, &[], Vec::new()),
    };
    let mut child = tokio::process::Command::new("git")
        .arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", encoding)
        .env("GIT_PROTOCOL", protocol)
        .env("REMOTE_USER", user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn git http-backend");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let writer = tokio::spawn(async move {
        let _ = stdin.write_all(&body).await;
    });
    let output = child
        .wait_with_output()
        .await
        .expect("git http-backend output");
    let _ = writer.await;
    cgi_response(&output.stdout)
}

/// Splits a CGI response into its status, headers and body.
fn cgi_response(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| (at, 4));
    let split = split.or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|at| (at, 2)));
    let Some((at, separator)) = split else {
        return respond(502, &[], raw.to_vec());
    };
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        if name.eq_ignore_ascii_case("status") {
            status = value
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(500);
        } else {
            headers.push((name.trim().to_string(), value));
        }
    }
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    respond(status, &headers, raw[at + separator..].to_vec())
}
