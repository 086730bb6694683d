//! What bootstrap writes: the node's directory in the fleet repository
//! (`kedge.toml`, `README.md`) and the node's local config file.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The Git source every bootstrapped node reaches its repository through.
pub const FLEET: &str = "fleet";

/// The fleet source's keys that bootstrap sets; any other key of an
/// existing `[git.fleet]` (interval, ignore, verify) is kept.
const SOURCE_KEYS: &[&str] = &[
    "url",
    "ref",
    "ssh_key_file",
    "known_hosts_file",
    "username",
    "password_file",
    "bearer_token_file",
    "ca_file",
];

/// How the node reaches the fleet repository.
#[derive(Debug, Clone, Default)]
pub struct FleetSource {
    pub url: String,
    pub branch: String,
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl FleetSource {
    fn table(&self) -> toml::Table {
        let mut table = toml::Table::new();
        let mut put = |key: &str, value: toml::Value| {
            table.insert(key.to_string(), value);
        };
        put("url", self.url.clone().into());
        let mut reference = toml::Table::new();
        reference.insert("branch".into(), self.branch.clone().into());
        put("ref", reference.into());
        let paths = [
            ("ssh_key_file", &self.ssh_key_file),
            ("known_hosts_file", &self.known_hosts_file),
            ("password_file", &self.password_file),
            ("ca_file", &self.ca_file),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                put(key, path.display().to_string().into());
            }
        }
        if let Some(user) = &self.username {
            put("username", user.clone().into());
        }
        table
    }
}

/// The kustomization that applies the node's directory: named after its
/// last component, in the characters a name may have.
pub fn kustomization_name(path: &str) -> String {
    let last = path.rsplit('/').next().unwrap_or(path);
    let name: String = last
        .to_ascii_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            _ => '-',
        })
        .take(63)
        .collect();
    let name = name.trim_start_matches('-');
    if name.is_empty() {
        "node".to_string()
    } else {
        name.to_string()
    }
}

/// `<path>/kedge.toml`: the node's config from Git, one kustomization of
/// the directory it sits in.
pub fn fragment(path: &str) -> String {
    let name = kustomization_name(path);
    format!(
        r#"# This node's kedge configuration, from Git. The node's local
# /etc/kedge/kedge.toml names this file ([agent] config_from) and holds what
# the node needs to reach this repository ([agent] and [git.{FLEET}]): a
# file here may not define [agent] or redefine git/{FLEET}.
#
# Each commit is checked like a local edit of the config and applied as a
# reload; a commit that does not validate is refused (kedge status and the
# journal say why) and the last good configuration keeps running.
# Add [kustomization.NAME] and [helm_release.NAME] tables here; every key
# is documented in /usr/share/doc/kedge/examples/kedge.toml.

# The Kubernetes manifests (*.yaml, *.yml) in this directory and below, or
# what a kustomization.yaml here lists. Objects removed from Git are pruned.
[kustomization.{name}]
source = "git/{FLEET}"
path = "{path}"
interval = "10m"
prune = true
"#
    )
}

/// `<path>/README.md`: what the directory is and how to add to it.
pub fn readme(path: &str) -> String {
    let name = kustomization_name(path);
    format!(
        r#"# {path}

What kedge applies on the node bootstrapped with
`kedge bootstrap git --path {path}`. kedge fetches this repository and keeps
the node's cluster equal to this directory.

- `kedge.toml` is the node's kedge configuration from Git (the node's
  `/etc/kedge/kedge.toml` points at it with `[agent] config_from`). Add
  `[kustomization.NAME]` or `[helm_release.NAME]` tables to it to deploy
  more; each commit is validated like a local edit of the config, and one
  that does not validate is refused while the last good one keeps running.
  It may not define `[agent]` or redefine `git/{FLEET}`: those stay on the
  node.
- Kubernetes manifests (`*.yaml`) in this directory and below are applied
  by the kustomization `{name}` declared there, and pruned when removed.
  Add a `kustomization.yaml` here to choose what it applies.

On the node, `kedge status` shows what was applied and why not.
"#
    )
}

/// The node's local config: the existing file's `[agent]` with
/// `config_from` set, `[git.fleet]` as `source` says (its other keys
/// kept), and every other table of the existing file as it was.
pub fn local_config(existing: &toml::Table, source: &FleetSource, config_from: &str) -> String {
    let mut agent = existing
        .get("agent")
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    let mut from = toml::Table::new();
    from.insert("source".into(), format!("git/{FLEET}").into());
    from.insert("path".into(), config_from.into());
    agent.insert("config_from".into(), from.into());

    let mut fleet = existing
        .get("git")
        .and_then(|git| git.get(FLEET))
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    fleet.retain(|key, _| !SOURCE_KEYS.contains(&key));
    fleet.extend(source.table());

    let mut rest = existing.clone();
    rest.remove("agent");
    if let Some(git) = rest.get_mut("git").and_then(toml::Value::as_table_mut) {
        git.remove(FLEET);
        if git.is_empty() {
            rest.remove("git");
        }
    }

    let mut text = String::from(
        "# kedge configuration of this node, written by `kedge bootstrap git`.\n\
         # What the node runs comes from Git ([agent] config_from); this file\n\
         # holds what it needs to reach the repository. Every setting is\n\
         # documented in /usr/share/doc/kedge/examples/kedge.toml.\n\n",
    );
    text.push_str(&section("agent", &agent, AGENT_KEYS_FIRST));
    text.push('\n');
    text.push_str(&section(&format!("git.{FLEET}"), &fleet, SOURCE_KEYS));
    if !rest.is_empty() {
        text.push_str("\n# Kept from the file bootstrap replaced.\n");
        text.push_str(&toml::to_string(&rest).unwrap_or_default());
    }
    text
}

/// The `[agent]` keys written first, in this order; `config_from` last.
const AGENT_KEYS_FIRST: &[&str] = &["state_dir", "kubeconfig", "socket"];

/// `[name]` and its keys, nested tables inline: the keys of `first` in
/// that order, then the others by name, `config_from` last.
fn section(name: &str, table: &toml::Table, first: &[&str]) -> String {
    let rank = |key: &str| match first.iter().position(|f| *f == key) {
        Some(position) => (0, position),
        None if key == "config_from" => (2, 0),
        None => (1, 0),
    };
    let mut keys: Vec<&String> = table.keys().collect();
    keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    let mut text = format!("[{name}]\n");
    for key in keys {
        text.push_str(&format!("{} = {}\n", toml_key(key), inline(&table[key])));
    }
    text
}

fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(table) => {
            let fields: Vec<String> = table
                .iter()
                .map(|(key, value)| format!("{} = {}", toml_key(key), inline(value)))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        key.to_string()
    } else {
        toml::Value::from(key).to_string()
    }
}

/// Sets `[agent] kubeconfig` in `config`.
pub fn set_kubeconfig(config: &mut toml::Table, kubeconfig: &Path) {
    let agent = config
        .entry("agent")
        .or_insert_with(|| toml::Table::new().into());
    if let Some(agent) = agent.as_table_mut() {
        agent.insert("kubeconfig".into(), kubeconfig.display().to_string().into());
    }
}

/// The existing config file as TOML, empty when there is none. A file that
/// is not TOML is an error: bootstrap would lose what it says.
pub fn read_existing(path: &Path) -> anyhow::Result<(Option<String>, toml::Table)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok((None, toml::Table::new()))
        }
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let table = toml::from_str(&text).with_context(|| {
        format!(
            "{} is not TOML; fix or remove it before bootstrapping",
            path.display()
        )
    })?;
    Ok((Some(text), table))
}

/// Replaces the config file with `text`, keeping the old one as
/// `NAME.bootstrap-old` (as dpkg keeps `.dpkg-old`) with its mode and
/// group carried over to the new file.
pub fn replace_config(path: &Path, old: Option<&str>, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let previous = std::fs::metadata(path).ok();
    if old.is_some() {
        let backup = backup_path(path);
        std::fs::copy(path, &backup).with_context(|| format!("keeping {}", backup.display()))?;
    }
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("writing a new config in {}", dir.display()))?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing a new config in {}", dir.display()))?;
    let mode = previous
        .as_ref()
        .map_or(0o640, |m| m.permissions().mode() & 0o7777);
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", file.path().display()))?;
    if let Some(previous) = &previous {
        // Group kedge may read the packaged file; so it may read this one.
        let _ = std::os::unix::fs::chown(file.path(), None, Some(previous.gid()));
    }
    file.persist(path)
        .with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// Where the replaced config is kept.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".bootstrap-old");
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssh_source() -> FleetSource {
        FleetSource {
            url: "ssh://git@git.example.org/ops/fleet.git".into(),
            branch: "main".into(),
            ssh_key_file: Some("/etc/kedge/keys/fleet".into()),
            known_hosts_file: Some("/etc/kedge/keys/known_hosts".into()),
            ..FleetSource::default()
        }
    }

    #[test]
    fn the_local_config_keeps_the_agent_and_points_at_the_fragment() {
        let existing: toml::Table = toml::from_str(
            "[agent]\nstate_dir = \"/srv/kedge\"\nsocket = \"/run/k.sock\"\n\
             [git.fleet]\nurl = \"https://old\"\ninterval = \"5m\"\npassword_file = \"/p\"\nusername = \"u\"\n\
             [git.other]\nurl = \"https://other\"\n",
        )
        .expect("toml");
        let text = local_config(&existing, &ssh_source(), "clusters/edge-1/kedge.toml");
        let written: toml::Table = toml::from_str(&text).expect("written config is TOML");
        let agent = &written["agent"];
        assert_eq!(agent["state_dir"].as_str(), Some("/srv/kedge"));
        assert_eq!(agent["socket"].as_str(), Some("/run/k.sock"));
        assert_eq!(
            agent["config_from"]["path"].as_str(),
            Some("clusters/edge-1/kedge.toml")
        );
        assert_eq!(agent["config_from"]["source"].as_str(), Some("git/fleet"));
        let fleet = &written["git"]["fleet"];
        assert_eq!(
            fleet["url"].as_str(),
            Some("ssh://git@git.example.org/ops/fleet.git")
        );
        assert_eq!(fleet["ref"]["branch"].as_str(), Some("main"));
        assert_eq!(fleet["interval"].as_str(), Some("5m"), "other keys kept");
        assert!(
            fleet.get("password_file").is_none(),
            "old credentials dropped"
        );
        assert!(fleet.get("username").is_none());
        assert_eq!(
            written["git"]["other"]["url"].as_str(),
            Some("https://other")
        );
        assert!(text.contains(
            "config_from = { path = \"clusters/edge-1/kedge.toml\", source = \"git/fleet\" }"
        ));
    }

    #[test]
    fn writing_the_config_again_gives_the_same_text() {
        let first = local_config(&toml::Table::new(), &ssh_source(), "c/kedge.toml");
        let again = local_config(
            &toml::from_str(&first).expect("toml"),
            &ssh_source(),
            "c/kedge.toml",
        );
        assert_eq!(first, again);
    }

    #[test]
    fn the_kustomization_is_named_after_the_directory() {
        assert_eq!(kustomization_name("clusters/edge-1"), "edge-1");
        assert_eq!(kustomization_name("Edge.Site 7"), "edge-site-7");
        assert_eq!(kustomization_name("--"), "node");
    }
}
