//! A real S3 server on loopback for bucket sources: versitygw (posix
//! backend) built by scripts/s3server.sh, which checks the SigV4 signature
//! of every request. Its access log counts the requests a sync made.
//!
//! Each test starts its own server (its own port, data directory and
//! credentials); dropping it stops the server.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedge::config::{Config, Source, SourceKind, SourceRef};
use kedge::source::SyncOutcome;
use kedge::state::SourceStatus;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStoreExt, PutPayload};

pub const ACCESS_KEY_ID: &str = "KEDGETESTACCESSKEY";
pub const SECRET_ACCESS_KEY: &str = "kedge-test-secret-DO-NOT-LOG-a8f3k2";

/// A running versitygw; stops when dropped.
pub struct S3Server {
    pub port: u16,
    root: PathBuf,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    if let Ok(bin) = std::env::var("KEDGE_S3SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3server.sh");
    let output = Command::new(&script)
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(output.status.success(), "{} path failed", script.display());
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl S3Server {
    /// Starts a server keeping its data under `root`, with `buckets` created
    /// empty, and writes the credential files `root/s3-id` and `root/s3-secret`.
    pub fn start(root: &Path, buckets: &[&str]) -> S3Server {
        for bucket in buckets {
            std::fs::create_dir_all(root.join("data").join(bucket)).expect("bucket directory");
        }
        std::fs::write(root.join("s3-id"), format!("{ACCESS_KEY_ID}\n")).expect("id file");
        std::fs::write(root.join("s3-secret"), format!("{SECRET_ACCESS_KEY}\n"))
            .expect("secret file");
        let mut server = S3Server {
            port: free_port(),
            root: root.to_path_buf(),
            child: None,
        };
        server.resume();
        server
    }

    /// `127.0.0.1:PORT`, as `endpoint` is written in the config.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn id_file(&self) -> PathBuf {
        self.root.join("s3-id")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.root.join("s3-secret")
    }

    fn access_log(&self) -> PathBuf {
        self.root.join("access.log")
    }

    /// Stops the server (its data stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the S3 server is already running");
        let log = std::fs::File::create(self.root.join("server.log")).expect("server log");
        let child = Command::new(binary())
            .args(["--access", ACCESS_KEY_ID, "--secret", SECRET_ACCESS_KEY])
            .arg("--port")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--access-log")
            .arg(self.access_log())
            .arg("--quiet")
            .arg("posix")
            .arg(self.root.join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start versitygw");
        self.child = Some(child);
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "versitygw not listening after 30s; see {}",
                self.root.join("server.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The S3 operations served so far (`s3_ListObjectsV2`, `s3_GetObject`,
    /// …) with their key, in order.
    pub fn requests(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.access_log()).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                // owner bucket [time +zone] ip requester id operation key ...
                Some((fields.get(7)?.to_string(), fields.get(8)?.to_string()))
            })
            .collect()
    }

    /// How many requests of `operation` were served so far.
    pub fn count(&self, operation: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(op, _)| op == operation)
            .count()
    }

    /// The `[bucket.fleet]` table of bucket `fleet` on this server, with
    /// `extra` lines.
    pub fn table(&self, extra: &str) -> String {
        format!(
            "[bucket.fleet]\nendpoint = \"{}\"\ninsecure = true\nbucket_name = \"fleet\"\naccess_key_id_file = {:?}\nsecret_access_key_file = {:?}\n{extra}\n",
            self.endpoint(),
            self.id_file().display().to_string(),
            self.secret_file().display().to_string(),
        )
    }

    /// Source `bucket/fleet` of [`table`](Self::table), with `state_dir`.
    pub fn source(&self, state_dir: &Path, extra: &str) -> Source {
        let text = format!(
            "[agent]\nstate_dir = {:?}\n{}",
            state_dir.display().to_string(),
            self.table(extra)
        );
        let config = Config::parse(Path::new("kedge.toml"), &text).expect("valid config");
        config
            .source(&SourceRef::new(SourceKind::Bucket, "fleet"))
            .cloned()
            .expect("bucket/fleet")
    }

    /// A client with the server's credentials, to fill a bucket.
    pub fn client(&self, bucket: &str) -> Arc<AmazonS3> {
        kedge::source::install_tls_provider();
        let store = AmazonS3Builder::new()
            .with_endpoint(format!("http://{}", self.endpoint()))
            .with_bucket_name(bucket)
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY_ID)
            .with_secret_access_key(SECRET_ACCESS_KEY)
            .with_virtual_hosted_style_request(false)
            .with_client_options(ClientOptions::new().with_allow_http(true))
            .build()
            .expect("S3 client");
        Arc::new(store)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Writes `objects` (key, content) into `bucket`, many at once.
pub async fn put_all(client: &Arc<AmazonS3>, objects: Vec<(String, Vec<u8>)>) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|(key, content)| {
            let client = client.clone();
            async move {
                client
                    .put(&ObjectPath::from(key.as_str()), PutPayload::from(content))
                    .await
                    .map_err(|err| format!("put {key}: {err}"))
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result.expect("object written");
    }
}

pub async fn put(client: &Arc<AmazonS3>, key: &str, content: &str) {
    put_all(client, vec![(key.to_string(), content.as_bytes().to_vec())]).await;
}

pub async fn delete(client: &Arc<AmazonS3>, key: &str) {
    client
        .delete(&ObjectPath::from(key))
        .await
        .unwrap_or_else(|err| panic!("delete {key}: {err}"));
}

/// The state row a successful sync of `bucket/fleet` leaves, for the next one.
pub fn status_after(outcome: &SyncOutcome) -> SourceStatus {
    outcome.as_status("bucket", "fleet")
}
