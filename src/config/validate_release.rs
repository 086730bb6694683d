//! Validation of `[helm_release.NAME]` tables: the chart (a declared
//! `[helm_chart]`, or one made from the release's own `chart = { … }`),
//! names and namespaces, values, policies and `depends_on`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};
use toml::Spanned;

use super::raw::{RawHelmRelease, RawRemediation, RawValuesFrom};
use super::validate::Checker;
use super::{
    ChartOrigin, CrdPolicy, Dependency, DriftIgnoreRule, HelmChart, HelmRelease, InstallPolicy,
    PostRenderer, ReleaseDriftMode, RemediationStrategy, Source, SourceKind, SourceRef,
    UpgradePolicy, ValuesFrom, ValuesObjectKind,
};

const DEFAULT_RELEASE_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// Helm's own default for an action's timeout.
const DEFAULT_RELEASE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long the chart made from a release's `chart = { … }` may take to fetch.
const DEFAULT_CHART_TIMEOUT: Duration = Duration::from_secs(60);
/// Flux's default `maxHistory`.
const DEFAULT_MAX_HISTORY: u32 = 5;
const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_VALUES_KEY: &str = "values.yaml";
/// Helm refuses longer release names (they become label values with a suffix).
const MAX_RELEASE_NAME: usize = 53;

/// A release as checked, and the chart source its `chart = { … }` makes.
pub(super) struct CheckedRelease {
    pub release: HelmRelease,
    pub own_chart: Option<HelmChart>,
}

impl Checker<'_> {
    pub(super) fn helm_release(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawHelmRelease>,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<CheckedRelease> {
        let span = raw.span();
        let raw = raw.into_inner();
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_RELEASE_INTERVAL,
        );
        let timeout = self.optional_duration(
            &raw.timeout,
            &format!("{key}.timeout"),
            DEFAULT_RELEASE_TIMEOUT,
        );
        let chart = self.release_chart(name, key, &raw, span, interval, sources);
        let target = self.namespace_name(&raw.target_namespace, &format!("{key}.target_namespace"));
        let storage =
            self.namespace_name(&raw.storage_namespace, &format!("{key}.storage_namespace"));
        let target_namespace = target
            .clone()
            .flatten()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let release_name = self.release_name(name, key, &raw, target.as_ref());
        let values = self.release_values(key, &raw);
        let values_from = self.values_from(key, &raw, &target_namespace);
        let values_files = self.values_files(key, &raw);
        let depends_on = self.release_dependencies(key, &raw);
        let max_history = match &raw.max_history {
            Some(value) => self.count(value, &format!("{key}.max_history")),
            None => Some(DEFAULT_MAX_HISTORY),
        };
        let install = self.install_policy(key, &raw);
        let upgrade = self.upgrade_policy(key, &raw);
        let deletion_policy = self.deletion_policy(&raw.deletion_policy, key);
        let drift = self.drift_mode(key, &raw);
        let drift_ignore = self.release_drift_ignore(key, &raw);
        let post_renderers = self.post_renderers(key, &raw);
        let (chart, own_chart) = chart?;
        let chart_name = match own_chart.as_ref().map(|c| &c.origin) {
            Some(ChartOrigin::Repository { chart, .. }) => chart.clone(),
            _ => declared_chart_name(&chart, sources),
        };
        let release = HelmRelease {
            name: name.to_string(),
            chart: chart.clone(),
            chart_name,
            storage_namespace: storage?.unwrap_or_else(|| target_namespace.clone()),
            target_namespace,
            release_name: release_name?,
            interval: interval?,
            timeout: timeout?,
            max_history: max_history?,
            depends_on: depends_on?,
            values_from: values_from?,
            values: values?,
            values_files: values_files?,
            install: install?,
            upgrade: upgrade?,
            test: flag(raw.test.as_ref().and_then(|t| t.get_ref().enable.as_ref())),
            drift: drift?,
            drift_ignore: drift_ignore?,
            post_renderers: post_renderers?,
            wait: raw.wait.map(Spanned::into_inner).unwrap_or(true),
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
            deletion_policy: deletion_policy?,
        };
        Some(CheckedRelease { release, own_chart })
    }

    /// `chart = { … }` (a chart source of the release's own name) or
    /// `chart_ref = "NAME"` (a declared `[helm_chart.NAME]`).
    fn release_chart(
        &mut self,
        name: &str,
        key: &str,
        raw: &RawHelmRelease,
        span: std::ops::Range<usize>,
        interval: Option<Duration>,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<(SourceRef, Option<HelmChart>)> {
        match (&raw.chart, &raw.chart_ref) {
            (Some(chart), None) => {
                let own = SourceRef::new(SourceKind::Chart, name);
                if sources.contains_key(&own) {
                    self.problem(
                        chart.span(),
                        &format!("{key}.chart"),
                        format!(
                            "the chart of this release is named chart/{name}, which [helm_chart.{name}] already is: use chart_ref = \"{name}\" or rename one"
                        ),
                    );
                    return None;
                }
                let origin = self.chart_origin(chart, &format!("{key}.chart"), sources)?;
                let chart = self.chart_source(name, origin, interval?, DEFAULT_CHART_TIMEOUT);
                Some((own, Some(chart)))
            }
            (None, Some(chart_ref)) => {
                let declared = SourceRef::new(SourceKind::Chart, chart_ref.get_ref());
                if sources.contains_key(&declared) {
                    return Some((declared, None));
                }
                self.problem(
                    chart_ref.span(),
                    &format!("{key}.chart_ref"),
                    format!(
                        "no valid [helm_chart.{}] in this config",
                        chart_ref.get_ref()
                    ),
                );
                None
            }
            (Some(chart), Some(_)) => {
                self.problem(
                    chart.span(),
                    &format!("{key}.chart"),
                    "give either chart or chart_ref, not both",
                );
                None
            }
            (None, None) => {
                self.problem(
                    span,
                    key,
                    "a release needs its chart: chart = { repository, name, version }, { source, path } or { file }, or chart_ref = \"NAME\" of a [helm_chart]",
                );
                None
            }
        }
    }

    /// Flux's default: `<target_namespace>-<name>` when a target namespace
    /// is given, else the name; past 53 characters shortened with a hash.
    fn release_name(
        &mut self,
        name: &str,
        key: &str,
        raw: &RawHelmRelease,
        target: Option<&Option<String>>,
    ) -> Option<String> {
        let Some(given) = &raw.release_name else {
            return Some(match target {
                Some(Some(namespace)) => shorten_release_name(&format!("{namespace}-{name}")),
                _ => shorten_release_name(name),
            });
        };
        let value = given.get_ref();
        let valid = !value.is_empty()
            && value.len() <= MAX_RELEASE_NAME
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric());
        if valid {
            return Some(value.clone());
        }
        self.problem(
            given.span(),
            &format!("{key}.release_name"),
            format!("{value:?} is not a Helm release name: 1 to {MAX_RELEASE_NAME} characters of a-z, 0-9, '-' and '.', starting and ending with a letter or digit"),
        );
        None
    }

    /// `values_yaml` under `values`, as one JSON object.
    fn release_values(
        &mut self,
        key: &str,
        raw: &RawHelmRelease,
    ) -> Option<serde_json::Map<String, serde_json::Value>> {
        let mut merged = serde_json::Map::new();
        let mut ok = true;
        if let Some(text) = &raw.values_yaml {
            match serde_yaml::from_str::<serde_json::Value>(text.get_ref()) {
                Ok(serde_json::Value::Object(values)) => merged = values,
                Ok(serde_json::Value::Null) => {}
                Ok(_) => {
                    self.problem(
                        text.span(),
                        &format!("{key}.values_yaml"),
                        "values_yaml must be a YAML mapping",
                    );
                    ok = false;
                }
                Err(err) => {
                    self.problem(
                        text.span(),
                        &format!("{key}.values_yaml"),
                        format!("values_yaml is not YAML: {err}"),
                    );
                    ok = false;
                }
            }
        }
        if let Some(values) = &raw.values {
            match toml_to_json(&toml::Value::Table(values.get_ref().clone())) {
                Ok(serde_json::Value::Object(values)) => merge_values(&mut merged, values),
                Ok(_) => {}
                Err(path) => {
                    self.problem(
                        values.span(),
                        &format!("{key}.values{path}"),
                        "a TOML date or time has no Helm value: quote it as a string",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(merged)
    }

    fn values_from(
        &mut self,
        key: &str,
        raw: &RawHelmRelease,
        target_namespace: &str,
    ) -> Option<Vec<ValuesFrom>> {
        let before = self.problems.len();
        let mut entries = Vec::new();
        let list = raw.values_from.as_ref().map(Spanned::get_ref);
        for (index, entry) in list.into_iter().flatten().enumerate() {
            let key = format!("{key}.values_from[{index}]");
            if let Some(entry) = self.values_from_entry(&key, entry, target_namespace) {
                entries.push(entry);
            }
        }
        (self.problems.len() == before).then_some(entries)
    }

    fn values_from_entry(
        &mut self,
        key: &str,
        entry: &RawValuesFrom,
        target_namespace: &str,
    ) -> Option<ValuesFrom> {
        if let Some(file) = &entry.file {
            for (field, given) in [("kind", &entry.kind), ("name", &entry.name)] {
                if let Some(given) = given {
                    self.problem(
                        given.span(),
                        &format!("{key}.{field}"),
                        "give either file or kind and name",
                    );
                }
            }
            let path = self.absolute_path(file, &format!("{key}.file"), false)?;
            return Some(ValuesFrom::File { path });
        }
        let (Some(kind), Some(name)) = (&entry.kind, &entry.name) else {
            self.problem(
                0..0,
                key,
                "an entry of values_from is { file } or { kind, name }",
            );
            return None;
        };
        let kind = match kind.get_ref().as_str() {
            "ConfigMap" => ValuesObjectKind::ConfigMap,
            "Secret" => ValuesObjectKind::Secret,
            other => {
                self.problem(
                    kind.span(),
                    &format!("{key}.kind"),
                    format!("kind {other:?}: values come from a \"ConfigMap\" or a \"Secret\""),
                );
                return None;
            }
        };
        let namespace = self.namespace_name(&entry.namespace, &format!("{key}.namespace"))?;
        Some(ValuesFrom::Object {
            kind,
            name: name.get_ref().clone(),
            namespace: namespace.unwrap_or_else(|| target_namespace.to_string()),
            values_key: entry
                .values_key
                .as_ref()
                .map(|k| k.get_ref().clone())
                .unwrap_or_else(|| DEFAULT_VALUES_KEY.to_string()),
            optional: flag(entry.optional.as_ref()),
        })
    }

    fn values_files(&mut self, key: &str, raw: &RawHelmRelease) -> Option<Vec<PathBuf>> {
        let Some(files) = &raw.values_files else {
            return Some(Vec::new());
        };
        let before = self.problems.len();
        let mut paths = Vec::new();
        for (index, file) in files.get_ref().iter().enumerate() {
            let spanned = Spanned::new(files.span(), file.clone());
            if let Some(path) =
                self.relative_path(&spanned, &format!("{key}.values_files[{index}]"))
            {
                paths.push(path);
            }
        }
        (self.problems.len() == before).then_some(paths)
    }

    /// `"infra"` and `"kustomization/infra"` name a kustomization;
    /// `"helm_release/x"` (or Flux-like `"helm_release:x"`) a release.
    fn release_dependencies(&mut self, key: &str, raw: &RawHelmRelease) -> Option<Vec<Dependency>> {
        let Some(list) = &raw.depends_on else {
            return Some(Vec::new());
        };
        let mut dependencies = Vec::new();
        for written in list.get_ref() {
            match parse_dependency(written) {
                Some(dependency) => dependencies.push(dependency),
                None => {
                    self.problem(
                        list.span(),
                        &format!("{key}.depends_on"),
                        format!("{written:?}: write a kustomization's name, or helm_release/NAME"),
                    );
                    return None;
                }
            }
        }
        Some(dependencies)
    }

    fn install_policy(&mut self, key: &str, raw: &RawHelmRelease) -> Option<InstallPolicy> {
        let install = raw.install.as_ref().map(Spanned::get_ref);
        let key = format!("{key}.install");
        let crds = self.crd_policy(
            install.and_then(|i| i.crds.as_ref()),
            &key,
            CrdPolicy::Create,
        );
        let remediation = install.and_then(|i| i.remediation.as_ref());
        let (retries, _, remediate_last_failure) = self.remediation(remediation, &key)?;
        Some(InstallPolicy {
            crds: crds?,
            create_namespace: flag(install.and_then(|i| i.create_namespace.as_ref())),
            retries,
            remediate_last_failure,
        })
    }

    fn upgrade_policy(&mut self, key: &str, raw: &RawHelmRelease) -> Option<UpgradePolicy> {
        let upgrade = raw.upgrade.as_ref().map(Spanned::get_ref);
        let key = format!("{key}.upgrade");
        let crds = self.crd_policy(upgrade.and_then(|u| u.crds.as_ref()), &key, CrdPolicy::Skip);
        let remediation = upgrade.and_then(|u| u.remediation.as_ref());
        let (retries, strategy, remediate_last_failure) = self.remediation(remediation, &key)?;
        Some(UpgradePolicy {
            crds: crds?,
            cleanup_on_fail: flag(upgrade.and_then(|u| u.cleanup_on_fail.as_ref())),
            force: flag(upgrade.and_then(|u| u.force.as_ref())),
            retries,
            strategy,
            remediate_last_failure,
        })
    }

    fn drift_mode(&mut self, key: &str, raw: &RawHelmRelease) -> Option<ReleaseDriftMode> {
        let mode = raw
            .drift_detection
            .as_ref()
            .and_then(|d| d.get_ref().mode.as_ref());
        let Some(mode) = mode else {
            return Some(ReleaseDriftMode::default());
        };
        match mode.get_ref().as_str() {
            "enabled" => Some(ReleaseDriftMode::Enabled),
            "warn" => Some(ReleaseDriftMode::Warn),
            "disabled" => Some(ReleaseDriftMode::Disabled),
            other => {
                self.problem(
                    mode.span(),
                    &format!("{key}.drift_detection.mode"),
                    format!("unknown mode {other:?}: use \"enabled\", \"warn\" or \"disabled\""),
                );
                None
            }
        }
    }

    /// `drift_detection.ignore`, checked as a kustomization's `drift.ignore`.
    fn release_drift_ignore(
        &mut self,
        key: &str,
        raw: &RawHelmRelease,
    ) -> Option<Vec<DriftIgnoreRule>> {
        let before = self.problems.len();
        let rules = raw
            .drift_detection
            .as_ref()
            .and_then(|d| d.get_ref().ignore.as_deref());
        let rules = self.drift_ignore_rules(rules, &format!("{key}.drift_detection"));
        (self.problems.len() == before).then_some(rules)
    }

    /// `post_renderers = [{ kustomize = { patches, images } }]`.
    fn post_renderers(&mut self, key: &str, raw: &RawHelmRelease) -> Option<Vec<PostRenderer>> {
        let before = self.problems.len();
        let mut renderers = Vec::new();
        for (index, entry) in raw.post_renderers.iter().flatten().enumerate() {
            let entry_key = format!("{key}.post_renderers[{index}]");
            let Some(kustomize) = &entry.get_ref().kustomize else {
                self.problem(
                    entry.span(),
                    &entry_key,
                    "a post-renderer is kustomize = { patches = [...], images = [...] }",
                );
                continue;
            };
            let kustomize_key = format!("{entry_key}.kustomize");
            let kustomize = kustomize.get_ref();
            renderers.push(PostRenderer {
                patches: self.patches(kustomize.patches.as_deref(), &kustomize_key),
                images: self.images(kustomize.images.as_deref(), &kustomize_key),
            });
        }
        (self.problems.len() == before).then_some(renderers)
    }

    fn crd_policy(
        &mut self,
        value: Option<&Spanned<String>>,
        key: &str,
        default: CrdPolicy,
    ) -> Option<CrdPolicy> {
        let Some(value) = value else {
            return Some(default);
        };
        match value.get_ref().as_str() {
            "Skip" => Some(CrdPolicy::Skip),
            "Create" => Some(CrdPolicy::Create),
            "CreateReplace" => Some(CrdPolicy::CreateReplace),
            other => {
                self.problem(
                    value.span(),
                    &format!("{key}.crds"),
                    format!("unknown CRD policy {other:?}: use \"Skip\", \"Create\" or \"CreateReplace\""),
                );
                None
            }
        }
    }

    /// `remediation = { retries, strategy, remediate_last_failure }`.
    fn remediation(
        &mut self,
        raw: Option<&Spanned<RawRemediation>>,
        key: &str,
    ) -> Option<(u32, RemediationStrategy, bool)> {
        let Some(raw) = raw.map(Spanned::get_ref) else {
            return Some((0, RemediationStrategy::Rollback, false));
        };
        let key = format!("{key}.remediation");
        let retries = match &raw.retries {
            Some(retries) => self.count(retries, &format!("{key}.retries")),
            None => Some(0),
        };
        let strategy = match &raw.strategy {
            None => Some(RemediationStrategy::Rollback),
            Some(s) => match s.get_ref().as_str() {
                "rollback" => Some(RemediationStrategy::Rollback),
                "uninstall" => Some(RemediationStrategy::Uninstall),
                other => {
                    self.problem(
                        s.span(),
                        &format!("{key}.strategy"),
                        format!("unknown strategy {other:?}: use \"rollback\" or \"uninstall\""),
                    );
                    None
                }
            },
        };
        let retries = retries?;
        // Flux: the last failure is remediated by default once retries are allowed.
        let remediate_last_failure = raw
            .remediate_last_failure
            .as_ref()
            .map_or(retries > 0, |v| *v.get_ref());
        Some((retries, strategy?, remediate_last_failure))
    }

    /// A count from 0 to `u32::MAX`.
    fn count(&mut self, value: &Spanned<i64>, key: &str) -> Option<u32> {
        match u32::try_from(*value.get_ref()) {
            Ok(count) => Some(count),
            Err(_) => {
                self.problem(value.span(), key, "must be 0 or more");
                None
            }
        }
    }

    /// Checks every release's `depends_on` names something configured and
    /// that releases do not wait on each other in a cycle.
    pub(super) fn release_dependencies_exist(
        &mut self,
        releases: &BTreeMap<String, HelmRelease>,
        kustomizations: &BTreeMap<String, super::Kustomization>,
        spans: &BTreeMap<String, std::ops::Range<usize>>,
    ) {
        for release in releases.values() {
            let span = spans.get(&release.name).cloned().unwrap_or(0..0);
            for dependency in &release.depends_on {
                let known = match dependency {
                    Dependency::Kustomization(name) => kustomizations.contains_key(name),
                    Dependency::HelmRelease(name) => spans.contains_key(name),
                };
                if !known {
                    self.problem(
                        span.clone(),
                        &format!("helm_release.{}.depends_on", release.name),
                        format!("no {dependency} in this config"),
                    );
                }
            }
        }
        let graph: BTreeMap<String, Vec<String>> = releases
            .values()
            .map(|r| {
                let on_releases = r.depends_on.iter().filter_map(|d| match d {
                    Dependency::HelmRelease(name) => Some(name.clone()),
                    Dependency::Kustomization(_) => None,
                });
                (r.name.clone(), on_releases.collect())
            })
            .collect();
        if let Some(cycle) = super::validate_kustomization::find_cycle(&graph) {
            let first = cycle.first().cloned().unwrap_or_default();
            self.problem(
                spans.get(&first).cloned().unwrap_or(0..0),
                &format!("helm_release.{first}.depends_on"),
                format!("depends_on has a cycle: {}", cycle.join(" -> ")),
            );
        }
    }
}

fn flag(value: Option<&Spanned<bool>>) -> bool {
    value.is_some_and(|v| *v.get_ref())
}

fn declared_chart_name(chart: &SourceRef, sources: &BTreeMap<SourceRef, Source>) -> String {
    match sources.get(chart) {
        Some(Source::Chart(HelmChart {
            origin: ChartOrigin::Repository { chart, .. },
            ..
        })) => chart.clone(),
        _ => String::new(),
    }
}

fn parse_dependency(written: &str) -> Option<Dependency> {
    let (kind, name) = match written.split_once(['/', ':']) {
        Some((kind, name)) => (kind, name),
        None => ("kustomization", written),
    };
    if name.is_empty() {
        return None;
    }
    match kind {
        "kustomization" => Some(Dependency::Kustomization(name.to_string())),
        "helm_release" => Some(Dependency::HelmRelease(name.to_string())),
        _ => None,
    }
}

/// Flux's rule for release names past Helm's limit: the first characters,
/// a dash and 12 hex digits of the full name's sha256.
fn shorten_release_name(name: &str) -> String {
    const HASH: usize = 12;
    if name.len() <= MAX_RELEASE_NAME {
        return name.to_string();
    }
    let hash = super::hex(&Sha256::digest(name.as_bytes()));
    let head = name[..MAX_RELEASE_NAME - HASH - 1].trim_end_matches('-');
    format!("{head}-{}", &hash[..HASH])
}

/// TOML to JSON; `Err` names the path (`.a.b[2]`) of a date or time.
fn toml_to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(s) => serde_json::Value::String(s.clone()),
        toml::Value::Integer(i) => serde_json::Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        toml::Value::Boolean(b) => serde_json::Value::Bool(*b),
        toml::Value::Datetime(_) => return Err(String::new()),
        toml::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| toml_to_json(item).map_err(|path| format!("[{i}]{path}")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => serde_json::Value::Object(
            table
                .iter()
                .map(|(k, v)| {
                    toml_to_json(v)
                        .map(|v| (k.clone(), v))
                        .map_err(|path| format!(".{k}{path}"))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Merges `over` into `base` as Helm and Flux merge values: mappings key
/// by key, anything else replaced.
pub fn merge_values(
    base: &mut serde_json::Map<String, serde_json::Value>,
    over: serde_json::Map<String, serde_json::Value>,
) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(serde_json::Value::Object(inner)), serde_json::Value::Object(value)) => {
                merge_values(inner, value)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    const REPOSITORY: &str = "[agent]\nhelm_helper = \"/bin/sh\"\n[helm_repository.charts]\nurl = \"https://charts.example.org/\"\n";

    fn parse(tables: &str) -> Result<Config, String> {
        Config::parse(Path::new("k.toml"), &format!("{REPOSITORY}{tables}"))
            .map_err(|err| err.to_string())
    }

    #[test]
    fn a_release_with_its_own_chart_gets_a_chart_source_and_flux_defaults() {
        let config = parse(concat!(
            "[helm_release.redis]\n",
            "chart = { repository = \"charts\", name = \"redis\", version = \"18.x\" }\n",
            "target_namespace = \"cache\"\n",
            "values = { replica = { replicaCount = 2 } }\n",
            "values_yaml = '''\nreplica:\n  replicaCount: 1\n  extra: null\n'''\n",
            "depends_on = [\"helm_release:base\"]\n",
            "[helm_release.base]\n",
            "chart = { file = \"/srv/base-1.0.0.tgz\" }\n",
        ));
        let config = match config {
            Ok(config) => config,
            Err(err) => panic!("valid: {err}"),
        };
        let Some(redis) = config.helm_releases.get("redis") else {
            panic!("redis is configured")
        };
        assert_eq!(redis.chart, SourceRef::new(SourceKind::Chart, "redis"));
        assert_eq!(redis.chart_name, "redis");
        assert_eq!(redis.release_name, "cache-redis");
        assert_eq!(redis.storage_namespace, "cache");
        assert_eq!(redis.max_history, 5);
        assert!(redis.wait);
        assert_eq!(
            serde_json::Value::Object(redis.values.clone()),
            serde_json::json!({"replica": {"replicaCount": 2, "extra": null}})
        );
        assert!(config.sources.contains_key(&redis.chart));
        let Some(Source::Helm(repository)) = config
            .sources
            .get(&SourceRef::new(SourceKind::Helm, "charts"))
        else {
            panic!("the repository is configured")
        };
        assert!(repository.charts.contains("redis"));
        let Some(base) = config.helm_releases.get("base") else {
            panic!("base is configured")
        };
        assert_eq!(base.release_name, "base");
        assert_eq!(base.target_namespace, "default");
    }

    #[test]
    fn bad_releases_are_refused_naming_the_key() {
        let file = "chart = { file = \"/c.tgz\" }\n";
        let cases = [
            (
                "[helm_release.x]\ntarget_namespace = \"a\"\n".to_string(),
                "helm_release.x: a release needs its chart",
            ),
            (
                "[helm_release.x]\nchart_ref = \"nope\"\n".to_string(),
                "helm_release.x.chart_ref: no valid [helm_chart.nope]",
            ),
            (
                format!("[helm_release.x]\n{file}values = {{ at = 1979-05-27 }}\n"),
                "helm_release.x.values.at: a TOML date",
            ),
            (
                format!("[helm_release.x]\n{file}depends_on = [\"helm_release/y\"]\n"),
                "no helm_release/y in this config",
            ),
            (
                format!("[helm_release.x]\n{file}depends_on = [\"helm_release/y\"]\n[helm_release.y]\n{file}depends_on = [\"helm_release/x\"]\n"),
                "depends_on has a cycle",
            ),
            (
                format!("[helm_release.x]\n{file}upgrade = {{ crds = \"Always\" }}\n"),
                "helm_release.x.upgrade.crds: unknown CRD policy",
            ),
            (
                format!("[helm_release.x]\n{file}[helm_chart.x]\n{file}"),
                "already is: use chart_ref",
            ),
            (
                format!("[helm_release.x]\n{file}drift_detection = {{ ignore = [{{ paths = [\"spec\"] }}] }}\n"),
                "helm_release.x.drift_detection.ignore[0].paths: \"spec\" is not a JSON pointer",
            ),
            (
                format!("[helm_release.x]\n{file}post_renderers = [{{}}]\n"),
                "helm_release.x.post_renderers[0]: a post-renderer is kustomize",
            ),
            (
                format!("[helm_release.x]\n{file}post_renderers = [{{ kustomize = {{ images = [{{ name = \"\" }}] }} }}]\n"),
                "helm_release.x.post_renderers[0].kustomize.images[0].name: name the image",
            ),
        ];
        for (tables, expected) in cases {
            match parse(&tables) {
                Ok(_) => panic!("refused: {tables}"),
                Err(err) => assert!(err.contains(expected), "{expected:?} in {err}"),
            }
        }
    }

    #[test]
    fn drift_ignore_rules_and_post_renderers_are_read_as_a_kustomization_s() {
        let config = parse(concat!(
            "[helm_release.x]\nchart = { file = \"/c.tgz\" }\n",
            "drift_detection = { mode = \"enabled\", ignore = [{ paths = [\"/spec/replicas\"], target = { kind = \"Deployment\" } }] }\n",
            "post_renderers = [{ kustomize = { patches = [{ patch = \"- op: remove\\n  path: /x\\n\", target = { kind = \"Deployment\" } }], images = [{ name = \"web\", new_tag = \"2\" }] } }]\n",
        ));
        let config = match config {
            Ok(config) => config,
            Err(err) => panic!("valid: {err}"),
        };
        let Some(x) = config.helm_releases.get("x") else {
            panic!("x is configured")
        };
        assert_eq!(x.drift, ReleaseDriftMode::Enabled);
        assert_eq!(x.drift_ignore.len(), 1);
        assert_eq!(x.drift_ignore[0].paths, ["/spec/replicas"]);
        assert_eq!(x.drift_ignore[0].target.kind.as_deref(), Some("Deployment"));
        assert_eq!(x.post_renderers.len(), 1);
        let renderer = &x.post_renderers[0];
        assert_eq!(renderer.patches[0].patch, "- op: remove\n  path: /x\n");
        assert_eq!(renderer.images[0].new_tag.as_deref(), Some("2"));
    }

    #[test]
    fn releases_without_the_helper_are_refused_with_how_to_install_it() {
        let text = "[agent]\nhelm_helper = \"/nonexistent/kedge-helm\"\n[helm_release.x]\nchart = { file = \"/c.tgz\" }\n";
        let err = Config::parse(Path::new("k.toml"), text)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|e| e.contains("apt install kedge-helm")),
            "{err:?}"
        );
    }

    #[test]
    fn long_release_names_are_shortened_like_flux() {
        assert_eq!(shorten_release_name("cache-redis"), "cache-redis");
        let long = format!("{}-{}", "a".repeat(30), "b".repeat(30));
        let short = shorten_release_name(&long);
        assert_eq!(short.len(), MAX_RELEASE_NAME);
        assert!(short.starts_with(&"a".repeat(30)));
        assert_ne!(short, shorten_release_name(&format!("{long}x")));
    }

    #[test]
    fn a_toml_date_is_refused_with_its_path() {
        let value: toml::Value =
            toml::from_str("a = { b = [1, 1979-05-27] }").unwrap_or(toml::Value::Boolean(false));
        assert_eq!(toml_to_json(&value), Err(".a.b[1]".to_string()));
    }

    #[test]
    fn values_merge_mappings_key_by_key() {
        let mut base = serde_json::json!({"a": {"x": 1, "y": 2}, "b": [1]});
        let over = serde_json::json!({"a": {"y": 3, "z": null}, "b": [2]});
        if let (serde_json::Value::Object(base), serde_json::Value::Object(over)) =
            (&mut base, over)
        {
            merge_values(base, over);
        }
        assert_eq!(
            base,
            serde_json::json!({"a": {"x": 1, "y": 3, "z": null}, "b": [2]})
        );
    }

    #[test]
    fn dependencies_name_their_kind() {
        assert_eq!(
            parse_dependency("infra"),
            Some(Dependency::Kustomization("infra".into()))
        );
        assert_eq!(
            parse_dependency("helm_release:cert-manager"),
            Some(Dependency::HelmRelease("cert-manager".into()))
        );
        assert_eq!(
            parse_dependency("helm_release/x"),
            Some(Dependency::HelmRelease("x".into()))
        );
        assert_eq!(parse_dependency("git/fleet"), None);
    }
}
