//! The repository a commit status alert posts to, as its `address` names
//! it (Flux's Provider address): `https://github.com/org/repo`,
//! `https://gitlab.example.org/group/sub/project`,
//! `https://gitea.example.org/owner/repo`; `.git` and a trailing `/` are
//! dropped.

use super::AlertProvider;

/// Why a token may not go to a plain `http://` address off this machine.
pub const CLEAR_TEXT_TOKEN: &str =
    "plain http:// to another host: the token would travel in clear text; use https";

/// Whether `url` is plain HTTP to a host other than this machine.
pub fn is_plain_http_elsewhere(url: &reqwest::Url) -> bool {
    url.scheme() == "http" && !url.host_str().is_some_and(is_loopback)
}

/// A repository on a forge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgeRepository {
    /// `scheme://host[:port]`.
    pub server: String,
    /// `owner/repo`; for GitLab, the project's whole path in its groups.
    pub path: String,
}

impl ForgeRepository {
    /// The repository `address` names for `provider`; the error says why
    /// it names none (never quoting the address: it may come from a file).
    pub fn parse(provider: AlertProvider, address: &str) -> Result<ForgeRepository, String> {
        let url = reqwest::Url::parse(address)
            .map_err(|err| format!("the repository address is not a URL: {err}"))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err("the repository address is not an http:// or https:// URL".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "the repository address has credentials in it: put the token in token_file".into(),
            );
        }
        let host = url.host_str().ok_or("the repository address has no host")?;
        if is_plain_http_elsewhere(&url) {
            return Err(format!("the repository address is {CLEAR_TEXT_TOKEN}"));
        }
        let server = match url.port() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        };
        let trimmed = url.path().trim_matches('/');
        let path = trimmed.strip_suffix(".git").unwrap_or(trimmed);
        let segments = path.split('/').filter(|s| !s.is_empty()).count();
        let shaped = match provider {
            AlertProvider::Gitlab => segments >= 2,
            _ => segments == 2,
        };
        if !shaped || segments != path.split('/').count() {
            let expected = match provider {
                AlertProvider::Gitlab => "https://HOST/GROUP/PROJECT (subgroups allowed)",
                _ => "https://HOST/OWNER/REPO",
            };
            return Err(format!(
                "the repository address of provider {:?} is written {expected}",
                provider.as_str()
            ));
        }
        Ok(ForgeRepository {
            server,
            path: path.to_string(),
        })
    }
}

/// Whether `host` (as a URL writes it) is this machine: plain HTTP
/// crosses no network then.
fn is_loopback(host: &str) -> bool {
    let ip = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(provider: AlertProvider, address: &str) -> Result<(String, String), String> {
        ForgeRepository::parse(provider, address).map(|r| (r.server, r.path))
    }

    #[test]
    fn repository_addresses_name_the_server_and_the_path() {
        let ok = |server: &str, path: &str| Ok((server.to_string(), path.to_string()));
        assert_eq!(
            parse(AlertProvider::Github, "https://github.com/org/fleet.git"),
            ok("https://github.com", "org/fleet")
        );
        assert_eq!(
            parse(AlertProvider::Gitea, "http://127.0.0.1:3000/ops/fleet/"),
            ok("http://127.0.0.1:3000", "ops/fleet")
        );
        assert_eq!(
            parse(
                AlertProvider::Gitlab,
                "https://gitlab.example.org/a/b/fleet"
            ),
            ok("https://gitlab.example.org", "a/b/fleet")
        );
    }

    #[test]
    fn other_shapes_are_refused_without_quoting_the_address() {
        for (provider, address) in [
            (AlertProvider::Github, "https://github.com/org"),
            (AlertProvider::Github, "https://github.com/org/a/b"),
            (AlertProvider::Gitea, "https://gitea.example.org/org//fleet"),
            (AlertProvider::Gitlab, "https://gitlab.example.org/fleet"),
            (AlertProvider::Github, "ssh://git@github.com/org/fleet"),
            (
                AlertProvider::Github,
                "https://x:secret@github.com/org/fleet",
            ),
            (AlertProvider::Gitea, "not a url"),
            (AlertProvider::Gitea, "http://gitea.example.org/ops/fleet"),
        ] {
            let err = parse(provider, address).expect_err(address);
            assert!(!err.contains("secret"), "{err}");
        }
    }
}
