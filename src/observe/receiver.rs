//! Webhook receivers (`[receiver.NAME]`): a forge's push event, once its
//! signature or token checks out, makes the receiver's sources fetch at
//! once, exactly as `kedge reconcile source` does.
//!
//! # Guarantees
//! - Nothing happens unless the request is authenticated: HMAC-SHA256 of
//!   the exact body (`github`, `generic-hmac`) or the shared token
//!   (`gitlab`, `generic`), compared in constant time. Anything else is
//!   answered 401 (not authenticated) or 400 (not a push) and logged
//!   without the secret.
//! - A body past [`MAX_BODY`] is refused (413) before it is verified; at
//!   most [`BURST`] requests are served at once, then one per
//!   [`REFILL_EVERY`] (429 past that), whoever sends them.
//! - The secret is read from `secret_file` at each request (a rotated
//!   secret needs no reload) and never logged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use ring::hmac;
use tokio::sync::mpsc;

use super::endpoint::ask;
use super::http::{self, Handler, Received, Reply};
use super::rate::RateLimit;
use crate::config::{Receiver, ReceiverKind};
use crate::protocol::Call;
use crate::protocol::{self, Request};
use crate::source::store::hex;

/// The largest request body a receiver reads.
pub const MAX_BODY: usize = 1024 * 1024;
/// Requests a receiver serves at once before it rate-limits.
pub const BURST: u32 = 10;
/// How often a rate-limited receiver takes one more request.
pub const REFILL_EVERY: Duration = Duration::from_secs(1);

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no or a wrong signature or token.
    Unauthenticated(String),
    /// 400: authenticated, but not an event that means new commits.
    NotAPush(String),
}

/// What an authenticated request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// New commits: fetch the receiver's sources.
    Fetch,
    /// A forge's test delivery (GitHub's `ping`): answered, nothing fetched.
    Ping,
}

/// Checks `headers` and `body` against `secret` as `kind` signs them.
pub fn verify(
    kind: ReceiverKind,
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Verdict, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match kind {
        ReceiverKind::Github => {
            signed(
                secret,
                body,
                header("x-hub-signature-256"),
                "X-Hub-Signature-256",
            )?;
            match header("x-github-event") {
                Some("push") => Ok(Verdict::Fetch),
                Some("ping") => Ok(Verdict::Ping),
                other => Err(Refusal::NotAPush(format!(
                    "X-GitHub-Event {other:?} is not a push"
                ))),
            }
        }
        ReceiverKind::Gitlab => {
            token(secret, header("x-gitlab-token"), "X-Gitlab-Token")?;
            match header("x-gitlab-event") {
                Some("Push Hook" | "Tag Push Hook") => Ok(Verdict::Fetch),
                other => Err(Refusal::NotAPush(format!(
                    "X-Gitlab-Event {other:?} is not a push"
                ))),
            }
        }
        ReceiverKind::GenericHmac => {
            signed(secret, body, header("x-signature"), "X-Signature").map(|()| Verdict::Fetch)
        }
        ReceiverKind::Generic => token(
            secret,
            header("authorization").and_then(|v| v.strip_prefix("Bearer ")),
            "Authorization: Bearer",
        )
        .map(|()| Verdict::Fetch),
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`.
fn signed(secret: &[u8], body: &[u8], given: Option<&str>, header: &str) -> Result<(), Refusal> {
    let given = given.ok_or_else(|| Refusal::Unauthenticated(format!("no {header} header")))?;
    let given = given
        .strip_prefix("sha256=")
        .ok_or_else(|| Refusal::Unauthenticated(format!("{header} is not sha256=<hex>")))?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let expected = hex(hmac::sign(&key, body).as_ref());
    if equal_in_constant_time(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Unauthenticated(format!(
            "{header} does not match the body"
        )))
    }
}

fn token(secret: &[u8], given: Option<&str>, header: &str) -> Result<(), Refusal> {
    let given = given.ok_or_else(|| Refusal::Unauthenticated(format!("no {header} header")))?;
    if equal_in_constant_time(secret, given.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Unauthenticated(format!("wrong {header}")))
    }
}

/// Compares HMACs of both under one key: the time taken says nothing of
/// where, or whether in length, they differ.
fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"kedge receiver comparison");
    hmac::verify(&key, a, hmac::sign(&key, b).as_ref()).is_ok()
}

/// Serves `receiver`: authenticated pushes become `reconcile-source`
/// requests to the daemon's main loop through `calls`.
pub fn handler(receiver: Receiver, calls: mpsc::Sender<Call>) -> Handler {
    let receiver = Arc::new(receiver);
    let limit = Arc::new(Mutex::new(RateLimit::new(BURST, REFILL_EVERY)));
    Arc::new(move |request: Received| {
        let (receiver, calls, limit) = (receiver.clone(), calls.clone(), limit.clone());
        Box::pin(async move { answer(&receiver, &calls, &limit, request).await })
    })
}

async fn answer(
    receiver: &Receiver,
    calls: &mpsc::Sender<Call>,
    limit: &Mutex<RateLimit>,
    request: Received,
) -> Reply {
    let name = &receiver.name;
    if request.method != Method::POST {
        return http::text(StatusCode::METHOD_NOT_ALLOWED, "POST a webhook here\n");
    }
    let allowed = limit
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if !allowed {
        tracing::warn!(receiver = %name, peer = %request.peer, "webhook refused: rate limited");
        return http::text(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
    }
    let secret = match std::fs::read(&receiver.secret_file) {
        Ok(secret) => secret.trim_ascii_end().to_vec(),
        Err(err) => {
            tracing::error!(receiver = %name, "webhook refused: reading {}: {err}", receiver.secret_file.display());
            return http::text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the receiver's secret cannot be read\n",
            );
        }
    };
    match verify(receiver.kind, &secret, &request.headers, &request.body) {
        Ok(Verdict::Ping) => http::text(StatusCode::OK, "pong\n"),
        Ok(Verdict::Fetch) => {
            let sources: Vec<String> = receiver.resources.iter().map(ToString::to_string).collect();
            tracing::info!(receiver = %name, peer = %request.peer, "webhook accepted: fetching {}", sources.join(", "));
            for source in sources {
                request_fetch(name, calls, source);
            }
            http::text(StatusCode::ACCEPTED, "fetching\n")
        }
        Err(Refusal::Unauthenticated(why)) => {
            tracing::warn!(receiver = %name, peer = %request.peer, "webhook refused: {why}");
            http::text(StatusCode::UNAUTHORIZED, "not authenticated\n")
        }
        Err(Refusal::NotAPush(why)) => {
            tracing::info!(receiver = %name, peer = %request.peer, "webhook ignored: {why}");
            http::text(StatusCode::BAD_REQUEST, format!("{why}\n"))
        }
    }
}

/// Asks for a fetch of `source` as `kedge reconcile source` does; the
/// outcome is logged when it comes (the forge is answered at once).
fn request_fetch(receiver: &str, calls: &mpsc::Sender<Call>, source: String) {
    let (receiver, calls) = (receiver.to_string(), calls.clone());
    tokio::spawn(async move {
        let request = Request::ReconcileSource {
            name: source.clone(),
        };
        if let Some(protocol::Reply::Failed { message }) = ask(&calls, request).await {
            tracing::warn!(receiver = %receiver, source = %source, "fetch after webhook: {message}");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    fn signature(secret: &[u8], body: &[u8]) -> String {
        format!(
            "sha256={}",
            hex(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body).as_ref())
        )
    }

    #[test]
    fn github_pushes_are_fetched_pings_answered_and_other_events_refused() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let signed = signature(b"s3cret", body);
        let push = headers(&[("x-hub-signature-256", &signed), ("x-github-event", "push")]);
        assert_eq!(
            verify(ReceiverKind::Github, b"s3cret", &push, body),
            Ok(Verdict::Fetch)
        );
        let ping = headers(&[("x-hub-signature-256", &signed), ("x-github-event", "ping")]);
        assert_eq!(
            verify(ReceiverKind::Github, b"s3cret", &ping, body),
            Ok(Verdict::Ping)
        );
        let issue = headers(&[
            ("x-hub-signature-256", &signed),
            ("x-github-event", "issues"),
        ]);
        assert!(matches!(
            verify(ReceiverKind::Github, b"s3cret", &issue, body),
            Err(Refusal::NotAPush(_))
        ));
    }

    #[test]
    fn a_signature_of_another_body_or_key_is_refused() {
        let body = b"{}";
        for signed in [
            signature(b"other", body),
            signature(b"s3cret", b"{ }"),
            "sha1=00".into(),
        ] {
            let push = headers(&[("x-hub-signature-256", &signed), ("x-github-event", "push")]);
            assert!(
                matches!(
                    verify(ReceiverKind::Github, b"s3cret", &push, body),
                    Err(Refusal::Unauthenticated(_))
                ),
                "{signed}"
            );
            let generic = headers(&[("x-signature", &signed)]);
            assert!(matches!(
                verify(ReceiverKind::GenericHmac, b"s3cret", &generic, body),
                Err(Refusal::Unauthenticated(_))
            ));
        }
        let unsigned = headers(&[("x-github-event", "push")]);
        assert!(matches!(
            verify(ReceiverKind::Github, b"s3cret", &unsigned, body),
            Err(Refusal::Unauthenticated(_))
        ));
    }

    #[test]
    fn tokens_must_match_exactly() {
        let push =
            |token: &str| headers(&[("x-gitlab-token", token), ("x-gitlab-event", "Push Hook")]);
        assert_eq!(
            verify(ReceiverKind::Gitlab, b"tok", &push("tok"), b""),
            Ok(Verdict::Fetch)
        );
        for wrong in ["to", "tok ", "tokk", ""] {
            assert!(matches!(
                verify(ReceiverKind::Gitlab, b"tok", &push(wrong), b""),
                Err(Refusal::Unauthenticated(_))
            ));
        }
        let bearer = headers(&[("authorization", "Bearer tok")]);
        assert_eq!(
            verify(ReceiverKind::Generic, b"tok", &bearer, b""),
            Ok(Verdict::Fetch)
        );
        let basic = headers(&[("authorization", "Basic tok")]);
        assert!(verify(ReceiverKind::Generic, b"tok", &basic, b"").is_err());
    }
}
