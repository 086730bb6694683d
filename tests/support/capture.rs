//! An HTTP server on 127.0.0.1 that records every request (method, path,
//! headers, body) and answers 200, or 500 to as many requests as it is
//! told to fail: the other end of kedge's alerts. Stopped when dropped.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;

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
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CaptureServer {
    /// Listens on `port` (0: any free one).
    pub fn start(port: u16) -> CaptureServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let captured = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (log, fail) = (captured.clone(), failures.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(accept(listener, log, fail, stopped));
        });
        CaptureServer {
            port,
            captured,
            failures,
            stop: Some(stop),
            thread: Some(thread),
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

impl Drop for CaptureServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    listener: TcpListener,
    captured: Arc<Mutex<Vec<Captured>>>,
    failures: Arc<AtomicUsize>,
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
        let (captured, failures) = (captured.clone(), failures.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (captured, failures) = (captured.clone(), failures.clone());
                async move {
                    Ok::<_, std::convert::Infallible>(record(request, &captured, &failures).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn record(
    request: hyper::Request<hyper::body::Incoming>,
    captured: &Mutex<Vec<Captured>>,
    failures: &AtomicUsize,
) -> hyper::Response<http_body_util::Full<hyper::body::Bytes>> {
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
    hyper::Response::builder()
        .status(status)
        .body(http_body_util::Full::new(hyper::body::Bytes::from_static(
            b"{}",
        )))
        .expect("response")
}
