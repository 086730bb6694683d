//! The observability keys: `[agent] metrics` and `[receiver.NAME]` tables.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use toml::Spanned;

use super::raw::RawReceiver;
use super::validate::Checker;
use super::{Receiver, ReceiverKind, Source, SourceRef};

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
