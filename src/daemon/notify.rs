//! systemd's notify protocol: readiness, a one-line status, watchdog pings
//! and stopping. Every call is a no-op when not started by systemd
//! (`NOTIFY_SOCKET` unset).

use std::time::Duration;

use sd_notify::NotifyState;

use crate::state::{self, Store};

/// Sends `READY=1` with a first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Sends `STATUS=<line>`, shown by `systemctl status kedge`.
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// Sends `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Sends `RELOADING=1` with a status line; [`ready`] ends the reload.
pub fn reloading(status: &str) {
    send(&[NotifyState::Reloading, NotifyState::Status(status)]);
}

/// Sends `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// How often to ping the watchdog: half of `WatchdogSec=`, or `None` when
/// the watchdog is off.
pub fn watchdog_period() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

fn send(states: &[NotifyState<'_>]) {
    // NotifyAccess=main in the unit: children (ssh) that inherit the socket
    // cannot speak for kedge, so the variable stays set for later messages.
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::debug!("sd_notify: {err}");
    }
}

/// What a status line says, without the parts that change by the second
/// (`last apply 12s ago`).
pub fn without_ages(line: &str) -> String {
    line.split(SEPARATOR)
        .filter(|part| !part.starts_with(LAST_APPLY))
        .collect::<Vec<_>>()
        .join(SEPARATOR)
}

const SEPARATOR: &str = " · ";
const LAST_APPLY: &str = "last apply ";

/// The one-line summary of the state, e.g.
/// `5/6 kustomizations ready · last apply 12s ago · 1 failing: apps`.
pub fn summary(store: &Store) -> Result<String, state::Error> {
    let kustomizations = store.kustomization_statuses()?;
    let sources = store.source_statuses()?;
    let failing: Vec<&str> = kustomizations
        .iter()
        .filter(|k| !k.ready)
        .map(|k| k.name.as_str())
        .chain(sources.iter().filter(|s| !s.ready).map(|s| s.name.as_str()))
        .collect();
    let ready = kustomizations.iter().filter(|k| k.ready).count();
    let mut parts = vec![format!(
        "{ready}/{} kustomizations ready",
        kustomizations.len()
    )];
    if let Some(last) = kustomizations
        .iter()
        .filter_map(|k| k.last_success_at)
        .max()
    {
        let ago = Duration::from_millis(state::now_millis().saturating_sub(last).max(0) as u64);
        parts.push(format!("{LAST_APPLY}{}s ago", ago.as_secs()));
    }
    if !failing.is_empty() {
        parts.push(format!("{} failing: {}", failing.len(), failing.join(", ")));
    }
    Ok(parts.join(SEPARATOR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::KustomizationOutcome;

    #[test]
    fn the_summary_counts_ready_kustomizations_and_names_the_failing() -> Result<(), state::Error> {
        let store = Store::open_in_memory()?;
        let outcome = |ready, reason| KustomizationOutcome {
            ready,
            reason,
            message: "",
            attempted_revision: None,
            applied_revision: None,
            duration_ms: 1,
            deletion_policy: "delete",
        };
        store.record_kustomization_outcome(
            "infra",
            "git/fleet",
            state::now_millis(),
            outcome(true, "ReconciliationSucceeded"),
        )?;
        store.record_kustomization_outcome(
            "apps",
            "git/fleet",
            state::now_millis(),
            outcome(false, "BuildFailed"),
        )?;
        let line = summary(&store)?;
        assert!(
            line.starts_with("1/2 kustomizations ready · last apply "),
            "{line}"
        );
        assert!(line.ends_with(" · 1 failing: apps"), "{line}");
        assert_eq!(
            without_ages(&line),
            "1/2 kustomizations ready · 1 failing: apps"
        );
        Ok(())
    }
}
