//! A config reload (file change or SIGHUP): a valid new config is applied
//! as a diff; an invalid one is refused, recorded where `kedge status`
//! shows it, and the last good config keeps running.

use std::sync::Mutex;

use crate::config::ConfigDiff;
use crate::reconcile::kustomization::lock;
use crate::state::{Event, Severity, Store, CONFIG_REFUSED};

use super::config_from::{self, ConfigFiles};
use super::units::{Confirm, Units};
use super::{notify, status_line};

/// Why the daemon reloads, for the log.
#[derive(Debug, Clone, Copy)]
pub enum Cause {
    FileChanged,
    Sighup,
}

/// Reloads `files` into `units`, telling systemd (`RELOADING=1`, then
/// `READY=1`) and the log what happened.
pub async fn reload(
    files: &mut ConfigFiles,
    cause: Cause,
    units: &mut Units,
    store: &Mutex<Store>,
) {
    let path = files.local();
    notify::reloading("reloading the config");
    tracing::info!(config = %path.display(), ?cause, "reloading the config");
    match files.load() {
        Err(err) => refuse(
            store,
            CONFIG_REFUSED,
            &format!("config refused, still running the last good one: {err}"),
        ),
        Ok(new) if new.agent != units.file_config().agent => refuse(
            store,
            CONFIG_REFUSED,
            &format!(
                "config refused: the [agent] table of {} changed; restart kedge to apply it",
                path.display()
            ),
        ),
        Ok(new) => match units.apply(new).await {
            Ok(changes) => {
                accepted(store, CONFIG_REFUSED, &changes);
                reconnect(units).await;
                config_from::retry_refused(files, units, store).await;
                // SIGHUP is the operator saying the file is final; a
                // config still waiting for its source is not.
                if matches!(cause, Cause::Sighup) && files.complete(units.file_config()) {
                    units.confirm_removals(Confirm::Now).await;
                }
            }
            Err(err) => refuse(store, CONFIG_REFUSED, &format!("config not applied: {err}")),
        },
    }
    notify::ready(&status_line(store));
}

/// A rewritten kubeconfig (its path is in `[agent]`, which a reload keeps)
/// takes effect without a restart.
async fn reconnect(units: &mut Units) {
    let kubeconfig = units.config().agent.kubeconfig.clone().unwrap_or_default();
    match units.reconnect_if_kubeconfig_changed().await {
        Ok(true) => tracing::info!(
            reason = "KubeconfigChanged",
            "{} changed: kustomizations run on a new cluster connection",
            kubeconfig.display()
        ),
        Ok(false) => {}
        Err(err) => tracing::error!(
            reason = "KubeconfigRefused",
            "{err}; keeping the previous cluster connection"
        ),
    }
}

/// Records an accepted config, clearing the refusal `problem` (the local
/// file's, or the source's) recorded before.
pub(super) fn accepted(store: &Mutex<Store>, problem: &str, changes: &ConfigDiff) {
    let store = lock(store);
    match store.clear_agent_problem(problem) {
        Ok(true) => tracing::info!(reason = "ConfigAccepted", "the config is valid again"),
        Ok(false) => {}
        Err(err) => tracing::error!("clearing the config problem: {err}"),
    }
    if changes.sources.is_empty() && !changes.runner_changed() {
        tracing::info!("config unchanged");
        return;
    }
    let message = describe(changes);
    tracing::info!(reason = "ConfigReloaded", "{message}");
    if let Err(err) = store.record_event(&Event::new(
        "agent",
        "config",
        Severity::Info,
        "ConfigReloaded",
        &message,
    )) {
        tracing::error!("recording the reload: {err}");
    }
}

/// Records a refused config as the agent's `problem`, an event and a log line.
pub(super) fn refuse(store: &Mutex<Store>, problem: &str, message: &str) {
    tracing::error!(reason = "ConfigRefused", "{message}");
    let store = lock(store);
    let recorded = store.set_agent_problem(problem, message).and_then(|()| {
        store.record_event(&Event::new(
            "agent",
            "config",
            Severity::Error,
            "ConfigRefused",
            message,
        ))
    });
    if let Err(err) = recorded {
        tracing::error!("recording the refused config: {err}");
    }
}

/// `sources: +b ~a -c; kustomizations: +apps`.
pub fn describe(changes: &ConfigDiff) -> String {
    let part = |what: &str, c: &crate::config::Changes| {
        let names: Vec<String> = c
            .added
            .iter()
            .map(|n| format!("+{n}"))
            .chain(c.changed.iter().map(|n| format!("~{n}")))
            .chain(c.removed.iter().map(|n| format!("-{n}")))
            .collect();
        (!names.is_empty()).then(|| format!("{what}: {}", names.join(" ")))
    };
    let parts: Vec<String> = [
        part("sources", &changes.sources),
        part("kustomizations", &changes.kustomizations),
        part("Helm releases", &changes.helm_releases),
    ]
    .into_iter()
    .flatten()
    .collect();
    format!("config reloaded ({})", parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Changes;

    #[test]
    fn a_reload_is_described_by_sign_and_name() {
        let changes = ConfigDiff {
            agent_changed: false,
            sources: Changes {
                added: vec!["b".into()],
                changed: vec!["a".into()],
                removed: vec!["c".into()],
            },
            kustomizations: Changes::default(),
            helm_releases: Changes {
                added: vec!["redis".into()],
                ..Changes::default()
            },
        };
        assert_eq!(
            describe(&changes),
            "config reloaded (sources: +b ~a -c; Helm releases: +redis)"
        );
    }
}
