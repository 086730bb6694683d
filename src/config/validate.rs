//! From [`RawConfig`] to [`Config`]: every rule that needs more than serde,
//! each problem located at the value it is about.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::error::{Locator, Problem};
use super::raw::{RawAgent, RawConfig, RawConfigFrom, RawGitRef, RawGitSource, RawHelmRelease};
use super::{
    validate_helm, Agent, Config, ConfigFrom, GitAuth, GitRef, GitSource, HelmRelease,
    Kustomization, Source, SourceKind, SourceRef, BUNDLE_URL, DEFAULT_HELM_HELPER,
    DEFAULT_REMOVAL_GRACE_PERIOD, DEFAULT_SOCKET_PATH, DEFAULT_STATE_DIR, DEFAULT_TRUSTED_KEYS_DIR,
    MAX_HELM_RELEASES, MAX_KUSTOMIZATIONS, MAX_SOURCES,
};

pub(super) const DEFAULT_GIT_INTERVAL: Duration = Duration::from_secs(60);
pub(super) const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// The shortest interval or timeout accepted: below it a source or
/// kustomization would make kedge and the API server spin.
pub const MIN_DURATION: Duration = Duration::from_secs(1);

pub(super) struct Checker<'a> {
    pub(super) locator: Locator<'a>,
    pub(super) problems: Vec<Problem>,
}

pub(super) fn parse_and_validate(text: &str) -> Result<Config, Vec<Problem>> {
    let locator = Locator::new(text);
    let raw: RawConfig = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(err) => return Err(vec![syntax_problem(text, &err)]),
    };
    let mut checker = Checker {
        locator,
        problems: Vec::new(),
    };
    let config = checker.config(raw);
    if checker.problems.is_empty() {
        Ok(config)
    } else {
        checker.problems.sort_by_key(|p| (p.line, p.column));
        Err(checker.problems)
    }
}

/// A TOML error (or a serde one, with its span) as a located problem.
pub(super) fn syntax_problem(text: &str, err: &toml::de::Error) -> Problem {
    let span = err.span().unwrap_or(0..0);
    let key = key_at(text, span.clone());
    Locator::new(text).problem(span, &key, err.message())
}

/// The problem of a file that is not UTF-8, at its first bad byte.
pub(super) fn not_utf8(bytes: &[u8], err: std::str::Utf8Error) -> Problem {
    let valid = std::str::from_utf8(&bytes[..err.valid_up_to()]).unwrap_or("");
    let at = valid.len();
    Locator::new(valid).problem(
        at..at,
        &key_at(valid, at..at),
        format!(
            "not UTF-8: invalid byte 0x{:02x}",
            bytes.get(at).copied().unwrap_or(0)
        ),
    )
}

/// The dotted key of a parse error: its table (the header on the error's
/// own line, else the nearest one above) and, when the error is about a
/// `key = value` line, that key (whether the span covers the key or the
/// value).
fn key_at(text: &str, span: Range<usize>) -> String {
    let start = span.start.min(text.len());
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |at| at + 1);
    let line_end = text
        .get(start..)
        .and_then(|t| t.find('\n'))
        .map_or(text.len(), |at| start + at);
    let line = text.get(line_start..line_end).unwrap_or("").trim();
    if let Some(header) = table_header(line) {
        return header;
    }
    let table = text
        .get(..line_start)
        .unwrap_or("")
        .lines()
        .rev()
        .find_map(|line| table_header(line.trim()));
    let before_span = text.get(line_start..start).unwrap_or("");
    let leaf = match before_span.split_once('=') {
        Some((key, _)) => key,
        None => text
            .get(span)
            .unwrap_or("")
            .split(['=', '\n'])
            .next()
            .unwrap_or(""),
    }
    .trim();
    let leaf_is_key = !leaf.is_empty()
        && leaf
            .chars()
            .all(|c| c.is_alphanumeric() || "_-.".contains(c));
    match (table, leaf_is_key) {
        (Some(table), true) => format!("{table}.{leaf}"),
        (Some(table), false) => table,
        (None, true) => leaf.to_string(),
        (None, false) => "(top level)".to_string(),
    }
}

/// `kustomization.apps` for the line `[kustomization.apps]`.
fn table_header(line: &str) -> Option<String> {
    (line.starts_with('[') && line.ends_with(']')).then(|| {
        line.trim_matches(|c| c == '[' || c == ']')
            .trim()
            .to_string()
    })
}

impl Checker<'_> {
    pub(super) fn problem(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let problem = self.locator.problem(span, key, message);
        self.problems.push(problem);
    }

    fn config(&mut self, raw: RawConfig) -> Config {
        let config_from_span = raw
            .agent
            .as_ref()
            .and_then(|agent| agent.get_ref().config_from.as_ref())
            .map(|from| from.get_ref().source.span());
        let agent = match raw.agent {
            Some(agent) => self.agent(agent.into_inner()),
            None => Agent {
                state_dir: PathBuf::from(DEFAULT_STATE_DIR),
                kubeconfig: None,
                socket: PathBuf::from(DEFAULT_SOCKET_PATH),
                removal_grace_period: DEFAULT_REMOVAL_GRACE_PERIOD,
                helm_helper: PathBuf::from(DEFAULT_HELM_HELPER),
                metrics: None,
                bundle_dir: None,
                trusted_keys_dir: PathBuf::from(DEFAULT_TRUSTED_KEYS_DIR),
                config_from: None,
            },
        };
        let git = raw.git.keys().map(|name| (SourceKind::Git.table(), name));
        let bucket = raw
            .bucket
            .keys()
            .map(|name| (SourceKind::Bucket.table(), name));
        let oci = raw.oci.keys().map(|name| (SourceKind::Oci.table(), name));
        let helm = raw
            .helm_repository
            .keys()
            .map(|name| (SourceKind::Helm.table(), name));
        let chart = raw
            .helm_chart
            .keys()
            .map(|name| (SourceKind::Chart.table(), name));
        self.at_most(
            git.chain(bucket).chain(oci).chain(helm).chain(chart),
            MAX_SOURCES,
            "sources",
        );
        self.at_most(
            raw.kustomization.keys().map(|name| ("kustomization", name)),
            MAX_KUSTOMIZATIONS,
            "kustomizations",
        );
        self.at_most(
            raw.helm_release.keys().map(|name| ("helm_release", name)),
            MAX_HELM_RELEASES,
            "Helm releases",
        );
        let mut sources = BTreeMap::new();
        for (name, source) in raw.git {
            let key = format!("git.{}", name.get_ref());
            self.name(&name, &key);
            if let Some(source) = self.git_source(name.get_ref(), &key, source) {
                sources.insert(source.source_ref(), Source::Git(source));
            }
        }
        for (name, source) in raw.bucket {
            let key = format!("{}.{}", SourceKind::Bucket.table(), name.get_ref());
            self.name(&name, &key);
            if let Some(source) = self.bucket_source(name.get_ref(), &key, source) {
                sources.insert(source.source_ref(), Source::Bucket(source));
            }
        }
        for (name, source) in raw.oci {
            let key = format!("{}.{}", SourceKind::Oci.table(), name.get_ref());
            self.name(&name, &key);
            if let Some(source) = self.oci_source(name.get_ref(), &key, source) {
                sources.insert(source.source_ref(), Source::Oci(source));
            }
        }
        let mut referenced = validate_helm::referenced_charts(&raw.helm_chart, &raw.helm_release);
        for (name, repository) in raw.helm_repository {
            let key = format!("{}.{}", SourceKind::Helm.table(), name.get_ref());
            self.name(&name, &key);
            let charts = referenced.remove(name.get_ref()).unwrap_or_default();
            if let Some(repository) = self.helm_repository(name.get_ref(), &key, repository, charts)
            {
                let source_ref = SourceRef::new(SourceKind::Helm, &repository.name);
                sources.insert(source_ref, Source::Helm(repository));
            }
        }
        for (name, chart) in raw.helm_chart {
            let key = format!("{}.{}", SourceKind::Chart.table(), name.get_ref());
            self.name(&name, &key);
            if let Some(chart) = self.helm_chart(name.get_ref(), &key, chart, &sources) {
                let source_ref = SourceRef::new(SourceKind::Chart, &chart.name);
                sources.insert(source_ref, Source::Chart(chart));
            }
        }
        let mut kustomizations = BTreeMap::new();
        let mut depends_spans = BTreeMap::new();
        for (name, kustomization) in raw.kustomization {
            let key = format!("kustomization.{}", name.get_ref());
            self.name(&name, &key);
            depends_spans.insert(name.get_ref().clone(), kustomization.span());
            if let Some(k) = self.kustomization(name.get_ref(), &key, kustomization, &sources) {
                kustomizations.insert(name.into_inner(), k);
            }
        }
        self.dependencies(&kustomizations, &depends_spans);
        self.config_source_declared(&agent, &sources, config_from_span);
        let helm_releases = self.helm_releases(raw.helm_release, &mut sources, &kustomizations);
        self.helm_helper_installed(&agent, &helm_releases);
        let mut receivers = BTreeMap::new();
        for (name, receiver) in raw.receiver {
            let key = format!("receiver.{}", name.get_ref());
            self.name(&name, &key);
            if let Some(receiver) = self.receiver(name.get_ref(), &key, receiver, &sources) {
                receivers.insert(name.into_inner(), receiver);
            }
        }
        let mut alerts = BTreeMap::new();
        for (name, alert) in raw.alert {
            let key = format!("alert.{}", name.get_ref());
            self.name(&name, &key);
            if let Some(alert) = self.alert(name.get_ref(), &key, alert) {
                alerts.insert(name.into_inner(), alert);
            }
        }
        Config {
            agent,
            sources,
            kustomizations,
            receivers,
            alerts,
            helm_releases,
            declared_in: BTreeMap::new(),
        }
    }

    /// Every `[helm_release]`; the charts of their `chart = { … }` join
    /// `sources` under the releases' names.
    fn helm_releases(
        &mut self,
        raw: BTreeMap<Spanned<String>, Spanned<RawHelmRelease>>,
        sources: &mut BTreeMap<SourceRef, Source>,
        kustomizations: &BTreeMap<String, Kustomization>,
    ) -> BTreeMap<String, HelmRelease> {
        let mut releases = BTreeMap::new();
        let mut spans = BTreeMap::new();
        for (name, release) in raw {
            let key = format!("helm_release.{}", name.get_ref());
            self.name(&name, &key);
            spans.insert(name.get_ref().clone(), release.span());
            if let Some(checked) = self.helm_release(name.get_ref(), &key, release, sources) {
                if let Some(chart) = checked.own_chart {
                    sources.insert(checked.release.chart.clone(), Source::Chart(chart));
                }
                releases.insert(name.into_inner(), checked.release);
            }
        }
        self.release_dependencies_exist(&releases, kustomizations, &spans);
        releases
    }

    /// Releases need `kedge-helm`, packaged apart so nodes without releases
    /// stay small: a config with releases and no helper is refused.
    fn helm_helper_installed(&mut self, agent: &Agent, releases: &BTreeMap<String, HelmRelease>) {
        let Some(first) = releases.keys().next() else {
            return;
        };
        if !agent.helm_helper.is_file() {
            self.problem(
                0..0,
                &format!("helm_release.{first}"),
                format!(
                    "Helm releases need the Helm helper {}, which is not installed: apt install kedge-helm",
                    agent.helm_helper.display()
                ),
            );
        }
    }

    fn name(&mut self, name: &Spanned<String>, key: &str) {
        let valid = !name.get_ref().is_empty()
            && name.get_ref().len() <= 63
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && !name.get_ref().starts_with('-');
        if !valid {
            self.problem(
                name.span(),
                key,
                "a name must be 1 to 63 characters of a-z, 0-9, '-' and '_', not starting with '-'",
            );
        }
    }

    fn agent(&mut self, raw: RawAgent) -> Agent {
        let state_dir = raw
            .state_dir
            .and_then(|dir| self.absolute_path(&dir, "agent.state_dir", false))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR));
        let kubeconfig = raw
            .kubeconfig
            .and_then(|file| self.absolute_path(&file, "agent.kubeconfig", true));
        let socket = raw
            .socket
            .and_then(|file| self.absolute_path(&file, "agent.socket", false))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET_PATH));
        let removal_grace_period = raw
            .removal_grace_period
            .and_then(|value| self.duration(&value, "agent.removal_grace_period"))
            .unwrap_or(DEFAULT_REMOVAL_GRACE_PERIOD);
        let helm_helper = raw
            .helm_helper
            .and_then(|file| self.absolute_path(&file, "agent.helm_helper", false))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_HELM_HELPER));
        let allow_remote = raw
            .metrics_allow_remote
            .is_some_and(|allow| *allow.get_ref());
        let metrics = raw
            .metrics
            .and_then(|address| self.metrics_address(&address, allow_remote));
        let bundle_dir = raw
            .bundle_dir
            .and_then(|dir| self.absolute_path(&dir, "agent.bundle_dir", false));
        let trusted_keys_dir = raw
            .trusted_keys_dir
            .and_then(|dir| self.absolute_path(&dir, "agent.trusted_keys_dir", false))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TRUSTED_KEYS_DIR));
        let config_from = raw.config_from.and_then(|from| self.config_from(from));
        Agent {
            state_dir,
            kubeconfig,
            socket,
            removal_grace_period,
            helm_helper,
            metrics,
            bundle_dir,
            trusted_keys_dir,
            config_from,
        }
    }

    /// `[agent] config_from`: a source written `kind/name` and a path
    /// inside its artifact.
    fn config_from(&mut self, raw: Spanned<RawConfigFrom>) -> Option<ConfigFrom> {
        let raw = raw.into_inner();
        let source = SourceRef::parse(raw.source.get_ref());
        let source = match source {
            Some(source) if source.kind.holds_files() => Some(source),
            _ => {
                self.problem(
                    raw.source.span(),
                    "agent.config_from.source",
                    "must be a source of files written kind/name, e.g. \"git/fleet\" (git, bucket or oci)",
                );
                None
            }
        };
        let path = relative_path(raw.path.get_ref());
        if path.is_none() {
            self.problem(
                raw.path.span(),
                "agent.config_from.path",
                "must be a path inside the source, like \"clusters/edge-1/kedge.toml\" (relative, without \"..\")",
            );
        }
        Some(ConfigFrom {
            source: source?,
            path: path?,
        })
    }

    /// The source `config_from` names is declared (in this file: a
    /// fragment may not declare it, see [`super::layers`]).
    fn config_source_declared(
        &mut self,
        agent: &Agent,
        sources: &BTreeMap<SourceRef, Source>,
        span: Option<Range<usize>>,
    ) {
        let Some(from) = &agent.config_from else {
            return;
        };
        if !sources.contains_key(&from.source) {
            self.problem(
                span.unwrap_or(0..0),
                "agent.config_from.source",
                format!(
                    "{} is not declared in this file: the config's own source must be, so that a commit cannot cut the node off from it",
                    from.source
                ),
            );
        }
    }

    /// One problem, at the first name past `limit`, when a config declares
    /// more than `limit` tables of one kind: a bound on what one reload
    /// may ask of the daemon.
    fn at_most<'n>(
        &mut self,
        names: impl Iterator<Item = (&'n str, &'n Spanned<String>)>,
        limit: usize,
        what: &str,
    ) {
        let mut names: Vec<(&str, &Spanned<String>)> = names.collect();
        if names.len() <= limit {
            return;
        }
        let count = names.len();
        names.sort_by_key(|(_, name)| name.span().start);
        let (table, first_over) = names[limit];
        self.problem(
            first_over.span(),
            &format!("{table}.{}", first_over.get_ref()),
            format!("the config declares {count} {what}; kedge accepts at most {limit}"),
        );
    }

    pub(super) fn absolute_path(
        &mut self,
        value: &Spanned<String>,
        key: &str,
        must_exist: bool,
    ) -> Option<PathBuf> {
        let path = PathBuf::from(value.get_ref());
        if !path.is_absolute() {
            self.problem(
                value.span(),
                key,
                format!("{:?} must be an absolute path", value.get_ref()),
            );
            return None;
        }
        if must_exist && !path.is_file() {
            self.problem(
                value.span(),
                key,
                format!("file {} does not exist", path.display()),
            );
            return None;
        }
        Some(path)
    }

    pub(super) fn duration(&mut self, value: &Spanned<String>, key: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(duration) if duration < MIN_DURATION => {
                self.problem(
                    value.span(),
                    key,
                    format!(
                        "{:?} is too short: intervals and timeouts must be at least {}",
                        value.get_ref(),
                        humantime::format_duration(MIN_DURATION)
                    ),
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(err) => {
                self.problem(
                    value.span(),
                    key,
                    format!(
                        "bad duration {:?}: {err} (write e.g. \"30s\", \"5m\", \"1h\")",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn optional_duration(
        &mut self,
        value: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
    ) -> Option<Duration> {
        match value {
            Some(value) => self.duration(value, key),
            None => Some(default),
        }
    }

    fn git_source(
        &mut self,
        name: &str,
        key: &str,
        raw: Spanned<RawGitSource>,
    ) -> Option<GitSource> {
        let table_span = raw.span();
        let raw = raw.into_inner();
        let scheme = self.git_url(&raw.url, &format!("{key}.url"));
        let reference = match &raw.reference {
            Some(reference) => self.git_ref(reference, &format!("{key}.ref")),
            None => Some(GitRef::default_branch()),
        };
        let interval = self.optional_duration(
            &raw.interval,
            &format!("{key}.interval"),
            DEFAULT_GIT_INTERVAL,
        );
        let timeout =
            self.optional_duration(&raw.timeout, &format!("{key}.timeout"), DEFAULT_GIT_TIMEOUT);
        let auth = self.git_auth(key, &raw, scheme, table_span);
        let verify = raw
            .verify
            .as_ref()
            .map(|verify| self.git_verify(key, verify, raw.reference.as_ref()));
        let ignore = raw
            .ignore
            .as_ref()
            .map(|i| i.get_ref().clone())
            .unwrap_or_default();
        Some(GitSource {
            name: name.to_string(),
            url: raw.url.get_ref().clone(),
            reference: reference?,
            interval: interval?,
            timeout: timeout?,
            auth: auth?,
            ignore,
            suspend: raw.suspend.map(Spanned::into_inner).unwrap_or(false),
            verify: match verify {
                Some(checked) => Some(checked?),
                None => None,
            },
        })
    }

    fn git_url(&mut self, url: &Spanned<String>, key: &str) -> Option<gix::url::Scheme> {
        if url.get_ref() == BUNDLE_URL {
            return None;
        }
        let parsed = match gix::url::parse(gix::bstr::BStr::new(url.get_ref().as_str())) {
            Ok(parsed) => parsed,
            Err(err) => {
                self.problem(
                    url.span(),
                    key,
                    format!("bad Git URL {:?}: {err}", url.get_ref()),
                );
                return None;
            }
        };
        if parsed.password().is_some() {
            self.problem(
                url.span(),
                key,
                "the URL holds a password: put it in password_file instead",
            );
            return None;
        }
        let http = matches!(
            parsed.scheme,
            gix::url::Scheme::Http | gix::url::Scheme::Https
        );
        if http && parsed.user().is_some() {
            // A user alone is how tokens ride in URLs (https://TOKEN@host/…);
            // the URL is shown and stored, so it must hold no credential.
            self.problem(
                url.span(),
                key,
                "an http(s) URL must not hold a user: use username + password_file, or bearer_token_file",
            );
            return None;
        }
        match &parsed.scheme {
            gix::url::Scheme::File if !Path::new(&parsed.path.to_string()).is_absolute() => {
                self.problem(url.span(), key, "a local repository path must be absolute");
                None
            }
            scheme @ (gix::url::Scheme::File
            | gix::url::Scheme::Git
            | gix::url::Scheme::Ssh
            | gix::url::Scheme::Http
            | gix::url::Scheme::Https) => Some(scheme.clone()),
            other => {
                self.problem(
                    url.span(),
                    key,
                    format!("unsupported URL scheme {:?}: use ssh, https, http, git, file or a local path", other.as_str()),
                );
                None
            }
        }
    }

    fn git_ref(&mut self, raw: &Spanned<RawGitRef>, key: &str) -> Option<GitRef> {
        let RawGitRef {
            branch,
            tag,
            semver,
            commit,
        } = raw.get_ref();
        let given = [
            branch.is_some(),
            tag.is_some(),
            semver.is_some(),
            commit.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            self.problem(
                raw.span(),
                key,
                "give exactly one of branch, tag, semver or commit",
            );
            return None;
        }
        if let Some(branch) = branch {
            return self
                .ref_name(branch, &format!("{key}.branch"))
                .map(GitRef::Branch);
        }
        if let Some(tag) = tag {
            return self.ref_name(tag, &format!("{key}.tag")).map(GitRef::Tag);
        }
        if let Some(range) = semver {
            return match semver::VersionReq::parse(range.get_ref()) {
                Ok(req) => Some(GitRef::Semver(req)),
                Err(err) => {
                    self.problem(
                        range.span(),
                        &format!("{key}.semver"),
                        format!("bad semver range: {err}"),
                    );
                    None
                }
            };
        }
        let commit = commit.as_ref()?;
        let hex = commit.get_ref();
        if hex.len() == 40 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            Some(GitRef::Commit(hex.to_ascii_lowercase()))
        } else {
            self.problem(
                commit.span(),
                &format!("{key}.commit"),
                "a commit must be the full 40-hex id",
            );
            None
        }
    }

    fn ref_name(&mut self, name: &Spanned<String>, key: &str) -> Option<String> {
        let value = name.get_ref();
        let valid = !value.is_empty()
            && !value.starts_with('-')
            && !value.starts_with("refs/")
            && gix::validate::reference::name_partial(gix::bstr::BStr::new(value.as_str())).is_ok();
        if valid {
            Some(value.clone())
        } else {
            self.problem(
                name.span(),
                key,
                format!("{value:?} is not a valid short branch or tag name"),
            );
            None
        }
    }

    fn git_auth(
        &mut self,
        key: &str,
        raw: &RawGitSource,
        scheme: Option<gix::url::Scheme>,
        table_span: Range<usize>,
    ) -> Option<GitAuth> {
        let before = self.problems.len();
        let file = |this: &mut Self, value: &Option<Spanned<String>>, field: &str| {
            value
                .as_ref()
                .and_then(|v| this.absolute_path(v, &format!("{key}.{field}"), true))
        };
        let auth = GitAuth {
            ssh_key_file: file(self, &raw.ssh_key_file, "ssh_key_file"),
            known_hosts_file: file(self, &raw.known_hosts_file, "known_hosts_file"),
            username: raw.username.as_ref().map(|u| u.get_ref().clone()),
            password_file: file(self, &raw.password_file, "password_file"),
            bearer_token_file: file(self, &raw.bearer_token_file, "bearer_token_file"),
            ca_file: file(self, &raw.ca_file, "ca_file"),
        };
        let ssh_keys = [
            (&raw.ssh_key_file, "ssh_key_file"),
            (&raw.known_hosts_file, "known_hosts_file"),
        ];
        let http_keys = [
            (&raw.username, "username"),
            (&raw.password_file, "password_file"),
            (&raw.bearer_token_file, "bearer_token_file"),
            (&raw.ca_file, "ca_file"),
        ];
        let not_for = |this: &mut Self, keys: &[(&Option<Spanned<String>>, &str)], what: &str| {
            for (value, field) in keys {
                if let Some(value) = value {
                    this.problem(
                        value.span(),
                        &format!("{key}.{field}"),
                        format!("{field} is not used with {what} URLs"),
                    );
                }
            }
        };
        match scheme {
            Some(gix::url::Scheme::Ssh) => {
                not_for(self, &http_keys, "ssh");
                for (value, field) in ssh_keys {
                    if value.is_none() {
                        self.problem(
                            table_span.clone(),
                            key,
                            format!("an ssh URL needs {field} (kedge checks host keys strictly)"),
                        );
                    }
                }
            }
            Some(gix::url::Scheme::Http | gix::url::Scheme::Https) => {
                not_for(self, &ssh_keys, "http(s)");
                let https = scheme == Some(gix::url::Scheme::Https);
                self.http_auth(key, raw, https);
                if !https {
                    self.no_clear_text_credentials(key, raw);
                }
            }
            Some(_) => {
                not_for(self, &ssh_keys, "file and git://");
                not_for(self, &http_keys, "file and git://");
            }
            None => {}
        }
        (self.problems.len() == before).then_some(auth)
    }

    /// Every credential of a plain http:// URL would cross the network
    /// unencrypted: refused.
    fn no_clear_text_credentials(&mut self, key: &str, raw: &RawGitSource) {
        self.not_over_plain_http(
            key,
            &[
                (&raw.password_file, "password_file"),
                (&raw.bearer_token_file, "bearer_token_file"),
            ],
        );
    }

    /// Refuses each of `fields` of table `key` that is given: over plain
    /// HTTP a secret would cross the network readable, and a CA or client
    /// certificate would do nothing.
    pub(super) fn not_over_plain_http(
        &mut self,
        key: &str,
        fields: &[(&Option<Spanned<String>>, &str)],
    ) {
        for (value, field) in fields {
            if let Some(value) = value {
                self.problem(
                    value.span(),
                    &format!("{key}.{field}"),
                    format!("{field} is not used over plain HTTP (it would travel in clear text): use https"),
                );
            }
        }
    }

    /// Two keys of table `key` given together or not at all: one given
    /// alone is named, with the key it needs.
    pub(super) fn together(
        &mut self,
        key: &str,
        (a_name, a): (&str, &Option<Spanned<String>>),
        (b_name, b): (&str, &Option<Spanned<String>>),
    ) {
        let (given, given_name, missing_name) = match (a, b) {
            (Some(given), None) => (given, a_name, b_name),
            (None, Some(given)) => (given, b_name, a_name),
            _ => return,
        };
        self.problem(
            given.span(),
            &format!("{key}.{given_name}"),
            format!("{given_name} needs {missing_name}"),
        );
    }

    fn http_auth(&mut self, key: &str, raw: &RawGitSource, https: bool) {
        self.together(
            key,
            ("username", &raw.username),
            ("password_file", &raw.password_file),
        );
        if let (Some(token), Some(_)) = (&raw.bearer_token_file, &raw.username) {
            self.problem(
                token.span(),
                &format!("{key}.bearer_token_file"),
                "give either bearer_token_file or username + password_file, not both",
            );
        }
        if let (Some(ca), false) = (&raw.ca_file, https) {
            self.problem(
                ca.span(),
                &format!("{key}.ca_file"),
                "ca_file is only used with https URLs",
            );
        }
    }
}

/// `path` without `.` components and trailing `/`, when it is relative and
/// stays inside its root.
fn relative_path(path: &str) -> Option<String> {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    let inside = !path.starts_with('/') && !parts.is_empty() && !parts.contains(&"..");
    inside.then(|| parts.join("/"))
}
