//! A static Helm chart repository on 127.0.0.1: serves the files of a
//! directory (`index.yaml`, `.tgz`) with ETag and Last-Modified and
//! answers conditional requests with 304; optionally only to one
//! `Authorization` value, over TLS, and with client certificates
//! required. Every request is logged for the tests to inspect. Stopped
//! when dropped.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

use super::git::{openssl, TestCa};
use super::http_server::{HttpServer, Request, Response};

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
    _server: HttpServer,
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

/// Serves `root` at `http(s)://127.0.0.1:PORT/charts/`.
pub fn serve(root: &Path, options: Options) -> ChartServer {
    let hits = Arc::new(Mutex::new(Vec::new()));
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
    let tls = options.tls.map(tokio_rustls::TlsAcceptor::from);
    let server = HttpServer::start(0, tls, move |request| {
        let response = respond(&state, request);
        async move { response }
    });
    ChartServer {
        port: server.port,
        root: root.to_path_buf(),
        hits,
        scheme,
        _server: server,
    }
}

struct State {
    root: PathBuf,
    authorization: Option<String>,
    hits: Arc<Mutex<Vec<Hit>>>,
}

fn respond(state: &State, request: Request) -> Response {
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
    let etag = format!(
        "\"{}\"",
        &kedge::source::store::hex(&sha2::Sha256::digest(&content))[..16]
    );
    let headers = vec![
        ("etag", etag.clone()),
        ("last-modified", "Mon, 30 Nov 2026 10:00:00 GMT".to_string()),
    ];
    if if_none_match.as_deref() == Some(etag.as_str()) {
        return (304, headers, Vec::new());
    }
    (200, headers, content)
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
