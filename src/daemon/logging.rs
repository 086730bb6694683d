//! Logs: to journald with structured fields when started by systemd, as
//! readable text on stderr otherwise.
//!
//! # Design
//! systemd sets `JOURNAL_STREAM` to the device and inode of the stream it
//! connected to stderr; when stderr still is that stream, events go to
//! journald natively, each `tracing` field a journal field in upper case
//! (`kustomization = "apps"` → `KUSTOMIZATION=apps`), so
//! `journalctl -u kedge KUSTOMIZATION=apps` selects one kustomization. The
//! level comes from `KEDGE_LOG` (e.g. `debug`, `kedge=debug,info`), else
//! `info`.

use std::os::unix::fs::MetadataExt;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a subscriber already set (tests) is kept.
pub fn init_logging() {
    let wanted = std::env::var("KEDGE_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(with_quiet_client(&wanted))
        .unwrap_or_else(|_| EnvFilter::new(with_quiet_client("info")));
    if stderr_is_journal() {
        match tracing_journald::layer() {
            Ok(journal) => {
                let journal = journal
                    .with_field_prefix(None)
                    .with_syslog_identifier("kedge".to_string());
                let _ = tracing_subscriber::registry()
                    .with(filter)
                    .with(journal)
                    .try_init();
                return;
            }
            Err(err) => eprintln!("kedge: journald unreachable ({err}); logging to stderr"),
        }
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .without_time()
            .with_ansi(false)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// kube's HTTP layer logs each failed request as an error of its own
/// (`failed with error client error (Connect)`), without URL, cause or
/// kustomization; kedge logs the failure itself with all three. Unless
/// `KEDGE_LOG` says something about kube's client, those lines are off.
fn with_quiet_client(wanted: &str) -> String {
    if wanted.contains("kube_client") {
        wanted.to_string()
    } else {
        format!("{wanted},kube_client::client::builder=off")
    }
}

/// Whether stderr is the journal stream systemd gave us (`JOURNAL_STREAM`
/// is `<device>:<inode>`), not something it was redirected to since.
fn stderr_is_journal() -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_str() == Some(journal_stream_id(stderr.dev(), stderr.ino()).as_str())
}

fn journal_stream_id(device: u64, inode: u64) -> String {
    format!("{device}:{inode}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_clients_own_request_errors_are_off_unless_asked_for() {
        assert_eq!(
            with_quiet_client("debug"),
            "debug,kube_client::client::builder=off"
        );
        assert_eq!(with_quiet_client("kube_client=debug"), "kube_client=debug");
    }

    #[test]
    fn the_journal_stream_is_device_colon_inode() {
        assert_eq!(journal_stream_id(8, 12345), "8:12345");
    }
}
