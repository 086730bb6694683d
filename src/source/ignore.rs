//! Which files of a repository stay out of its artifact: Flux's default
//! excludes, the `.sourceignore` files found in the tree, and the source's
//! `ignore` patterns, all in gitignore syntax.

use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use ignore::Match;

/// Flux's default excludes: VCS metadata, CI configuration, images and
/// archives, which manifests never need.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    ".git/",
    ".gitignore",
    ".gitmodules",
    ".gitattributes",
    "*.jpg",
    "*.jpeg",
    "*.gif",
    "*.png",
    "*.wmv",
    "*.flv",
    "*.tar.gz",
    "*.zip",
    ".github/",
    ".circleci/",
    ".travis.yml",
    ".gitlab-ci.yml",
    "appveyor.yml",
    ".drone.yml",
    "cloudbuild.yaml",
    "codeship-services.yml",
    "codeship-steps.yml",
    "**/.goreleaser.yml",
    "**/.sops.yaml",
    "**/.flux.yaml",
];

/// The name of the per-directory ignore file, as in Flux.
pub const SOURCEIGNORE: &str = ".sourceignore";

/// A bad pattern, named with where it came from.
#[derive(Debug, thiserror::Error)]
#[error("bad ignore pattern {pattern:?} in {origin}: {source}")]
pub struct PatternError {
    pub pattern: String,
    pub origin: String,
    #[source]
    pub source: ignore::Error,
}

/// The ignore rules of one artifact. Paths are relative to the repository
/// root, with `/` separators.
pub struct IgnoreRules {
    /// Defaults, the root `.sourceignore` and the config's patterns.
    root: Gitignore,
    /// Nested `.sourceignore` files: (their directory, their rules), deepest
    /// last so they win.
    nested: Vec<(PathBuf, Gitignore)>,
}

/// Gitignore matching is lexical: rooting every matcher at a fixed virtual
/// directory lets it run over paths of a Git tree that is not on disk.
fn virtual_root() -> PathBuf {
    PathBuf::from("/kedge-source")
}

fn add_lines(
    builder: &mut GitignoreBuilder,
    lines: &str,
    origin: &str,
) -> Result<(), PatternError> {
    for line in lines.lines() {
        builder
            .add_line(Some(PathBuf::from(origin)), line)
            .map_err(|source| PatternError {
                pattern: line.to_string(),
                origin: origin.to_string(),
                source,
            })?;
    }
    Ok(())
}

fn build(builder: GitignoreBuilder, origin: &str) -> Result<Gitignore, PatternError> {
    builder.build().map_err(|source| PatternError {
        pattern: String::new(),
        origin: origin.to_string(),
        source,
    })
}

impl IgnoreRules {
    /// Rules from the defaults, the `.sourceignore` files (`(directory,
    /// content)`, the root one with an empty directory) and the config's
    /// `extra` patterns, which come last and so win.
    pub fn new(
        sourceignores: &[(PathBuf, String)],
        extra: &[String],
    ) -> Result<IgnoreRules, PatternError> {
        let mut root = GitignoreBuilder::new(virtual_root());
        add_lines(
            &mut root,
            &DEFAULT_EXCLUDES.join("\n"),
            "the default excludes",
        )?;
        let mut nested = Vec::new();
        let mut sorted: Vec<&(PathBuf, String)> = sourceignores.iter().collect();
        sorted.sort_by_key(|(dir, _)| dir.components().count());
        for (dir, content) in sorted {
            let origin = dir.join(SOURCEIGNORE).to_string_lossy().into_owned();
            if dir.as_os_str().is_empty() {
                add_lines(&mut root, content, &origin)?;
            } else {
                let mut builder = GitignoreBuilder::new(virtual_root().join(dir));
                add_lines(&mut builder, content, &origin)?;
                nested.push((dir.clone(), build(builder, &origin)?));
            }
        }
        add_lines(&mut root, &extra.join("\n"), "the source's ignore setting")?;
        Ok(IgnoreRules {
            root: build(root, "the ignore rules")?,
            nested,
        })
    }

    /// Whether the file at `path` (relative to the repository root) stays
    /// out of the artifact, because of itself or of a parent directory.
    pub fn is_ignored(&self, path: &Path) -> bool {
        let full = virtual_root().join(path);
        let mut ignored = matches!(
            self.root.matched_path_or_any_parents(&full, false),
            Match::Ignore(_)
        );
        for (dir, rules) in &self.nested {
            if path.starts_with(dir) {
                match rules.matched_path_or_any_parents(&full, false) {
                    Match::Ignore(_) => ignored = true,
                    Match::Whitelist(_) => ignored = false,
                    Match::None => {}
                }
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(sourceignores: &[(&str, &str)], extra: &[&str]) -> IgnoreRules {
        let sourceignores: Vec<(PathBuf, String)> = sourceignores
            .iter()
            .map(|(dir, content)| (PathBuf::from(dir), content.to_string()))
            .collect();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        match IgnoreRules::new(&sourceignores, &extra) {
            Ok(rules) => rules,
            Err(err) => panic!("test patterns must be valid: {err}"),
        }
    }

    #[test]
    fn flux_default_excludes_drop_ci_files_images_and_git_metadata() {
        let rules = rules(&[], &[]);
        assert!(rules.is_ignored(Path::new(".github/workflows/ci.yaml")));
        assert!(rules.is_ignored(Path::new("docs/logo.png")));
        assert!(rules.is_ignored(Path::new(".gitignore")));
        assert!(rules.is_ignored(Path::new("apps/.sops.yaml")));
        assert!(!rules.is_ignored(Path::new("apps/deployment.yaml")));
    }

    #[test]
    fn config_patterns_and_root_sourceignore_add_to_the_defaults() {
        let rules = rules(&[("", "secret/\n")], &["docs/", "*.md"]);
        assert!(rules.is_ignored(Path::new("docs/guide/index.yaml")));
        assert!(rules.is_ignored(Path::new("apps/README.md")));
        assert!(rules.is_ignored(Path::new("secret/key.yaml")));
        assert!(!rules.is_ignored(Path::new("apps/kustomization.yaml")));
    }

    #[test]
    fn a_nested_sourceignore_applies_only_below_its_directory() {
        let rules = rules(&[("apps", "*.txt\n")], &[]);
        assert!(rules.is_ignored(Path::new("apps/notes.txt")));
        assert!(rules.is_ignored(Path::new("apps/web/notes.txt")));
        assert!(!rules.is_ignored(Path::new("infra/notes.txt")));
    }
}
