//! The small HTTP/1.1 server behind `/metrics` and the webhook receivers:
//! hyper on a TCP listener, bounded in connections, time and body size.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

/// Connections served at once by one listener; more wait in the backlog.
pub const MAX_CONNECTIONS: usize = 32;
/// How long a client may take to send its request headers.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(5);
/// How long one connection may stay open, whatever it does.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// A request as a handler sees it: head and whole body, read up to the
/// server's limit.
pub struct Received {
    pub method: hyper::Method,
    pub path: String,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    pub peer: SocketAddr,
}

pub type Reply = Response<Full<Bytes>>;
pub type Handler =
    Arc<dyn Fn(Received) -> Pin<Box<dyn Future<Output = Reply> + Send>> + Send + Sync>;

/// A plain-text reply.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Reply {
    let mut reply = Response::new(Full::new(body.into()));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

/// Binds `address`, naming it in the error.
pub async fn bind(address: SocketAddr, what: &str) -> Result<TcpListener, super::Error> {
    TcpListener::bind(address)
        .await
        .map_err(|source| super::Error::Bind {
            what: what.to_string(),
            address,
            source,
        })
}

/// Serves `handler` on `listener` until `shutdown` becomes `true`. A body
/// past `max_body` bytes is answered 413 without calling the handler.
pub async fn serve(
    listener: TcpListener,
    max_body: usize,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stopped(&mut shutdown) => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut shutdown) => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                tracing::warn!("accepting on {:?}: {err}", listener.local_addr().ok());
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let handler = handler.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(
                        answer(request, peer, max_body, &handler).await,
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(permit);
        });
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn answer(
    request: Request<Incoming>,
    peer: SocketAddr,
    max_body: usize,
    handler: &Handler,
) -> Reply {
    let (head, body) = request.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {max_body} bytes\n"),
            )
        }
        Err(_) => return text(StatusCode::BAD_REQUEST, "the body could not be read\n"),
    };
    handler(Received {
        method: head.method,
        path: head.uri.path().to_string(),
        headers: head.headers,
        body,
        peer,
    })
    .await
}
