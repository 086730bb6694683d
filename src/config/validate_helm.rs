//! Validation of `[helm_repository.NAME]` and `[helm_chart.NAME]` tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::raw::{RawChartRef, RawHelmChart, RawHelmRelease, RawHelmRepository};
use super::validate::Checker;
use super::version_range::VersionRange;
use super::{ChartOrigin, HelmChart, HelmEndpoint, HelmRepository, Source, SourceKind, SourceRef};

const DEFAULT_REPOSITORY_INTERVAL: Duration = Duration::from_secs(10 * 60);
const DEFAULT_CHART_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_HELM_TIMEOUT: Duration = Duration::from_secs(60);

/// The chart names each repository must keep in its index: those that
/// `[helm_chart]` and `[helm_release]` tables take from it.
pub(super) fn referenced_charts(
    charts: &BTreeMap<Spanned<String>, Spanned<RawHelmChart>>,
    releases: &BTreeMap<Spanned<String>, Spanned<RawHelmRelease>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut referenced: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let declared = charts.values().map(|c| c.get_ref().chart.get_ref());
    let of_releases = releases
        .values()
        .filter_map(|r| r.get_ref().chart.as_ref().map(Spanned::get_ref));
    for chart in declared.chain(of_releases) {
        if let (Some(repository), Some(name)) = (&chart.repository, &chart.name) {
            referenced
                .entry(repository.get_ref().clone())
                .or_default()
                .insert(name.get_ref().clone());
        }
    }
    referenced
}

impl Checker<'_> {
    pub(super) fn helm_repository(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawHelmRepository>,
        charts: BTreeSet<String>,
    ) -> Option<HelmRepository> {
        let raw = raw.into_inner();
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_REPOSITORY_INTERVAL,
        );
        let endpoint = self.helm_endpoint(key, &raw);
        Some(HelmRepository {
            name: name.to_string(),
            endpoint: endpoint?,
            interval: interval?,
            charts,
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
        })
    }

    fn helm_endpoint(&mut self, key: &str, raw: &RawHelmRepository) -> Option<HelmEndpoint> {
        let before = self.problems.len();
        let scheme = self.helm_url(&raw.url, &format!("{key}.url"));
        let timeout = self.optional_duration(
            &raw.timeout,
            &format!("{key}.timeout"),
            DEFAULT_HELM_TIMEOUT,
        );
        let file = |this: &mut Self, value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| this.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let insecure = raw.insecure.as_ref().is_some_and(|i| *i.get_ref());
        let endpoint = HelmEndpoint {
            url: raw.url.get_ref().clone(),
            username: raw.username.as_ref().map(|u| u.get_ref().clone()),
            password_file: file(self, &raw.password_file, "password_file"),
            bearer_token_file: file(self, &raw.bearer_token_file, "bearer_token_file"),
            ca_file: file(self, &raw.ca_file, "ca_file"),
            cert_file: file(self, &raw.cert_file, "cert_file"),
            key_file: file(self, &raw.key_file, "key_file"),
            insecure,
            pass_credentials: raw.pass_credentials.as_ref().is_some_and(|p| *p.get_ref()),
            timeout: timeout?,
        };
        self.helm_credentials(key, raw);
        let clear_text = match scheme.as_deref() {
            Some("http") => true,
            Some("oci") => insecure,
            _ => false,
        };
        if let (Some(value), Some("http" | "https")) = (&raw.insecure, scheme.as_deref()) {
            self.problem(
                value.span(),
                &format!("{key}.insecure"),
                "insecure is for oci:// registries served over plain HTTP; an http(s) repository says which in its URL",
            );
        }
        if clear_text {
            self.no_clear_text_helm_secrets(key, raw);
        }
        if scheme.as_deref() == Some("oci") {
            if let Some(cert) = &raw.cert_file {
                self.problem(
                    cert.span(),
                    &format!("{key}.cert_file"),
                    "mutual TLS is not supported for oci:// registries",
                );
            }
        }
        (self.problems.len() == before).then_some(endpoint)
    }

    /// The URL's scheme (`http`, `https` or `oci`), when the URL is usable.
    fn helm_url(&mut self, url: &Spanned<String>, key: &str) -> Option<String> {
        if url.get_ref() == super::BUNDLE_URL {
            return None;
        }
        let parsed = match reqwest::Url::parse(url.get_ref()) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.problem(
                    url.span(),
                    key,
                    format!("bad URL {:?}: {err}", url.get_ref()),
                );
                return None;
            }
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            self.problem(
                url.span(),
                key,
                "the URL must not hold credentials: use username + password_file, or bearer_token_file",
            );
            return None;
        }
        match parsed.scheme() {
            scheme @ ("http" | "https" | "oci") if parsed.host_str().is_some() => {
                Some(scheme.to_string())
            }
            _ => {
                self.problem(
                    url.span(),
                    key,
                    "a Helm repository URL is https://HOST/… (or http://), or oci://HOST/…",
                );
                None
            }
        }
    }

    fn helm_credentials(&mut self, key: &str, raw: &RawHelmRepository) {
        self.together(
            key,
            ("username", &raw.username),
            ("password_file", &raw.password_file),
        );
        self.together(
            key,
            ("cert_file", &raw.cert_file),
            ("key_file", &raw.key_file),
        );
        if let (Some(token), Some(_)) = (&raw.bearer_token_file, &raw.username) {
            self.problem(
                token.span(),
                &format!("{key}.bearer_token_file"),
                "give either bearer_token_file or username + password_file, not both",
            );
        }
    }

    /// Credentials over plain HTTP would cross the network readable:
    /// refused, as for Git.
    fn no_clear_text_helm_secrets(&mut self, key: &str, raw: &RawHelmRepository) {
        self.not_over_plain_http(
            key,
            &[
                (&raw.password_file, "password_file"),
                (&raw.bearer_token_file, "bearer_token_file"),
                (&raw.ca_file, "ca_file"),
                (&raw.cert_file, "cert_file"),
            ],
        );
    }

    pub(super) fn helm_chart(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawHelmChart>,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<HelmChart> {
        let raw = raw.into_inner();
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_CHART_INTERVAL,
        );
        let timeout = self.optional_duration(
            &raw.timeout,
            &format!("{key}.timeout"),
            DEFAULT_HELM_TIMEOUT,
        );
        let origin = self.chart_origin(&raw.chart, &format!("{key}.chart"), sources);
        let mut chart = self.chart_source(name, origin?, interval?, timeout?);
        chart.suspend = raw.suspend.map(Spanned::into_inner).unwrap_or(false);
        Some(chart)
    }

    /// The chart source `name` of `origin`.
    pub(super) fn chart_source(
        &mut self,
        name: &str,
        origin: ChartOrigin,
        interval: Duration,
        timeout: Duration,
    ) -> HelmChart {
        HelmChart {
            name: name.to_string(),
            location: chart_location(&origin),
            origin,
            interval,
            timeout,
            suspend: false,
        }
    }

    /// `chart = { … }`: one of a repository's chart, a directory of a
    /// source, or a file. Issue 16's releases declare charts the same way.
    pub(super) fn chart_origin(
        &mut self,
        raw: &Spanned<RawChartRef>,
        key: &str,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<ChartOrigin> {
        let chart = raw.get_ref();
        let given = [&chart.repository, &chart.source, &chart.file]
            .iter()
            .filter(|g| g.is_some())
            .count();
        if given != 1 {
            self.problem(
                raw.span(),
                key,
                "give exactly one of repository (with name and version), source (with path) or file",
            );
            return None;
        }
        let misplaced =
            |this: &mut Self, value: &Option<Spanned<String>>, field: &str, with: &str| {
                if let Some(value) = value {
                    this.problem(
                        value.span(),
                        &format!("{key}.{field}"),
                        format!("{field} goes only with {with}"),
                    );
                }
            };
        if let Some(repository) = &chart.repository {
            misplaced(self, &chart.path, "path", "source");
            return self.repository_chart(repository, chart, raw.span(), key, sources);
        }
        misplaced(self, &chart.name, "name", "repository");
        misplaced(self, &chart.version, "version", "repository");
        misplaced(self, &chart.digest, "digest", "repository");
        if let Some(source) = &chart.source {
            let source_ref = self.source_ref(source, &format!("{key}.source"), sources);
            let path = match &chart.path {
                Some(path) => self.relative_path(path, &format!("{key}.path")),
                None => Some(PathBuf::new()),
            };
            return Some(ChartOrigin::Source {
                source: source_ref?,
                path: path?,
            });
        }
        misplaced(self, &chart.path, "path", "source");
        let file = chart.file.as_ref()?;
        let path = self.absolute_path(file, &format!("{key}.file"), false)?;
        Some(ChartOrigin::File { path })
    }

    fn repository_chart(
        &mut self,
        repository: &Spanned<String>,
        chart: &RawChartRef,
        span: std::ops::Range<usize>,
        key: &str,
        sources: &BTreeMap<SourceRef, Source>,
    ) -> Option<ChartOrigin> {
        let endpoint = match sources.get(&SourceRef::new(SourceKind::Helm, repository.get_ref())) {
            Some(Source::Helm(helm)) => Some(Box::new(helm.endpoint.clone())),
            _ => {
                self.problem(
                    repository.span(),
                    &format!("{key}.repository"),
                    format!(
                        "no valid [helm_repository.{}] in this config",
                        repository.get_ref()
                    ),
                );
                None
            }
        };
        let name = match &chart.name {
            Some(name) if valid_chart_name(name.get_ref()) => Some(name.get_ref().clone()),
            Some(name) => {
                self.problem(
                    name.span(),
                    &format!("{key}.name"),
                    "a chart name is letters, digits, '-', '_' and '.'",
                );
                None
            }
            None => {
                self.problem(span, key, "a chart from a repository needs its name");
                None
            }
        };
        let version = match &chart.version {
            Some(version) => match VersionRange::parse(version.get_ref()) {
                Ok(range) => Some(range),
                Err(err) => {
                    self.problem(version.span(), &format!("{key}.version"), err.to_string());
                    None
                }
            },
            None => Some(VersionRange::any()),
        };
        let digest = self.chart_digest(chart, key, endpoint.as_deref());
        Some(ChartOrigin::Repository {
            repository: repository.get_ref().clone(),
            endpoint: endpoint?,
            chart: name?,
            version: version?,
            digest: digest?,
        })
    }

    /// `digest = "sha256:…"`: a chart pinned to one manifest of an OCI
    /// registry (an HTTP index has no such name for a chart).
    fn chart_digest(
        &mut self,
        chart: &RawChartRef,
        key: &str,
        endpoint: Option<&HelmEndpoint>,
    ) -> Option<Option<String>> {
        let Some(digest) = &chart.digest else {
            return Some(None);
        };
        let field = format!("{key}.digest");
        if let Some(version) = &chart.version {
            self.problem(
                version.span(),
                &format!("{key}.version"),
                "give either version or digest, not both",
            );
            return None;
        }
        if endpoint.is_some_and(|e| !e.is_oci()) {
            self.problem(
                digest.span(),
                &field,
                "digest is for charts of oci:// repositories",
            );
            return None;
        }
        if !is_sha256_digest(digest.get_ref()) {
            self.problem(
                digest.span(),
                &field,
                "a digest is \"sha256:\" and 64 hex digits",
            );
            return None;
        }
        Some(Some(digest.get_ref().to_ascii_lowercase()))
    }
}

/// `sha256:` and 64 hex digits: how OCI names a manifest.
pub(super) fn is_sha256_digest(digest: &str) -> bool {
    digest
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A chart name is a path part of the repository's URLs: nothing that
/// could climb out of it.
fn valid_chart_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

fn chart_location(origin: &ChartOrigin) -> String {
    match origin {
        ChartOrigin::Repository {
            repository,
            chart,
            digest: Some(digest),
            ..
        } => format!("helm/{repository} {chart}@{digest}"),
        ChartOrigin::Repository {
            repository,
            chart,
            version,
            ..
        } => format!("helm/{repository} {chart}@{version}"),
        ChartOrigin::Source { source, path } => format!("{source} {}", path.display()),
        ChartOrigin::File { path } => path.display().to_string(),
    }
}
