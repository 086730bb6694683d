//! [`Manager::wait`]: wait until objects are Current by kstatus rules
//! ([`super::status`]), bounded by a timeout.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::discovery::DiscoveryError;
use super::objref::ObjRef;
use super::status::{evaluate, Status};
use super::Manager;

const POLL: Duration = Duration::from_millis(250);

/// An object that is not Current, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub object: ObjRef,
    pub reason: String,
}

impl fmt::Display for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.object, self.reason)
    }
}

fn list(pending: &[Pending]) -> String {
    pending
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why objects are not healthy.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// Discovery could not be read.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The cluster does not serve the object's kind.
    #[error("{object}: the cluster serves no kind {} in apiVersion {}", .object.kind, .object.api_version())]
    UnknownKind { object: ObjRef },
    /// An object reached a state it will not leave without a change.
    #[error("{object} failed: {message}")]
    Failed { object: ObjRef, message: String },
    /// Objects still not Current when the timeout passed.
    #[error("timed out after {timeout:?} waiting for {}", list(.pending))]
    TimedOut {
        timeout: Duration,
        pending: Vec<Pending>,
    },
}

impl Manager {
    /// Waits until every object in `objects` is Current, polling every
    /// 250 ms, for at most `timeout`.
    ///
    /// # Errors
    /// [`HealthError::Failed`] as soon as one object has failed (a Job that
    /// failed, a Deployment past its progress deadline);
    /// [`HealthError::TimedOut`] naming every object still pending, and why,
    /// when `timeout` passes. A missing object is pending, not failed.
    pub async fn wait(&self, objects: &[ObjRef], timeout: Duration) -> Result<(), HealthError> {
        let deadline = Instant::now() + timeout;
        let mut pending: Vec<Pending> = objects
            .iter()
            .map(|o| Pending {
                object: o.clone(),
                reason: "not checked yet".into(),
            })
            .collect();
        loop {
            pending = self.still_pending(pending).await?;
            if pending.is_empty() {
                return Ok(());
            }
            if Instant::now() + POLL > deadline {
                return Err(HealthError::TimedOut { timeout, pending });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Checks each object once; returns those not Current yet.
    async fn still_pending(&self, pending: Vec<Pending>) -> Result<Vec<Pending>, HealthError> {
        let checked: Vec<Result<Option<Pending>, HealthError>> = self
            .bounded(
                pending.into_iter().map(|p| self.check(p.object)).collect(),
                16,
            )
            .await;
        let mut still = Vec::new();
        for result in checked {
            if let Some(p) = result? {
                still.push(p);
            }
        }
        Ok(still)
    }

    async fn check(&self, object: ObjRef) -> Result<Option<Pending>, HealthError> {
        let Some(kind) = self.kinds.resolve(&object).await? else {
            return Err(HealthError::UnknownKind { object });
        };
        let reason = match self.api(&kind, &object).get_opt(&object.name).await {
            Ok(Some(live)) => {
                let live = serde_json::to_value(live).unwrap_or_default();
                match evaluate(&live) {
                    Status::Current => return Ok(None),
                    Status::Failed(message) => return Err(HealthError::Failed { object, message }),
                    Status::InProgress(reason) => reason,
                }
            }
            Ok(None) => "not found".to_string(),
            // Transient: the next poll may succeed; the timeout bounds it.
            Err(err) => format!("cannot read it: {err}"),
        };
        Ok(Some(Pending { object, reason }))
    }
}
