//! What to do next with a Helm release: pure functions of what Helm's
//! storage holds, what kedge recorded after its last action, and what the
//! config wants — like Flux's helm-controller, tested without a cluster.
//!
//! # Rules
//! - Inputs are compared by digests of what kedge asks for (chart name,
//!   version and package digest, values, post-renderers), never of the
//!   rendered output: charts that call `randAlphaNum` render differently
//!   every time.
//! - A release whose revision or stored values differ from what kedge
//!   recorded was changed by hand (`helm upgrade`, `helm rollback`): kedge
//!   upgrades it back.
//! - A `pending-*` release that no action of kedge holds was left by an
//!   interrupted action (a power cut): it is unlocked (marked failed).
//!   An interrupted action is not a failure of the chart: once unlocked,
//!   the release is upgraded again (an interrupted first install removed
//!   and installed again) without counting against the retries.
//! - Failures are remediated a bounded number of times per desired state;
//!   a new desired state starts the count again.

/// Helm's status of the last release revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseStatus {
    Deployed,
    Failed,
    Pending,
    Uninstalled,
    Uninstalling,
    Superseded,
    Unknown,
}

impl ReleaseStatus {
    pub fn parse(status: &str) -> ReleaseStatus {
        match status {
            "deployed" => ReleaseStatus::Deployed,
            "failed" => ReleaseStatus::Failed,
            "pending-install" | "pending-upgrade" | "pending-rollback" => ReleaseStatus::Pending,
            "uninstalled" => ReleaseStatus::Uninstalled,
            "uninstalling" => ReleaseStatus::Uninstalling,
            "superseded" => ReleaseStatus::Superseded,
            _ => ReleaseStatus::Unknown,
        }
    }
}

/// The last revision in Helm's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub revision: u32,
    pub status: ReleaseStatus,
    pub chart_name: String,
    pub chart_version: String,
    /// Digest of the values Helm stored.
    pub config_digest: String,
}

/// The action kedge last ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum LastAction {
    Install,
    Upgrade,
    Test,
    Rollback,
    Uninstall,
}

/// What kedge recorded after its last action on the release.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Snapshot {
    /// The desired-state digest the last action worked towards.
    pub desired_digest: String,
    /// The revision and stored-values digest Helm reported after it.
    pub revision: u32,
    pub config_digest: String,
    pub last_action: Option<LastAction>,
    /// Whether the last action failed.
    pub failed: bool,
    /// Failures of installs and of upgrades since the desired digest last
    /// changed.
    pub install_failures: u32,
    pub upgrade_failures: u32,
    /// The revision whose tests passed (0: none).
    pub tested_revision: u32,
    /// The last action ended without a result (its helper killed), or
    /// unlocked a release such an action left pending.
    pub interrupted: bool,
    /// Why the last failed action failed, until an install, upgrade or
    /// test succeeds: the status of a stalled release says it.
    pub last_failure: String,
}

/// How failed upgrades are remediated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpgradeStrategy {
    #[default]
    Rollback,
    Uninstall,
}

/// What the config wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// Digest over chart name, version, package digest, values and
    /// post-renderers.
    pub digest: String,
    pub chart_name: String,
    /// Retries after a failed install (Flux's `install.remediation.retries`).
    pub install_retries: u32,
    pub upgrade_retries: u32,
    pub upgrade_strategy: UpgradeStrategy,
    /// Remediate even the failure of the last retry (Flux's
    /// `remediateLastFailure`).
    pub remediate_last_failure: bool,
    pub test: bool,
}

/// The next action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Install,
    Upgrade {
        why: &'static str,
    },
    Test,
    /// Return to the revision before the failed one.
    Rollback,
    /// Remove the failed release (before installing again).
    Uninstall,
    /// Mark an abandoned `pending-*` release failed.
    Unlock,
    /// Nothing to do: the release is what the config wants.
    InSync,
    /// Retries are exhausted for this desired state; only a change of it
    /// (or a request) tries again.
    Stalled {
        why: String,
    },
}

/// Decides the next action. `snapshot` is `None` when kedge never acted on
/// the release (it may still exist, installed by hand or by an older state).
pub fn plan(observed: Option<&Observed>, snapshot: Option<&Snapshot>, desired: &Desired) -> Plan {
    let fresh = Snapshot::default();
    let snapshot = match snapshot {
        // Failures of an older desired state do not count against this one.
        Some(s) if s.desired_digest == desired.digest => s,
        _ => &fresh,
    };
    let Some(observed) = observed else {
        return install_unless_exhausted(snapshot, desired);
    };
    match observed.status {
        ReleaseStatus::Pending => Plan::Unlock,
        ReleaseStatus::Uninstalled | ReleaseStatus::Uninstalling => {
            install_unless_exhausted(snapshot, desired)
        }
        ReleaseStatus::Failed if snapshot.interrupted => {
            retry_interrupted(observed, snapshot, desired)
        }
        ReleaseStatus::Failed | ReleaseStatus::Unknown | ReleaseStatus::Superseded => {
            remediate(observed, snapshot, desired)
        }
        ReleaseStatus::Deployed => deployed(observed, snapshot, desired),
    }
}

fn install_unless_exhausted(snapshot: &Snapshot, desired: &Desired) -> Plan {
    if snapshot.install_failures > desired.install_retries {
        return Plan::Stalled {
            why: format!(
                "install failed {} times; retries exhausted",
                snapshot.install_failures
            ),
        };
    }
    Plan::Install
}

/// Helm upgrades only a release that deployed once: an interrupted first
/// install is removed, then installed again.
fn retry_interrupted(observed: &Observed, snapshot: &Snapshot, desired: &Desired) -> Plan {
    if observed.revision <= 1 {
        return Plan::Uninstall;
    }
    upgrade_unless_exhausted(snapshot, desired, "retrying an interrupted action")
}

fn remediate(observed: &Observed, snapshot: &Snapshot, desired: &Desired) -> Plan {
    // A failed revision above the one kedge installed came from an upgrade
    // (by hand, say): an upgrade's remediation, not an install's.
    let installing = observed.revision <= 1
        || (snapshot.last_action == Some(LastAction::Install)
            && observed.revision == snapshot.revision);
    let (failures, retries) = if installing {
        (snapshot.install_failures, desired.install_retries)
    } else {
        (snapshot.upgrade_failures, desired.upgrade_retries)
    };
    if snapshot.last_action.is_some_and(is_remediation) {
        // The remediation itself left a broken release: do not loop on it.
        return Plan::Stalled {
            why: "the remediation did not leave a working release".to_string(),
        };
    }
    if failures > retries && !desired.remediate_last_failure {
        return Plan::Stalled {
            why: format!(
                "{} failed {failures} times; retries exhausted",
                if installing { "install" } else { "upgrade" }
            ),
        };
    }
    match (installing, desired.upgrade_strategy) {
        (true, _) | (false, UpgradeStrategy::Uninstall) => Plan::Uninstall,
        (false, UpgradeStrategy::Rollback) => Plan::Rollback,
    }
}

fn is_remediation(action: LastAction) -> bool {
    matches!(action, LastAction::Rollback | LastAction::Uninstall)
}

fn deployed(observed: &Observed, snapshot: &Snapshot, desired: &Desired) -> Plan {
    if snapshot.desired_digest != desired.digest {
        return upgrade_unless_exhausted(snapshot, desired, "the config or the chart changed");
    }
    if observed.chart_name != desired.chart_name {
        return upgrade_unless_exhausted(snapshot, desired, "the release runs another chart");
    }
    if observed.revision != snapshot.revision || observed.config_digest != snapshot.config_digest {
        return upgrade_unless_exhausted(
            snapshot,
            desired,
            "the release was changed outside kedge",
        );
    }
    if snapshot.last_action == Some(LastAction::Test) && snapshot.failed {
        // A failed test fails the release's install or upgrade.
        return remediate(observed, snapshot, desired);
    }
    if snapshot.last_action == Some(LastAction::Rollback) {
        // A remediation succeeded; the desired state still waits for a retry.
        return upgrade_unless_exhausted(snapshot, desired, "retrying after a rollback");
    }
    if desired.test && snapshot.tested_revision != observed.revision {
        return Plan::Test;
    }
    Plan::InSync
}

fn upgrade_unless_exhausted(snapshot: &Snapshot, desired: &Desired, why: &'static str) -> Plan {
    if snapshot.upgrade_failures > desired.upgrade_retries {
        return Plan::Stalled {
            why: format!(
                "upgrade failed {} times; retries exhausted",
                snapshot.upgrade_failures
            ),
        };
    }
    Plan::Upgrade { why }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> Desired {
        Desired {
            digest: "d1".into(),
            chart_name: "web".into(),
            install_retries: 1,
            upgrade_retries: 2,
            upgrade_strategy: UpgradeStrategy::Rollback,
            remediate_last_failure: false,
            test: false,
        }
    }

    fn observed(revision: u32, status: &str) -> Observed {
        Observed {
            revision,
            status: ReleaseStatus::parse(status),
            chart_name: "web".into(),
            chart_version: "1.0.0".into(),
            config_digest: "c1".into(),
        }
    }

    fn after(action: LastAction, revision: u32, failed: bool) -> Snapshot {
        Snapshot {
            desired_digest: "d1".into(),
            revision,
            config_digest: "c1".into(),
            last_action: Some(action),
            failed,
            ..Snapshot::default()
        }
    }

    #[test]
    fn an_interrupted_action_once_unlocked_is_tried_again_not_remediated() {
        let mut unlocked = after(LastAction::Upgrade, 2, false);
        unlocked.interrupted = true;
        assert_eq!(
            plan(Some(&observed(2, "failed")), Some(&unlocked), &desired()),
            Plan::Upgrade {
                why: "retrying an interrupted action"
            }
        );
        let mut first_install = after(LastAction::Install, 1, false);
        first_install.interrupted = true;
        assert_eq!(
            plan(
                Some(&observed(1, "failed")),
                Some(&first_install),
                &desired()
            ),
            Plan::Uninstall
        );
        let mut failed_for_real = unlocked.clone();
        failed_for_real.interrupted = false;
        failed_for_real.failed = true;
        failed_for_real.upgrade_failures = 1;
        assert_eq!(
            plan(
                Some(&observed(2, "failed")),
                Some(&failed_for_real),
                &desired()
            ),
            Plan::Rollback
        );
    }

    #[test]
    fn no_release_is_installed_and_a_release_in_sync_is_left_alone() {
        assert_eq!(plan(None, None, &desired()), Plan::Install);
        let snapshot = after(LastAction::Install, 1, false);
        assert_eq!(
            plan(Some(&observed(1, "deployed")), Some(&snapshot), &desired()),
            Plan::InSync
        );
    }

    #[test]
    fn a_changed_desired_state_upgrades_and_forgets_older_failures() {
        let mut snapshot = after(LastAction::Upgrade, 3, true);
        snapshot.upgrade_failures = 9;
        let mut wanted = desired();
        wanted.digest = "d2".into();
        assert_eq!(
            plan(Some(&observed(3, "deployed")), Some(&snapshot), &wanted),
            Plan::Upgrade {
                why: "the config or the chart changed"
            }
        );
    }

    #[test]
    fn a_release_changed_by_hand_is_upgraded_back() {
        let snapshot = after(LastAction::Upgrade, 2, false);
        // `helm rollback` by hand: a new revision 3 with the values of 1.
        let mut rolled_back = observed(3, "deployed");
        rolled_back.config_digest = "c0".into();
        assert_eq!(
            plan(Some(&rolled_back), Some(&snapshot), &desired()),
            Plan::Upgrade {
                why: "the release was changed outside kedge"
            }
        );
    }

    #[test]
    fn an_abandoned_pending_release_is_unlocked() {
        let snapshot = after(LastAction::Upgrade, 2, false);
        assert_eq!(
            plan(
                Some(&observed(2, "pending-upgrade")),
                Some(&snapshot),
                &desired()
            ),
            Plan::Unlock
        );
    }

    #[test]
    fn a_failed_upgrade_is_rolled_back_until_retries_are_exhausted() {
        let mut snapshot = after(LastAction::Upgrade, 2, true);
        snapshot.upgrade_failures = 1;
        let failed = observed(2, "failed");
        assert_eq!(
            plan(Some(&failed), Some(&snapshot), &desired()),
            Plan::Rollback
        );
        // After the rollback succeeded, the upgrade is tried again.
        let mut rolled = after(LastAction::Rollback, 3, false);
        rolled.upgrade_failures = 1;
        assert_eq!(
            plan(Some(&observed(3, "deployed")), Some(&rolled), &desired()),
            Plan::Upgrade {
                why: "retrying after a rollback"
            }
        );
        snapshot.upgrade_failures = 3;
        assert!(matches!(
            plan(Some(&failed), Some(&snapshot), &desired()),
            Plan::Stalled { .. }
        ));
    }

    #[test]
    fn remediation_by_uninstall_when_asked_and_for_failed_installs() {
        let mut wanted = desired();
        wanted.upgrade_strategy = UpgradeStrategy::Uninstall;
        let mut snapshot = after(LastAction::Upgrade, 2, true);
        snapshot.upgrade_failures = 1;
        assert_eq!(
            plan(Some(&observed(2, "failed")), Some(&snapshot), &wanted),
            Plan::Uninstall
        );
        let mut install = after(LastAction::Install, 1, true);
        install.install_failures = 1;
        assert_eq!(
            plan(Some(&observed(1, "failed")), Some(&install), &desired()),
            Plan::Uninstall
        );
        // Uninstalled after the failure: installed again, until retries run out.
        let mut removed = after(LastAction::Uninstall, 1, false);
        removed.install_failures = 1;
        assert_eq!(plan(None, Some(&removed), &desired()), Plan::Install);
        removed.install_failures = 2;
        assert!(matches!(
            plan(None, Some(&removed), &desired()),
            Plan::Stalled { .. }
        ));
    }

    #[test]
    fn a_failed_upgrade_by_hand_after_kedge_installed_is_rolled_back_not_uninstalled() {
        let installed = after(LastAction::Install, 1, false);
        assert_eq!(
            plan(Some(&observed(2, "failed")), Some(&installed), &desired()),
            Plan::Rollback
        );
    }

    #[test]
    fn a_failed_remediation_stalls_instead_of_looping() {
        let mut snapshot = after(LastAction::Rollback, 3, true);
        snapshot.upgrade_failures = 1;
        assert!(matches!(
            plan(Some(&observed(3, "failed")), Some(&snapshot), &desired()),
            Plan::Stalled { .. }
        ));
    }

    #[test]
    fn a_failed_test_is_remediated_like_a_failed_upgrade() {
        let mut wanted = desired();
        wanted.test = true;
        let mut snapshot = after(LastAction::Test, 2, true);
        snapshot.upgrade_failures = 1;
        assert_eq!(
            plan(Some(&observed(2, "deployed")), Some(&snapshot), &wanted),
            Plan::Rollback
        );
        snapshot.upgrade_failures = 3;
        assert!(matches!(
            plan(Some(&observed(2, "deployed")), Some(&snapshot), &wanted),
            Plan::Stalled { .. }
        ));
    }

    #[test]
    fn tests_run_once_per_revision_when_enabled() {
        let mut wanted = desired();
        wanted.test = true;
        let mut snapshot = after(LastAction::Upgrade, 2, false);
        assert_eq!(
            plan(Some(&observed(2, "deployed")), Some(&snapshot), &wanted),
            Plan::Test
        );
        snapshot.tested_revision = 2;
        assert_eq!(
            plan(Some(&observed(2, "deployed")), Some(&snapshot), &wanted),
            Plan::InSync
        );
    }
}
