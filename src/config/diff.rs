//! What changed between two configs, so a reload restarts only what it must.

use std::collections::BTreeMap;

use super::Config;

/// Names added, changed and removed in one table kind, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The difference between two configs. `agent_changed` means the daemon
/// must restart as a whole (new state directory or cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    pub agent_changed: bool,
    pub sources: Changes,
    pub kustomizations: Changes,
    pub helm_releases: Changes,
}

impl ConfigDiff {
    /// Whether what the runner runs (kustomizations, releases) changed.
    pub fn runner_changed(&self) -> bool {
        !self.kustomizations.is_empty() || !self.helm_releases.is_empty()
    }
}

/// Compares `old` with `new`, table by table.
pub fn diff(old: &Config, new: &Config) -> ConfigDiff {
    ConfigDiff {
        agent_changed: old.agent != new.agent,
        sources: changes(&old.sources, &new.sources),
        kustomizations: changes(&old.kustomizations, &new.kustomizations),
        helm_releases: changes(&old.helm_releases, &new.helm_releases),
    }
}

/// Keys are listed as they print: `fleet` for a kustomization, `git/fleet`
/// for a source.
fn changes<K: Ord + std::fmt::Display, T: PartialEq>(
    old: &BTreeMap<K, T>,
    new: &BTreeMap<K, T>,
) -> Changes {
    let mut result = Changes::default();
    for (key, value) in new {
        match old.get(key) {
            None => result.added.push(key.to_string()),
            Some(previous) if previous != value => result.changed.push(key.to_string()),
            Some(_) => {}
        }
    }
    result.removed = old
        .keys()
        .filter(|key| !new.contains_key(*key))
        .map(ToString::to_string)
        .collect();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        match Config::parse(Path::new("test.toml"), text) {
            Ok(config) => config,
            Err(err) => panic!("test config must be valid: {err}"),
        }
    }

    #[test]
    fn diff_sorts_sources_into_added_changed_and_removed() {
        let old = config(
            "[git.a]\nurl = \"/srv/a\"\n[git.b]\nurl = \"/srv/b\"\n[git.c]\nurl = \"/srv/c\"\n",
        );
        let new = config(
            "[git.b]\nurl = \"/srv/b\"\ninterval = \"5m\"\n[git.c]\nurl = \"/srv/c\"\n[git.d]\nurl = \"/srv/d\"\n",
        );
        let diff = diff(&old, &new);
        assert_eq!(diff.sources.added, ["git/d"]);
        assert_eq!(diff.sources.changed, ["git/b"]);
        assert_eq!(diff.sources.removed, ["git/a"]);
        assert!(diff.kustomizations.is_empty());
        assert!(!diff.agent_changed);
    }
}
