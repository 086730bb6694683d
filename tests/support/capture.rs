//! An HTTP server on 127.0.0.1 that records every request (method, path,
//! headers, body) and answers 200, or 500 to as many requests as it is
//! told to fail: the other end of kedge's alerts. Stopped when dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

use super::http_server::{response, HttpServer, Request, Response};

/// One request received.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    /// Lower-case names.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Captured {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("{} {}: not JSON: {err}", self.method, self.path))
    }
}

pub struct CaptureServer {
    pub port: u16,
    captured: Arc<Mutex<Vec<Captured>>>,
    failures: Arc<AtomicUsize>,
    _server: HttpServer,
}

impl CaptureServer {
    /// Listens on `port` (0: any free one).
    pub fn start(port: u16) -> CaptureServer {
        CaptureServer::start_with(port, None)
    }

    /// Listens on any free port over TLS with `tls`'s certificate.
    pub fn start_tls(tls: tokio_rustls::TlsAcceptor) -> CaptureServer {
        CaptureServer::start_with(0, Some(tls))
    }

    fn start_with(port: u16, tls: Option<tokio_rustls::TlsAcceptor>) -> CaptureServer {
        let captured = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(0));
        let (log, fail) = (captured.clone(), failures.clone());
        let server = HttpServer::start(port, tls, move |request| {
            let (log, fail) = (log.clone(), fail.clone());
            async move { record(request, &log, &fail).await }
        });
        CaptureServer {
            port: server.port,
            captured,
            failures,
            _server: server,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Answers the next `count` requests with 500.
    pub fn fail_next(&self, count: usize) {
        self.failures.store(count, Ordering::SeqCst);
    }

    pub fn captured(&self) -> Vec<Captured> {
        self.captured.lock().expect("captured").clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn at(&self, prefix: &str) -> Vec<Captured> {
        self.captured()
            .into_iter()
            .filter(|c| c.path.starts_with(prefix))
            .collect()
    }
}

async fn record(
    request: Request,
    captured: &Mutex<Vec<Captured>>,
    failures: &AtomicUsize,
) -> Response {
    let (head, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let headers = head
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                value.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    captured.lock().expect("captured").push(Captured {
        method: head.method.to_string(),
        path: head.uri.path().to_string(),
        headers,
        body,
    });
    let failing = failures
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let status = if failing { 500 } else { 200 };
    response(status, &b"{}"[..])
}
