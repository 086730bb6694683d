//! `kedge metrics`: the text of `/metrics`, printed once.

use std::process::ExitCode;

use super::control::{ask, print_reply, QUICK};
use super::DaemonArgs;
use crate::config::Config;
use crate::observe::Metrics;
use crate::protocol::{ClientError, Reply, Request};
use crate::state::Store;

pub fn metrics(daemon: &DaemonArgs) -> anyhow::Result<ExitCode> {
    match ask(daemon, &Request::Metrics, QUICK) {
        Ok(reply) => print_reply(reply),
        Err(err @ (ClientError::NotRunning { .. } | ClientError::PermissionDenied { .. })) => {
            eprintln!("{err}; reading the state database (no counters)");
            print_reply(offline(daemon)?)
        }
        Err(err) => Err(err.into()),
    }
}

/// The state gauges of a stopped daemon, from its database.
fn offline(daemon: &DaemonArgs) -> anyhow::Result<Reply> {
    let config = Config::load(&daemon.config)?;
    let store = match super::status::open_database(&config.database_path())? {
        Some(store) => store,
        None => Store::open_in_memory()?,
    };
    let text = Metrics::enabled(false).render(&store, Some(&config))?;
    Ok(Reply::Text {
        text,
        changed: false,
    })
}
