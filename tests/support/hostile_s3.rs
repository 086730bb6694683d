//! A hostile S3 endpoint on loopback: it lists whatever keys it is given
//! (`../escape.yaml`, empty segments) that a real server refuses to store,
//! and serves their content. It checks no signature: it plays a
//! compromised server, the case the refusal of such keys is for.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Response = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

/// A running hostile server; stops when dropped.
pub struct HostileS3 {
    pub port: u16,
    gets: Arc<AtomicUsize>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HostileS3 {
    /// Serves bucket `fleet` holding `objects` (key, content).
    pub fn start(objects: Vec<(String, String)>) -> HostileS3 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("address").port();
        let gets = Arc::new(AtomicUsize::new(0));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let counter = gets.clone();
        let objects = Arc::new(objects);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(serve(listener, objects, counter, stopped));
        });
        HostileS3 {
            port,
            gets,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// How many GETs of an object it answered.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }
}

impl Drop for HostileS3 {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    objects: Arc<Vec<(String, String)>>,
    gets: Arc<AtomicUsize>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let (objects, gets) = (objects.clone(), gets.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let (objects, gets) = (objects.clone(), gets.clone());
                async move { Ok::<_, std::convert::Infallible>(answer(&request, &objects, &gets)) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

fn answer(
    request: &hyper::Request<hyper::body::Incoming>,
    objects: &[(String, String)],
    gets: &AtomicUsize,
) -> Response {
    let path = request.uri().path();
    if path == "/fleet" || path == "/fleet/" {
        let contents: String = objects
            .iter()
            .map(|(key, content)| {
                format!(
                    "<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"{}\"</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                    content.len(),
                    content.len()
                )
            })
            .collect();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>fleet</Name><Prefix></Prefix><KeyCount>{}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
            objects.len()
        );
        return respond(200, body.into_bytes());
    }
    gets.fetch_add(1, Ordering::Relaxed);
    let key = path.trim_start_matches("/fleet/");
    match objects.iter().find(|(k, _)| k == key) {
        Some((_, content)) => respond(200, content.clone().into_bytes()),
        None => respond(404, b"<Error><Code>NoSuchKey</Code></Error>".to_vec()),
    }
}

fn respond(status: u16, body: Vec<u8>) -> Response {
    hyper::Response::builder()
        .status(status)
        .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))
        .unwrap_or_else(|_| hyper::Response::new(http_body_util::Full::default()))
}
