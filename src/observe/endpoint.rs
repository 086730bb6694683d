//! `GET /metrics` on `[agent] metrics`, answered by the daemon's main loop
//! through the control channel (as `kedge metrics` is).

use std::sync::Arc;

use hyper::{Method, StatusCode};
use tokio::sync::{mpsc, oneshot};

use super::http::{self, Handler, Received, Reply};
use super::metrics::CONTENT_TYPE;
use crate::protocol::Call;
use crate::protocol::{self, Request};

/// The largest request body `/metrics` reads (a GET has none).
pub const MAX_BODY: usize = 1024;

/// Sends `request` to the daemon's main loop; `None` when it stopped.
pub async fn ask(calls: &mpsc::Sender<Call>, request: Request) -> Option<protocol::Reply> {
    let (reply, answer) = oneshot::channel();
    calls.send(Call { request, reply }).await.ok()?;
    answer.await.ok()
}

/// Serves `/metrics` (and `/`, a pointer to it).
pub fn metrics_handler(calls: mpsc::Sender<Call>) -> Handler {
    Arc::new(move |request: Received| {
        let calls = calls.clone();
        Box::pin(async move { answer(&calls, request).await })
    })
}

async fn answer(calls: &mpsc::Sender<Call>, request: Received) -> Reply {
    if request.method != Method::GET && request.method != Method::HEAD {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "GET /metrics\n");
    }
    match request.path.as_str() {
        "/metrics" => {}
        "/" => return http::text(StatusCode::OK, "kedge: metrics at /metrics\n"),
        _ => {
            return http::text(
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n",
            )
        }
    }
    match ask(calls, Request::Metrics).await {
        Some(protocol::Reply::Text { text, .. }) => {
            let mut reply = http::text(StatusCode::OK, text);
            reply.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE),
            );
            reply
        }
        Some(protocol::Reply::Failed { message }) => {
            http::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{message}\n"))
        }
        _ => http::text(StatusCode::SERVICE_UNAVAILABLE, "kedge is stopping\n"),
    }
}
