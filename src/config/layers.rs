//! A config made of the local file and fragments from a source
//! (`[agent] config_from`), validated as one.
//!
//! # Design
//! The fragments are appended to the local file's text and the whole is
//! validated by the same code as a single file, so a fragment can do
//! exactly what the file can, and a name declared twice is TOML's own
//! duplicate-key error. Each problem is then mapped back to the file it is
//! in: the local path, or `git/fleet@<revision>:<path>`. Before that, each
//! fragment is checked alone for what it may not do: declare `[agent]` or
//! the config's own source (a bad commit must not cut the node off from
//! its repository), or hold keys above its first table header (appended,
//! they would land in the table before them).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::error::{Locator, Problem, Problems};
use super::raw::RawConfig;
use super::validate::{parse_and_validate, syntax_problem};
use super::{Config, ConfigFrom, Error, SourceKind, SourceRef};

/// The fragments of config found at `config_from`'s path in one artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layer {
    /// The source, `git/fleet`.
    pub source: String,
    /// The artifact's revision, `main@sha1:<40 hex>`.
    pub revision: String,
    /// `config_from.path`: one file, or a directory of fragments.
    pub path: String,
    /// In the order they are applied (by name).
    pub fragments: Vec<Fragment>,
}

/// One `*.toml` file of a [`Layer`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Relative to the artifact's root.
    pub path: String,
    pub text: String,
}

impl Layer {
    /// Whether this layer was read for `from` (a saved layer outlives a
    /// change of `config_from`).
    pub fn is_for(&self, from: &ConfigFrom) -> bool {
        self.source == from.source.to_string() && self.path == from.path
    }

    /// How problems and `kedge status` name a fragment:
    /// `git/fleet@main@sha1:…:clusters/edge-1/kedge.toml`.
    pub fn label(&self, fragment: &Fragment) -> String {
        format!("{}@{}:{}", self.source, self.revision, fragment.path)
    }
}

/// One piece of the appended text: whose it is and the line it starts on.
struct Segment {
    file: PathBuf,
    first_line: usize,
}

/// Validates the local file (`local`, read as `local_text`) with `layer`'s
/// fragments laid over it.
///
/// # Errors
/// [`Error::InvalidLayers`] with every problem, each in the file it is in.
pub fn parse_layered(local: &Path, local_text: &str, layer: &Layer) -> Result<Config, Error> {
    let config_source = config_source(local_text);
    let mut refused = Vec::new();
    let mut declared_in = BTreeMap::new();
    for fragment in &layer.fragments {
        match checked_fragment(&fragment.text, config_source.as_ref()) {
            Ok(names) => {
                declared_in.extend(names.into_iter().map(|name| (name, layer.label(fragment))));
            }
            Err(problems) => refused.push(Problems {
                file: PathBuf::from(layer.label(fragment)),
                problems,
            }),
        }
    }
    if !refused.is_empty() {
        return Err(Error::InvalidLayers(refused));
    }
    let (text, segments) = appended(local, local_text, layer);
    match parse_and_validate(&text) {
        Ok(mut config) => {
            config.declared_in = declared_in;
            Ok(config)
        }
        Err(problems) => Err(Error::InvalidLayers(by_file(problems, &segments))),
    }
}

/// The source the local file's `config_from` names, if it names one.
fn config_source(local_text: &str) -> Option<SourceRef> {
    let raw: RawConfig = toml::from_str(local_text).ok()?;
    let from = raw.agent?.into_inner().config_from?.into_inner();
    SourceRef::parse(from.source.get_ref())
}

/// One fragment checked on its own text for what it may not do: the
/// tables it declares (`kind/name`), or its problems.
fn checked_fragment(
    text: &str,
    config_source: Option<&SourceRef>,
) -> Result<Vec<String>, Vec<Problem>> {
    let locator = Locator::new(text);
    if let Some(offset) = key_above_first_table(text) {
        return Err(vec![locator.problem(
            offset..offset,
            "(top level)",
            "a fragment holds tables only: put this key under a header such as [kustomization.NAME]",
        )]);
    }
    let raw: RawConfig = toml::from_str(text).map_err(|err| vec![syntax_problem(text, &err)])?;
    let mut problems = Vec::new();
    if let Some(agent) = &raw.agent {
        problems.push(locator.problem(
            agent.span(),
            "agent",
            "a fragment may not set [agent]: it stays in the local file",
        ));
    }
    let mut names = Vec::new();
    for (kind, name) in declared_names(&raw) {
        let declared = SourceRef::from_parts(kind, name.get_ref());
        if declared.is_some() && declared.as_ref() == config_source {
            problems.push(locator.problem(
                name.span(),
                &format!("{kind}.{}", name.get_ref()),
                "a fragment may not declare the source the config comes from: it stays in the local file, so that a commit cannot cut the node off from its repository",
            ));
        }
        names.push(format!("{kind}/{}", name.get_ref()));
    }
    if problems.is_empty() {
        Ok(names)
    } else {
        Err(problems)
    }
}

/// The offset of the first `key = value` line before any `[table]` header.
fn key_above_first_table(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            return None;
        }
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// Every `kind` and name a config declares, `kind` as in `kind/name`.
fn declared_names(raw: &RawConfig) -> Vec<(&'static str, &Spanned<String>)> {
    let tables: [(&'static str, Vec<&Spanned<String>>); 9] = [
        (SourceKind::Git.as_str(), raw.git.keys().collect()),
        (SourceKind::Bucket.as_str(), raw.bucket.keys().collect()),
        (SourceKind::Oci.as_str(), raw.oci.keys().collect()),
        (
            SourceKind::Helm.as_str(),
            raw.helm_repository.keys().collect(),
        ),
        (SourceKind::Chart.as_str(), raw.helm_chart.keys().collect()),
        ("kustomization", raw.kustomization.keys().collect()),
        ("helm_release", raw.helm_release.keys().collect()),
        ("receiver", raw.receiver.keys().collect()),
        ("alert", raw.alert.keys().collect()),
    ];
    tables
        .into_iter()
        .flat_map(|(kind, names)| names.into_iter().map(move |name| (kind, name)))
        .collect()
}

/// The local text with each fragment appended on a line of its own.
fn appended(local: &Path, local_text: &str, layer: &Layer) -> (String, Vec<Segment>) {
    let mut text = String::new();
    let mut segments = Vec::new();
    let pieces = std::iter::once((local.to_path_buf(), local_text)).chain(
        layer
            .fragments
            .iter()
            .map(|fragment| (PathBuf::from(layer.label(fragment)), fragment.text.as_str())),
    );
    for (file, piece) in pieces {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        segments.push(Segment {
            file,
            first_line: text.matches('\n').count() + 1,
        });
        text.push_str(piece);
    }
    (text, segments)
}

/// `problems` of the appended text, grouped by the file each is in, with
/// lines counted in that file.
fn by_file(problems: Vec<Problem>, segments: &[Segment]) -> Vec<Problems> {
    let mut grouped: Vec<Problems> = Vec::new();
    for mut problem in problems {
        let Some(segment) = segments
            .iter()
            .rev()
            .find(|segment| segment.first_line <= problem.line)
        else {
            continue;
        };
        problem.line = problem.line + 1 - segment.first_line;
        match grouped.iter_mut().find(|group| group.file == segment.file) {
            Some(group) => group.problems.push(problem),
            None => grouped.push(Problems {
                file: segment.file.clone(),
                problems: vec![problem],
            }),
        }
    }
    grouped
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: &str = r#"
[agent]
state_dir = "/var/lib/kedge"
config_from = { source = "git/fleet", path = "clusters/edge-1" }

[git.fleet]
url = "https://git.example.org/fleet.git"
"#;

    fn layer(fragments: &[(&str, &str)]) -> Layer {
        Layer {
            source: "git/fleet".into(),
            revision: "main@sha1:0123".into(),
            path: "clusters/edge-1".into(),
            fragments: fragments
                .iter()
                .map(|(path, text)| Fragment {
                    path: (*path).into(),
                    text: (*text).into(),
                })
                .collect(),
        }
    }

    fn refused(layer: &Layer) -> String {
        match parse_layered(Path::new("/etc/kedge/kedge.toml"), LOCAL, layer) {
            Ok(_) => panic!("the layer is accepted"),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn fragments_add_tables_and_say_where_they_were_declared() -> Result<(), Error> {
        let layer = layer(&[
            (
                "clusters/edge-1/apps.toml",
                "[kustomization.apps]\nsource = \"git/fleet\"\npath = \"apps\"\ninterval = \"5m\"\nprune = true\n",
            ),
            (
                "clusters/edge-1/infra.toml",
                "# infrastructure\n[kustomization.infra]\nsource = \"git/fleet\"\npath = \"infra\"\ninterval = \"5m\"\nprune = true\n",
            ),
        ]);
        let config = parse_layered(Path::new("/etc/kedge/kedge.toml"), LOCAL, &layer)?;
        assert_eq!(
            config.kustomizations.keys().collect::<Vec<_>>(),
            ["apps", "infra"]
        );
        assert_eq!(
            config
                .declared_in
                .get("kustomization/infra")
                .map(String::as_str),
            Some("git/fleet@main@sha1:0123:clusters/edge-1/infra.toml")
        );
        assert_eq!(config.declared_in.get("git/fleet"), None);
        Ok(())
    }

    #[test]
    fn a_problem_is_located_in_its_fragment_and_revision() {
        let layer = layer(&[
            (
                "c/a.toml",
                "[kustomization.a]\nsource = \"git/fleet\"\ninterval = \"5m\"\nprune = true\n",
            ),
            (
                "c/b.toml",
                "\n[kustomization.b]\nsource = \"git/fleet\"\nprune = true\ninterval = \"soon\"\n",
            ),
        ]);
        let message = refused(&layer);
        assert!(
            message.contains("git/fleet@main@sha1:0123:c/b.toml:5:12: kustomization.b.interval:"),
            "{message}"
        );
    }

    #[test]
    fn a_name_declared_in_the_file_and_a_fragment_is_refused_in_the_fragment() {
        let layer = layer(&[(
            "c/k.toml",
            "[kustomization.a]\nsource = \"git/fleet\"\n\n[kustomization.a]\nsource = \"git/fleet\"\n",
        )]);
        let message = refused(&layer);
        assert!(
            message.contains("git/fleet@main@sha1:0123:c/k.toml:"),
            "{message}"
        );
    }

    #[test]
    fn a_fragment_may_not_redefine_the_agent_or_the_config_source() {
        let message = refused(&layer(&[(
            "c/k.toml",
            "[agent]\nstate_dir = \"/tmp\"\n\n[git.fleet]\nurl = \"https://evil.example.org/x.git\"\n",
        )]));
        assert!(
            message.contains("c/k.toml:1:1: agent: a fragment may not set [agent]"),
            "{message}"
        );
        assert!(
            message.contains("c/k.toml:4:6: git.fleet: a fragment may not declare the source the config comes from"),
            "{message}"
        );
    }

    #[test]
    fn keys_above_the_first_table_are_refused() {
        let message = refused(&layer(&[(
            "c/k.toml",
            "# top\nkustomization.a.source = \"git/fleet\"\n",
        )]));
        assert!(
            message.contains("c/k.toml:2:1: (top level): a fragment holds tables only"),
            "{message}"
        );
    }

    #[test]
    fn a_saved_layer_is_for_the_config_from_it_was_read_for() {
        let from = ConfigFrom {
            source: SourceRef::new(SourceKind::Git, "fleet"),
            path: "clusters/edge-1".into(),
        };
        assert!(layer(&[]).is_for(&from));
        let elsewhere = ConfigFrom {
            path: "clusters/edge-2".into(),
            ..from
        };
        assert!(!layer(&[]).is_for(&elsewhere));
    }
}
