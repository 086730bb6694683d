//! Commit status providers (`github`, `gitlab`, `gitea`): a
//! kustomization's outcome posted on the commit it applied, as the status
//! `kedge/<node>/<kustomization>` — each node's result shows on the commit.
//!
//! The request per forge, as each documents its commit status API:
//! - GitHub: `POST /repos/{owner}/{repo}/statuses/{sha}` on
//!   `api.github.com`, or `<server>/api/v3` (GitHub Enterprise Server);
//!   `state` pending | success | failure, `context`, `description`.
//! - GitLab: `POST /api/v4/projects/{path, URL-encoded}/statuses/{sha}`;
//!   `state` running | success | failed, `name`, `description`.
//! - Gitea: `POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`; `state`
//!   pending | success | failure, `context`, `description`.

use serde_json::json;

use super::providers::{path_segment, AlertEvent, ProviderRequest};
use crate::config::forge::ForgeRepository;
use crate::config::AlertProvider;

/// GitHub caps a status's description at 140 characters.
const MAX_DESCRIPTION: usize = 140;

/// Where a kustomization stands, as a commit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitState {
    /// Applied, waiting for health or for a dependency.
    Pending,
    Success,
    Failure,
}

/// Why no commit status can be posted for an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unposted {
    /// The address (maybe read from a file) names no repository.
    #[error("{0}")]
    Address(String),
    #[error("revision {0:?} is no Git commit (the source is not a Git repository)")]
    NoCommit(String),
    #[error("the outcome has no revision yet")]
    NoRevision,
}

/// The commit status request for `event` to the repository `address`,
/// with the forge's API `token`; `Ok(None)` when the event sets no status
/// (a suspended kustomization).
pub fn request(
    provider: AlertProvider,
    address: &str,
    token: &str,
    event: &AlertEvent,
) -> Result<Option<ProviderRequest>, Unposted> {
    let repository = ForgeRepository::parse(provider, address).map_err(Unposted::Address)?;
    let Some(state) = commit_state(event) else {
        return Ok(None);
    };
    let revision = event.metadata.get("revision").ok_or(Unposted::NoRevision)?;
    let sha = commit_of(revision).ok_or_else(|| Unposted::NoCommit(revision.clone()))?;
    let context = format!(
        "kedge/{}/{}",
        event.reporting_instance, event.involved_object.name
    );
    let description = description(event);
    let ForgeRepository { server, path } = repository;
    let (url, headers, body) = match provider {
        AlertProvider::Github => {
            let api = if server == "https://github.com" {
                "https://api.github.com".to_string()
            } else {
                format!("{server}/api/v3")
            };
            let state = match state {
                CommitState::Pending => "pending",
                CommitState::Success => "success",
                CommitState::Failure => "failure",
            };
            (
                format!("{api}/repos/{path}/statuses/{sha}"),
                vec![
                    ("authorization", format!("Bearer {token}")),
                    ("accept", "application/vnd.github+json".to_string()),
                    ("x-github-api-version", "2022-11-28".to_string()),
                ],
                json!({ "state": state, "context": context, "description": description }),
            )
        }
        AlertProvider::Gitlab => {
            let state = match state {
                CommitState::Pending => "running",
                CommitState::Success => "success",
                CommitState::Failure => "failed",
            };
            (
                format!(
                    "{server}/api/v4/projects/{}/statuses/{sha}",
                    path_segment(&path)
                ),
                vec![("private-token", token.to_string())],
                json!({ "state": state, "name": context, "description": description }),
            )
        }
        _ => {
            let state = match state {
                CommitState::Pending => "pending",
                CommitState::Success => "success",
                CommitState::Failure => "failure",
            };
            (
                format!("{server}/api/v1/repos/{path}/statuses/{sha}"),
                vec![("authorization", format!("token {token}"))],
                json!({ "state": state, "context": context, "description": description }),
            )
        }
    };
    Ok(Some(ProviderRequest {
        method: "POST",
        url,
        headers,
        body: body.to_string().into_bytes(),
    }))
}

/// The state of an outcome; `None` for a suspended kustomization, which
/// says nothing about the commit.
fn commit_state(event: &AlertEvent) -> Option<CommitState> {
    match event.reason.as_str() {
        "Suspended" => None,
        "Progressing" | "DependencyNotReady" => Some(CommitState::Pending),
        _ if event.severity == "error" => Some(CommitState::Failure),
        _ => Some(CommitState::Success),
    }
}

/// The commit of a Git artifact's revision (`main@sha1:<hex>`,
/// `v1.2.0@sha1:<hex>`, `sha1:<hex>`); `None` for other kinds'.
fn commit_of(revision: &str) -> Option<&str> {
    let digest = revision.rsplit_once('@').map_or(revision, |(_, d)| d);
    let hex = digest.strip_prefix("sha1:")?;
    (hex.len() == 40 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// `reconciliation succeeded: Applied revision …`, cut to what GitHub keeps.
fn description(event: &AlertEvent) -> String {
    let mut words = String::new();
    for (i, c) in event.reason.char_indices() {
        if c.is_uppercase() && i > 0 {
            words.push(' ');
        }
        words.extend(c.to_lowercase());
    }
    let full = format!("{words}: {}", event.message.lines().next().unwrap_or(""));
    if full.chars().count() <= MAX_DESCRIPTION {
        return full;
    }
    let mut cut: String = full.chars().take(MAX_DESCRIPTION - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::observe::providers::InvolvedObject;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn event(reason: &str, severity: &str, revision: &str) -> AlertEvent {
        AlertEvent {
            involved_object: InvolvedObject {
                kind: "Kustomization".into(),
                name: "apps".into(),
            },
            severity: severity.into(),
            timestamp: String::new(),
            message: "Applied revision: main@sha1:…\nsecond line".into(),
            reason: reason.into(),
            metadata: BTreeMap::from([("revision".to_string(), revision.to_string())]),
            reporting_controller: "kedge".into(),
            reporting_instance: "edge-1".into(),
        }
    }

    fn body(request: &ProviderRequest) -> serde_json::Value {
        serde_json::from_slice(&request.body).expect("JSON body")
    }

    #[test]
    fn each_forge_gets_its_url_state_and_context() {
        let revision = format!("main@sha1:{SHA}");
        let ready = event("ReconciliationSucceeded", "info", &revision);
        let Ok(Some(github)) = request(
            AlertProvider::Github,
            "https://github.com/org/fleet",
            "t",
            &ready,
        ) else {
            panic!("a GitHub request");
        };
        assert_eq!(
            github.url,
            format!("https://api.github.com/repos/org/fleet/statuses/{SHA}")
        );
        assert_eq!(body(&github)["state"], "success");
        assert_eq!(body(&github)["context"], "kedge/edge-1/apps");
        assert_eq!(
            body(&github)["description"],
            "reconciliation succeeded: Applied revision: main@sha1:…"
        );
        let Ok(Some(enterprise)) = request(
            AlertProvider::Github,
            "https://ghe.example.org/org/fleet",
            "t",
            &ready,
        ) else {
            panic!("a GitHub Enterprise request");
        };
        assert!(enterprise
            .url
            .starts_with("https://ghe.example.org/api/v3/repos/org/fleet/statuses/"));

        let failed = event("BuildFailed", "error", &revision);
        let Ok(Some(gitlab)) = request(
            AlertProvider::Gitlab,
            "https://gl.example.org/a/b/fleet",
            "t",
            &failed,
        ) else {
            panic!("a GitLab request");
        };
        assert_eq!(
            gitlab.url,
            format!("https://gl.example.org/api/v4/projects/a%2Fb%2Ffleet/statuses/{SHA}")
        );
        assert_eq!(body(&gitlab)["state"], "failed");
        assert_eq!(body(&gitlab)["name"], "kedge/edge-1/apps");

        let progressing = event("Progressing", "info", &revision);
        let Ok(Some(gitea)) = request(
            AlertProvider::Gitea,
            "http://127.0.0.1:3000/ops/fleet",
            "t",
            &progressing,
        ) else {
            panic!("a Gitea request");
        };
        assert_eq!(
            gitea.url,
            format!("http://127.0.0.1:3000/api/v1/repos/ops/fleet/statuses/{SHA}")
        );
        assert_eq!(body(&gitea)["state"], "pending");
        assert_eq!(
            gitea.headers,
            vec![("authorization", "token t".to_string())]
        );
    }

    #[test]
    fn only_git_commits_get_a_status_and_suspension_sets_none() {
        let bucket = event("ReconciliationSucceeded", "info", "sha256:abc");
        assert_eq!(
            request(
                AlertProvider::Gitea,
                "https://g.example.org/o/r",
                "t",
                &bucket
            ),
            Err(Unposted::NoCommit("sha256:abc".into()))
        );
        let suspended = event("Suspended", "error", &format!("main@sha1:{SHA}"));
        assert_eq!(
            request(
                AlertProvider::Gitea,
                "https://g.example.org/o/r",
                "t",
                &suspended
            ),
            Ok(None)
        );
        assert_eq!(commit_of(&format!("v1.0.0@sha1:{SHA}")), Some(SHA));
        assert_eq!(commit_of("main@sha1:abc"), None);
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        let mut long = event("HealthCheckFailed", "error", "x");
        long.message = "é".repeat(300);
        let cut = description(&long);
        assert_eq!(cut.chars().count(), MAX_DESCRIPTION);
        assert!(cut.starts_with("health check failed: é") && cut.ends_with('…'));
    }
}
