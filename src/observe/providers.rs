//! What each alert provider is sent: the request (method, URL, headers,
//! body) for one event, in the payload shapes Flux's notification-controller
//! sends, so the receiving side configured for Flux works unchanged.

use std::collections::BTreeMap;

use ring::hmac;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{Alert, AlertProvider, SourceKind};
use crate::source::store::hex;

/// Where Telegram's Bot API is, unless `address` says otherwise.
pub const TELEGRAM_API: &str = "https://api.telegram.org";

/// An event as Flux's generic webhook sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlertEvent {
    pub involved_object: InvolvedObject,
    /// `info` or `error`.
    pub severity: String,
    /// RFC 3339.
    pub timestamp: String,
    pub message: String,
    pub reason: String,
    /// `revision`, `summary`.
    pub metadata: BTreeMap<String, String>,
    pub reporting_controller: String,
    /// The node's host name.
    pub reporting_instance: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvolvedObject {
    /// Flux's kind: `Kustomization`, `GitRepository`, …
    pub kind: String,
    pub name: String,
}

/// kedge's kinds and Flux's: the owners', then every source kind's.
fn kinds() -> impl Iterator<Item = (&'static str, &'static str)> {
    [
        ("kustomization", "Kustomization"),
        ("helm_release", "HelmRelease"),
    ]
    .into_iter()
    .chain(
        SourceKind::ALL
            .iter()
            .map(|kind| (kind.as_str(), kind.flux_kind())),
    )
}

/// Flux's kind for kedge's `kind`.
pub fn flux_kind(kind: &str) -> &str {
    kinds()
        .find(|(kedge, _)| *kedge == kind)
        .map_or(kind, |(_, flux)| flux)
}

impl AlertEvent {
    /// `kustomization/apps`, as kedge names objects everywhere.
    pub fn object(&self) -> String {
        let kind = kinds()
            .find(|(_, flux)| *flux == self.involved_object.kind)
            .map_or(self.involved_object.kind.as_str(), |(kedge, _)| kedge);
        format!("{kind}/{}", self.involved_object.name)
    }

    fn is_error(&self) -> bool {
        self.severity == "error"
    }

    /// The plain-text message of the chat providers without cards.
    fn text(&self) -> String {
        let emoji = if self.is_error() { "🚨" } else { "💫" };
        let mut text = format!("{emoji} {}\n{}\n", self.object(), self.message);
        for (key, value) in &self.metadata {
            text.push_str(&format!("- {key}: {value}\n"));
        }
        text
    }
}

/// One HTTP request to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRequest {
    /// `POST`, or `PUT` (Matrix).
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

/// The request that delivers `event` through `alert`, to `address`, with
/// the contents of `token_file`; `None` when the provider skips such
/// events (Google Chat, like Flux, skips `Progressing`).
pub fn request(
    alert: &Alert,
    address: &str,
    token: Option<&str>,
    event: &AlertEvent,
) -> Option<ProviderRequest> {
    let bearer = token.map(|token| ("authorization", format!("Bearer {token}")));
    let post = |url: String, body: serde_json::Value, headers: Vec<(&'static str, String)>| {
        Some(ProviderRequest {
            method: "POST",
            url,
            headers,
            body: body.to_string().into_bytes(),
        })
    };
    let component = ("gotk-component", event.reporting_controller.clone());
    match alert.provider {
        AlertProvider::Generic => post(
            address.to_string(),
            json!(event),
            [Some(component), bearer].into_iter().flatten().collect(),
        ),
        AlertProvider::GenericHmac => {
            let body = json!(event).to_string().into_bytes();
            let key = hmac::Key::new(hmac::HMAC_SHA256, token.unwrap_or_default().as_bytes());
            let signature = format!("sha256={}", hex(hmac::sign(&key, &body).as_ref()));
            Some(ProviderRequest {
                method: "POST",
                url: address.to_string(),
                headers: vec![component, ("x-signature", signature)],
                body,
            })
        }
        AlertProvider::Slack => post(
            address.to_string(),
            slack(alert, event),
            bearer.into_iter().collect(),
        ),
        AlertProvider::Discord => {
            let url = if address.trim_end_matches('/').ends_with("/slack") {
                address.to_string()
            } else {
                format!("{}/slack", address.trim_end_matches('/'))
            };
            post(url, slack(alert, event), Vec::new())
        }
        AlertProvider::Msteams => post(address.to_string(), msteams(event), Vec::new()),
        AlertProvider::Googlechat if event.reason == "Progressing" => None,
        AlertProvider::Googlechat => post(address.to_string(), google_chat(event), Vec::new()),
        AlertProvider::Matrix => {
            let body = json!({ "msgtype": "m.text", "body": event.text() });
            let transaction = hex(&sha2_digest(&json!(event).to_string()));
            Some(ProviderRequest {
                method: "PUT",
                url: format!(
                    "{}/_matrix/client/r0/rooms/{}/send/m.room.message/{transaction}",
                    address.trim_end_matches('/'),
                    path_segment(alert.channel.as_deref().unwrap_or_default()),
                ),
                headers: bearer.into_iter().collect(),
                body: body.to_string().into_bytes(),
            })
        }
        AlertProvider::Telegram => post(
            format!(
                "{}/bot{}/sendMessage",
                address.trim_end_matches('/'),
                token.unwrap_or_default()
            ),
            json!({ "chat_id": alert.channel, "text": event.text() }),
            Vec::new(),
        ),
        AlertProvider::Alertmanager => post(
            address.to_string(),
            alertmanager(event),
            bearer.into_iter().collect(),
        ),
        // Commit statuses: `forge::request`, which can tell why none is sent.
        AlertProvider::Github | AlertProvider::Gitlab | AlertProvider::Gitea => None,
    }
}

fn fields(event: &AlertEvent) -> Vec<serde_json::Value> {
    event
        .metadata
        .iter()
        .map(|(key, value)| json!({ "title": key, "value": value, "short": false }))
        .collect()
}

fn slack(alert: &Alert, event: &AlertEvent) -> serde_json::Value {
    let mut payload = json!({
        "username": alert.username.as_deref().unwrap_or(&event.reporting_controller),
        "attachments": [{
            "color": if event.is_error() { "danger" } else { "good" },
            "author_name": event.object(),
            "text": event.message,
            "mrkdwn_in": ["text"],
            "fields": fields(event),
        }],
    });
    if let Some(channel) = &alert.channel {
        payload["channel"] = json!(channel);
    }
    payload
}

fn msteams(event: &AlertEvent) -> serde_json::Value {
    let facts: Vec<serde_json::Value> = event
        .metadata
        .iter()
        .map(|(key, value)| json!({ "name": key, "value": value }))
        .collect();
    json!({
        "@type": "MessageCard",
        "@context": "http://schema.org/extensions",
        "themeColor": if event.is_error() { "FF0000" } else { "0076D7" },
        "summary": event.object(),
        "sections": [{
            "activityTitle": event.message,
            "activitySubtitle": event.object(),
            "facts": facts,
        }],
    })
}

fn google_chat(event: &AlertEvent) -> serde_json::Value {
    let message = if event.is_error() {
        format!("<font color=\"#ff0000\">{}</font>", event.message)
    } else {
        event.message.clone()
    };
    let mut values =
        vec![json!({ "keyValue": { "topLabel": "TIMESTAMP", "content": event.timestamp } })];
    values.extend(
        event
            .metadata
            .iter()
            .map(|(key, value)| json!({ "keyValue": { "topLabel": key, "content": value } })),
    );
    json!({
        "cards": [{
            "header": { "title": event.object(), "subtitle": event.reporting_controller },
            "sections": [
                { "widgets": [{ "textParagraph": { "text": message } }] },
                { "widgets": values },
            ],
        }],
    })
}

fn alertmanager(event: &AlertEvent) -> serde_json::Value {
    let mut labels: BTreeMap<String, String> = event
        .metadata
        .iter()
        .filter(|(key, _)| key.as_str() != "summary")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let kind = &event.involved_object.kind;
    labels.insert("alertname".into(), format!("Kedge{kind}{}", event.reason));
    labels.insert("severity".into(), event.severity.clone());
    labels.insert("reason".into(), event.reason.clone());
    labels.insert("timestamp".into(), event.timestamp.clone());
    labels.insert("kind".into(), kind.clone());
    labels.insert("name".into(), event.involved_object.name.clone());
    labels.insert(
        "reportingcontroller".into(),
        event.reporting_controller.clone(),
    );
    labels.insert("instance".into(), event.reporting_instance.clone());
    let mut annotations = BTreeMap::from([("message".to_string(), event.message.clone())]);
    if let Some(summary) = event.metadata.get("summary") {
        annotations.insert("summary".into(), summary.clone());
    }
    json!([{ "status": "firing", "labels": labels, "annotations": annotations }])
}

fn sha2_digest(text: &str) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).to_vec()
}

/// `text` as one URL path segment: unreserved characters kept, the rest
/// percent-encoded (a Matrix room id is `!id:server`, a GitLab project
/// `group/project`).
pub(super) fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_between_kedge_and_flux() {
        for (kedge, flux) in kinds() {
            assert_eq!(flux_kind(kedge), flux);
            let event = AlertEvent {
                involved_object: InvolvedObject {
                    kind: flux.to_string(),
                    name: "x".into(),
                },
                severity: "info".into(),
                timestamp: String::new(),
                message: String::new(),
                reason: String::new(),
                metadata: BTreeMap::new(),
                reporting_controller: "kedge".into(),
                reporting_instance: "node".into(),
            };
            assert_eq!(event.object(), format!("{kedge}/x"));
        }
    }

    #[test]
    fn a_room_id_is_one_path_segment() {
        assert_eq!(path_segment("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(path_segment("a/b"), "a%2Fb");
    }
}
