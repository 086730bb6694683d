//! The observability keys: `[agent] metrics` and `[receiver.NAME]` tables.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::forge::{self, ForgeRepository};
use super::raw::{RawAlert, RawReceiver};
use super::validate::Checker;
use super::{
    Alert, AlertAddress, AlertProvider, Receiver, ReceiverKind, Source, SourceKind, SourceRef,
};
use crate::state::Severity;

/// The kinds of object an alert's `events` may name, besides sources.
const RECONCILED_KINDS: &[&str] = &["kustomization", "helm_release"];

/// The most sources one receiver may trigger.
pub const MAX_RECEIVER_RESOURCES: usize = 100;

impl Checker<'_> {
    /// `[agent] metrics`: a socket address, on loopback unless
    /// `metrics_allow_remote` says otherwise (the endpoint has no
    /// authentication; it tells what the node runs).
    pub(super) fn metrics_address(
        &mut self,
        value: &Spanned<String>,
        allow_remote: bool,
    ) -> Option<SocketAddr> {
        let address = self.socket_address(value, "agent.metrics")?;
        if !allow_remote && !address.ip().is_loopback() {
            self.problem(
                value.span(),
                "agent.metrics",
                format!(
                    "{address} is not a loopback address; set metrics_allow_remote = true to serve metrics to other hosts"
                ),
            );
            return None;
        }
        Some(address)
    }

    pub(super) fn receiver(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawReceiver>,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<Receiver> {
        let raw = raw.into_inner();
        let before = self.problems.len();
        let listen = self.socket_address(&raw.listen, &format!("{key}.listen"));
        let kind = ReceiverKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == raw.kind.get_ref());
        if kind.is_none() {
            let known: Vec<String> = ReceiverKind::ALL
                .iter()
                .map(|k| format!("{:?}", k.as_str()))
                .collect();
            self.problem(
                raw.kind.span(),
                &format!("{key}.type"),
                format!(
                    "unknown receiver type {:?}: kedge knows {}",
                    raw.kind.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let secret_file = match &raw.secret_file {
            Some(file) => self.absolute_path(file, &format!("{key}.secret_file"), true),
            None => {
                self.problem(
                    raw.listen.span(),
                    &format!("{key}.secret_file"),
                    "a receiver needs secret_file: kedge accepts no unauthenticated webhook",
                );
                None
            }
        };
        let resources_key = format!("{key}.resources");
        if raw.resources.is_empty() {
            self.problem(
                raw.listen.span(),
                &resources_key,
                "name at least one source to fetch, e.g. resources = [\"git/fleet\"]",
            );
        }
        if let Some(over) = raw.resources.get(MAX_RECEIVER_RESOURCES) {
            self.problem(
                over.span(),
                &resources_key,
                format!("a receiver triggers at most {MAX_RECEIVER_RESOURCES} sources"),
            );
        }
        let resources: Vec<SourceRef> = raw
            .resources
            .iter()
            .filter_map(|resource| self.configured_source(resource, &resources_key, sources))
            .collect();
        if self.problems.len() != before {
            return None;
        }
        Some(Receiver {
            name: name.to_string(),
            listen: listen?,
            kind: kind?,
            secret_file: secret_file?,
            resources,
        })
    }

    fn socket_address(&mut self, value: &Spanned<String>, key: &str) -> Option<SocketAddr> {
        match value.get_ref().parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                self.problem(
                    value.span(),
                    key,
                    format!(
                        "{:?} is not an address and port, e.g. \"127.0.0.1:9797\" or \"[::1]:9797\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }
}

impl Checker<'_> {
    pub(super) fn alert(&mut self, name: &str, key: &str, raw: Spanned<RawAlert>) -> Option<Alert> {
        let span = raw.span();
        let raw = raw.into_inner();
        let before = self.problems.len();
        let provider = self.alert_provider(&raw.provider, &format!("{key}.provider"));
        let address = match (&raw.address, &raw.address_file) {
            (Some(_), Some(file)) => {
                self.problem(
                    file.span(),
                    &format!("{key}.address_file"),
                    "give either address or address_file, not both",
                );
                None
            }
            (Some(address), None) => self
                .alert_url(address.get_ref(), address.span(), &format!("{key}.address"))
                .filter(|url| self.forge_address(provider, url, address.span(), key))
                .map(AlertAddress::Inline),
            (None, Some(file)) => self
                .absolute_path(file, &format!("{key}.address_file"), true)
                .map(AlertAddress::File),
            (None, None) => None,
        };
        let token_file = raw
            .token_file
            .as_ref()
            .and_then(|file| self.absolute_path(file, &format!("{key}.token_file"), true));
        let ca_file = raw
            .ca_file
            .as_ref()
            .and_then(|file| self.absolute_path(file, &format!("{key}.ca_file"), true));
        if matches!(&raw.address, Some(a) if a.get_ref().starts_with("http://")) {
            self.not_over_plain_http(key, &[(&raw.ca_file, "ca_file")]);
        }
        // Forges say so in their own address check; generic-hmac sends a
        // signature made with the token, never the token.
        let sends_token = raw.token_file.is_some()
            && provider.is_some_and(|p| !p.is_forge() && p != AlertProvider::GenericHmac);
        if let Some(address) = raw.address.as_ref().filter(|_| sends_token) {
            let url = reqwest::Url::parse(address.get_ref());
            if url.is_ok_and(|url| forge::is_plain_http_elsewhere(&url)) {
                self.problem(
                    address.span(),
                    &format!("{key}.address"),
                    forge::CLEAR_TEXT_TOKEN,
                );
            }
        }
        let channel = raw.channel.as_ref().map(|c| c.get_ref().clone());
        if let Some(provider) = provider {
            let needs = |what: &str| format!("provider {:?} needs {what}", provider.as_str());
            let no_address = raw.address.is_none() && raw.address_file.is_none();
            if no_address && provider != AlertProvider::Telegram {
                self.problem(
                    span.clone(),
                    &format!("{key}.address_file"),
                    needs("address_file (or address)"),
                );
            }
            let needs_token = provider.is_forge()
                || matches!(
                    provider,
                    AlertProvider::GenericHmac | AlertProvider::Matrix | AlertProvider::Telegram
                );
            if needs_token && raw.token_file.is_none() {
                self.problem(
                    span.clone(),
                    &format!("{key}.token_file"),
                    needs("token_file"),
                );
            }
            let needs_channel = matches!(provider, AlertProvider::Matrix | AlertProvider::Telegram);
            if needs_channel && channel.is_none() {
                self.problem(
                    span.clone(),
                    &format!("{key}.channel"),
                    needs("channel (the room or chat id)"),
                );
            }
        }
        let severity = match raw.severity.as_ref().map(|s| (s, s.get_ref().as_str())) {
            None | Some((_, "info")) => Some(Severity::Info),
            Some((_, "error")) => Some(Severity::Error),
            Some((value, other)) => {
                self.problem(
                    value.span(),
                    &format!("{key}.severity"),
                    format!("severity {other:?}: write \"info\" (every change) or \"error\" (failures only)"),
                );
                None
            }
        };
        if raw.events.is_empty() {
            self.problem(
                span.clone(),
                &format!("{key}.events"),
                "name the objects to alert on, e.g. events = [\"kustomization/*\"]",
            );
        }
        for pattern in &raw.events {
            self.event_pattern(pattern, &format!("{key}.events"));
            if provider.is_some_and(AlertProvider::is_forge) {
                self.commit_status_pattern(pattern, &format!("{key}.events"));
            }
        }
        let exclude: Vec<String> = raw
            .exclude
            .unwrap_or_default()
            .into_iter()
            .filter_map(|pattern| match regex::Regex::new(pattern.get_ref()) {
                Ok(_) => Some(pattern.into_inner()),
                Err(err) => {
                    self.problem(
                        pattern.span(),
                        &format!("{key}.exclude"),
                        format!("not a regular expression: {err}"),
                    );
                    None
                }
            })
            .collect();
        if self.problems.len() != before {
            return None;
        }
        Some(Alert {
            name: name.to_string(),
            provider: provider?,
            address,
            token_file,
            ca_file,
            channel,
            username: raw.username.map(Spanned::into_inner),
            severity: severity?,
            events: raw.events.into_iter().map(Spanned::into_inner).collect(),
            exclude,
            summary: raw.summary.map(Spanned::into_inner),
        })
    }

    fn alert_provider(&mut self, value: &Spanned<String>, key: &str) -> Option<AlertProvider> {
        let written = value.get_ref().as_str();
        if let Some(provider) = AlertProvider::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == written)
        {
            return Some(provider);
        }
        let known: Vec<String> = AlertProvider::ALL
            .iter()
            .map(|p| format!("{:?}", p.as_str()))
            .collect();
        self.problem(
            value.span(),
            key,
            format!(
                "unknown provider {written:?}: kedge knows {}",
                known.join(", ")
            ),
        );
        None
    }

    /// A forge's `address` must name a repository; other providers take
    /// any URL.
    fn forge_address(
        &mut self,
        provider: Option<AlertProvider>,
        url: &str,
        span: std::ops::Range<usize>,
        key: &str,
    ) -> bool {
        let Some(provider) = provider.filter(|p| p.is_forge()) else {
            return true;
        };
        match ForgeRepository::parse(provider, url) {
            Ok(_) => true,
            Err(err) => {
                self.problem(span, &format!("{key}.address"), err);
                false
            }
        }
    }

    /// A commit status is posted on the commit a kustomization applied:
    /// a forge's `events` name kustomizations only (a source's or a Helm
    /// release's revision is no commit it applied).
    fn commit_status_pattern(&mut self, pattern: &Spanned<String>, key: &str) {
        if !pattern.get_ref().starts_with("kustomization/") {
            self.problem(
                pattern.span(),
                key,
                format!(
                    "{:?}: a commit status is posted for kustomizations only: write kustomization/NAME or kustomization/*",
                    pattern.get_ref()
                ),
            );
        }
    }

    fn alert_url(&mut self, url: &str, span: std::ops::Range<usize>, key: &str) -> Option<String> {
        if url.starts_with("https://") || url.starts_with("http://") {
            Some(url.to_string())
        } else {
            self.problem(
                span,
                key,
                format!("{url:?} is not an http:// or https:// URL"),
            );
            None
        }
    }

    /// `kind/name`, `kind/*` or `*`.
    fn event_pattern(&mut self, pattern: &Spanned<String>, key: &str) {
        let written = pattern.get_ref().as_str();
        if written == "*" {
            return;
        }
        let kind = written
            .split_once('/')
            .map(|(kind, name)| (kind, name.is_empty()));
        let known =
            |kind: &str| RECONCILED_KINDS.contains(&kind) || SourceKind::parse(kind).is_some();
        match kind {
            Some((kind, false)) if known(kind) => {}
            _ => {
                let mut kinds: Vec<&str> = RECONCILED_KINDS.to_vec();
                kinds.extend(SourceKind::ALL.iter().map(|k| k.as_str()));
                self.problem(
                    pattern.span(),
                    key,
                    format!(
                        "{written:?}: write kind/name, kind/* or *, with kind one of {}",
                        kinds.join(", ")
                    ),
                );
            }
        }
    }
}
