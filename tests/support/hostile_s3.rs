//! A hostile S3 endpoint on loopback: it lists whatever keys it is given
//! (`../escape.yaml`, empty segments) that a real server refuses to store,
//! and serves their content. It checks no signature: it plays a
//! compromised server, the case the refusal of such keys is for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::http_server::{response, HttpServer, Request, Response};

/// A running hostile server; stops when dropped.
pub struct HostileS3 {
    pub port: u16,
    gets: Arc<AtomicUsize>,
    _server: HttpServer,
}

impl HostileS3 {
    /// Serves bucket `fleet` holding `objects` (key, content).
    pub fn start(objects: Vec<(String, String)>) -> HostileS3 {
        let gets = Arc::new(AtomicUsize::new(0));
        let counter = gets.clone();
        let server = HttpServer::start(0, None, move |request| {
            let response = answer(&request, &objects, &counter);
            async move { response }
        });
        HostileS3 {
            port: server.port,
            gets,
            _server: server,
        }
    }

    /// How many GETs of an object it answered.
    pub fn gets(&self) -> usize {
        self.gets.load(Ordering::Relaxed)
    }
}

fn answer(request: &Request, objects: &[(String, String)], gets: &AtomicUsize) -> Response {
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
        return response(200, body);
    }
    gets.fetch_add(1, Ordering::Relaxed);
    let key = path.trim_start_matches("/fleet/");
    match objects.iter().find(|(k, _)| k == key) {
        Some((_, content)) => response(200, content.clone()),
        None => response(404, &b"<Error><Code>NoSuchKey</Code></Error>"[..]),
    }
}
