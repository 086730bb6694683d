//! A static Helm chart repository on 127.0.0.1: serves the files of a
//! directory (`index.yaml`, `.tgz`) with ETag and Last-Modified and
//! answers conditional requests with 304; optionally only to one
//! `Authorization` value, over TLS, and with client certificates
//! required. Every request is logged for the tests to inspect. Stopped
//! when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::git::{openssl, TestCa};

/// One request the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub path: String,
    pub status: u16,
    pub conditional: bool,
}

#[derive(Default)]
pub struct Options {
    /// The one `Authorization` header value accepted.
    pub authorization: Option<String>,
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

pub struct ChartServer {
    pub port: u16,
    pub root: PathBuf,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    scheme: &'static str,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChartServer {
    pub fn url(&self) -> String {
        format!("{}://127.0.0.1:{}/charts", self.scheme, self.port)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("hits").clone()
    }

    pub fn clear_hits(&self) {
        self.hits.lock().expect("hits").clear();
    }
}

impl Drop for ChartServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves `root` at `http(s)://127.0.0.1:PORT/charts/`.
pub fn serve(root: &Path, options: Options) -> ChartServer {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("local addr").port();
    let hits = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let state = Arc::new(State {
        root: root.to_path_buf(),
        authorization: options.authorization,
        hits: hits.clone(),
    });
    let acceptor = options.tls.map(tokio_rustls::TlsAcceptor::from);
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(accept(listener, acceptor, state, stopped));
    });
    ChartServer {
        port,
        root: root.to_path_buf(),
        hits,
        scheme,
        stop: Some(stop),
        thread: Some(thread),
    }
}

struct State {
    root: PathBuf,
    authorization: Option<String>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

async fn accept(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<State>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let (state, acceptor) = (state.clone(), acceptor.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&state, request)) }
            });
            let http = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = http
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    }
                }
                None => {
                    let _ = http
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}

type Response = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

fn respond(state: &State, request: hyper::Request<hyper::body::Incoming>) -> Response {
    let path = request.uri().path().to_string();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let if_none_match = header("if-none-match");
    let conditional = if_none_match.is_some() || header("if-modified-since").is_some();
    let (status, headers, body) = answer(state, &path, header("authorization"), if_none_match);
    state.hits.lock().expect("hits").push(Hit {
        path,
        status,
        conditional,
    });
    let mut response = hyper::Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .expect("response")
}

fn answer(
    state: &State,
    path: &str,
    authorization: Option<String>,
    if_none_match: Option<String>,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    if state.authorization.is_some() && authorization != state.authorization {
        return (
            401,
            vec![("www-authenticate", "Basic realm=\"charts\"".to_string())],
            Vec::new(),
        );
    }
    let Some(relative) = path.strip_prefix("/charts/") else {
        return (404, Vec::new(), Vec::new());
    };
    if relative.contains("..") {
        return (404, Vec::new(), Vec::new());
    }
    let Ok(content) = std::fs::read(state.root.join(relative)) else {
        return (404, Vec::new(), Vec::new());
    };
    let etag = format!("\"{}\"", &hex(&sha2::Sha256::digest(&content))[..16]);
    let headers = vec![
        ("etag", etag.clone()),
        ("last-modified", "Mon, 30 Nov 2026 10:00:00 GMT".to_string()),
    ];
    if if_none_match.as_deref() == Some(etag.as_str()) {
        return (304, headers, Vec::new());
    }
    (200, headers, content)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A client certificate signed by `ca`, for mutual TLS.
pub struct ClientCert {
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
}

pub fn client_cert(dir: &Path) -> ClientCert {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.csr",
            "-subj",
            "/CN=kedge",
        ],
    );
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write client.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "client.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "client.pem",
            "-days",
            "2",
            "-extfile",
            "client.ext",
        ],
    );
    ClientCert {
        cert_pem: dir.join("client.pem"),
        key_pem: dir.join("client.key"),
    }
}

/// A TLS server config for `ca`'s server certificate; with
/// `require_client_cert`, only clients with a certificate `ca` signed.
pub fn tls_config(
    ca: &TestCa,
    require_client_cert: bool,
) -> Arc<tokio_rustls::rustls::ServerConfig> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(&ca.cert_pem)
        .expect("server.pem")
        .collect::<Result<Vec<_>, _>>()
        .expect("parse server.pem");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&ca.key_pem).expect("server.key");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("TLS versions");
    let builder = if require_client_cert {
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls::pki_types::CertificateDer::pem_file_iter(&ca.ca_pem).expect("ca.pem") {
            roots.add(cert.expect("parse ca.pem")).expect("add CA");
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Arc::new(
        builder
            .with_single_cert(certs, key)
            .expect("server certificate"),
    )
}
