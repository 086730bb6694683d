//! Validation of `[kustomization.NAME]` tables: their source, path,
//! durations, health checks and the `depends_on` graph.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::raw::RawKustomization;
use super::validate::{Checker, DEFAULT_GIT_INTERVAL};
use super::{DeletionPolicy, HealthCheck, Kustomization, Source, SourceKind, SourceRef};

/// A kustomization's timeout defaults to its interval, but a long interval
/// must not let one stuck apply block its retries for hours.
const MAX_DEFAULT_KUSTOMIZATION_TIMEOUT: Duration = Duration::from_secs(5 * 60);

impl Checker<'_> {
    pub(super) fn kustomization(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawKustomization>,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<Kustomization> {
        let raw = raw.into_inner();
        let source = self.source_ref(&raw.source, &format!("{key}.source"), sources);
        let path = match &raw.path {
            Some(path) => self.relative_path(path, &format!("{key}.path")),
            None => Some(PathBuf::new()),
        };
        let interval = self.duration(&raw.interval, &format!("{key}.interval"));
        let retry_interval = self.optional_duration(
            &raw.retry_interval,
            &format!("{key}.retry_interval"),
            interval.unwrap_or(DEFAULT_GIT_INTERVAL),
        );
        let default_timeout = interval
            .unwrap_or(MAX_DEFAULT_KUSTOMIZATION_TIMEOUT)
            .min(MAX_DEFAULT_KUSTOMIZATION_TIMEOUT);
        let timeout =
            self.optional_duration(&raw.timeout, &format!("{key}.timeout"), default_timeout);
        let deletion_policy = self.deletion_policy(&raw.deletion_policy, key);
        let health_checks = self.health_checks(&raw, key);
        let target_namespace =
            self.namespace_name(&raw.target_namespace, &format!("{key}.target_namespace"));
        let drift = self.drift(&raw.drift, key);
        let overlay = self.overlay(&raw, key);
        let post_build = self.post_build(&raw, key);
        Some(Kustomization {
            name: name.to_string(),
            source: source?,
            path: path?,
            interval: interval?,
            retry_interval: retry_interval?,
            timeout: timeout?,
            prune: *raw.prune.get_ref(),
            wait: raw.wait.map(Spanned::into_inner).unwrap_or(false),
            health_checks: health_checks?,
            depends_on: raw
                .depends_on
                .unwrap_or_default()
                .into_iter()
                .map(Spanned::into_inner)
                .collect(),
            target_namespace: target_namespace?,
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
            force: raw.force.map(Spanned::into_inner).unwrap_or(false),
            deletion_policy: deletion_policy?,
            drift: drift?,
            overlay: overlay?,
            post_build: post_build?,
        })
    }

    /// `deletion_policy = "delete" | "orphan"` (default delete).
    pub(super) fn deletion_policy(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<DeletionPolicy> {
        let Some(policy) = raw else {
            return Some(DeletionPolicy::Delete);
        };
        match policy.get_ref().as_str() {
            "delete" => Some(DeletionPolicy::Delete),
            "orphan" => Some(DeletionPolicy::Orphan),
            other => {
                self.problem(
                    policy.span(),
                    &format!("{key}.deletion_policy"),
                    format!("unknown deletion policy {other:?}: use \"delete\" or \"orphan\""),
                );
                None
            }
        }
    }

    /// A namespace name at `key`: `None` on a problem; `Some(None)` when unset.
    pub(super) fn namespace_name(
        &mut self,
        raw: &Option<Spanned<String>>,
        key: &str,
    ) -> Option<Option<String>> {
        let Some(namespace) = raw else {
            return Some(None);
        };
        if is_namespace_name(namespace.get_ref()) {
            return Some(Some(namespace.get_ref().clone()));
        }
        self.problem(
            namespace.span(),
            key,
            format!(
                "{:?} is not a namespace name: 1 to 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
                namespace.get_ref()
            ),
        );
        None
    }

    fn health_checks(&mut self, raw: &RawKustomization, key: &str) -> Option<Vec<HealthCheck>> {
        let before = self.problems.len();
        let mut checks = Vec::new();
        for (index, check) in raw.health_checks.iter().flatten().enumerate() {
            let value = check.get_ref();
            if value.kind.is_empty() || value.name.is_empty() {
                self.problem(
                    check.span(),
                    &format!("{key}.health_checks[{index}]"),
                    "a health check needs a kind and a name",
                );
            }
            checks.push(HealthCheck {
                api_version: value.api_version.clone(),
                kind: value.kind.clone(),
                name: value.name.clone(),
                namespace: value.namespace.clone(),
            });
        }
        (self.problems.len() == before).then_some(checks)
    }

    /// A `kind/name` naming a configured source whose artifact holds files.
    pub(super) fn source_ref(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<SourceRef> {
        let source = self.configured_source(value, key, sources)?;
        if !source.kind.holds_files() {
            let kinds: Vec<String> = SourceKind::ALL
                .iter()
                .filter(|k| k.holds_files())
                .map(|k| format!("\"{}/NAME\"", k.as_str()))
                .collect();
            self.problem(
                value.span(),
                key,
                format!(
                    "{source} is not a source of files: name a {} source",
                    kinds.join(" or ")
                ),
            );
            return None;
        }
        Some(source)
    }

    /// A `kind/name` naming a configured source of any kind.
    pub(super) fn configured_source(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<SourceRef> {
        let Some((kind, name)) = value.get_ref().split_once('/') else {
            self.problem(
                value.span(),
                key,
                "write the source as kind/name, e.g. \"git/fleet\"",
            );
            return None;
        };
        let Some(kind) = SourceKind::parse(kind) else {
            let known: Vec<String> = SourceKind::ALL
                .iter()
                .map(|k| format!("{:?}", k.as_str()))
                .collect();
            self.problem(
                value.span(),
                key,
                format!(
                    "unknown source kind {kind:?}: kedge knows {}",
                    known.join(", ")
                ),
            );
            return None;
        };
        let source = SourceRef::new(kind, name);
        if !sources.contains_key(&source) {
            self.problem(
                value.span(),
                key,
                format!("no source [{}.{name}] in this config", kind.table()),
            );
            return None;
        }
        Some(source)
    }

    pub(super) fn relative_path(&mut self, value: &Spanned<String>, key: &str) -> Option<PathBuf> {
        match normalise_relative(Path::new(value.get_ref())) {
            Ok(path) => Some(path),
            Err(why) => {
                self.problem(
                    value.span(),
                    key,
                    format!("bad path {:?}: {why}", value.get_ref()),
                );
                None
            }
        }
    }

    pub(super) fn dependencies(
        &mut self,
        kustomizations: &BTreeMap<String, Kustomization>,
        spans: &BTreeMap<String, Range<usize>>,
    ) {
        for k in kustomizations.values() {
            for dependency in &k.depends_on {
                if !spans.contains_key(dependency) {
                    let span = spans.get(&k.name).cloned().unwrap_or(0..0);
                    self.problem(
                        span,
                        &format!("kustomization.{}.depends_on", k.name),
                        format!("no kustomization {dependency:?} in this config"),
                    );
                }
            }
        }
        let graph = kustomizations
            .values()
            .map(|k| (k.name.clone(), k.depends_on.clone()))
            .collect();
        if let Some(cycle) = find_cycle(&graph) {
            let first = cycle.first().cloned().unwrap_or_default();
            let span = spans.get(&first).cloned().unwrap_or(0..0);
            self.problem(
                span,
                &format!("kustomization.{first}.depends_on"),
                format!("depends_on has a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
}

/// A relative path with `.` parts removed, refused when absolute or when a
/// `..` climbs above the artifact root.
pub(crate) fn normalise_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err("it climbs out of the source with '..'");
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err("it must be relative to the source root")
            }
        }
    }
    Ok(parts.iter().collect())
}

/// The first cycle found in a `depends_on` graph (name → the names it
/// waits for), as the names along it with the first repeated at the end.
pub(super) fn find_cycle(graph: &BTreeMap<String, Vec<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        name: &str,
        all: &BTreeMap<String, Vec<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(name) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let start = path.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(name.to_string());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(name.to_string(), Mark::Visiting);
        path.push(name.to_string());
        for dependency in all.get(name).map(Vec::as_slice).unwrap_or_default() {
            if let Some(cycle) = visit(dependency, all, marks, path) {
                return Some(cycle);
            }
        }
        path.pop();
        marks.insert(name.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    graph
        .keys()
        .find_map(|name| visit(name, graph, &mut marks, &mut Vec::new()))
}

/// A Kubernetes namespace name (an RFC 1123 label).
fn is_namespace_name(name: &str) -> bool {
    let edges_ok =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 63
        && edges_ok(name.chars().next())
        && edges_ok(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
