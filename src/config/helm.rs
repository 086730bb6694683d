//! The Helm source kinds: `[helm_repository.NAME]` (kind `helm`) and
//! `[helm_chart.NAME]` (kind `chart`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use super::version_range::VersionRange;
use super::{SourceKind, SourceRef, SourceSettings};

/// How kedge reaches a Helm repository: everything a chart download
/// needs besides the chart's own URL. Secrets stay in their files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmEndpoint {
    /// `http(s)://…` (an `index.yaml` below it) or `oci://…`, as written;
    /// never holds a credential.
    pub url: String,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Plain HTTP to an OCI registry.
    pub insecure: bool,
    /// Send the credentials to chart URLs on other hosts too.
    pub pass_credentials: bool,
    pub timeout: Duration,
}

impl HelmEndpoint {
    pub fn is_oci(&self) -> bool {
        self.url.starts_with("oci://")
    }
}

/// One `[helm_repository.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRepository {
    pub name: String,
    pub endpoint: HelmEndpoint,
    pub interval: Duration,
    /// The charts some `[helm_chart]` takes from this repository: only
    /// their entries of the index are kept.
    pub charts: BTreeSet<String>,
    pub suspend: bool,
}

/// One `[helm_chart.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmChart {
    pub name: String,
    pub origin: ChartOrigin,
    /// What `kedge status` shows as its URL, e.g. `helm/bitnami redis@>=18 <19`.
    pub location: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub suspend: bool,
}

/// Where a chart comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartOrigin {
    /// The highest version in `version` of chart `chart` of a repository,
    /// or, in an OCI registry, the one manifest `digest` names.
    Repository {
        repository: String,
        endpoint: Box<HelmEndpoint>,
        chart: String,
        version: VersionRange,
        /// `sha256:<64 hex>`, OCI only.
        digest: Option<String>,
    },
    /// The chart directory at `path` in another source's artifact.
    Source { source: SourceRef, path: PathBuf },
    /// A packaged chart on this node.
    File { path: PathBuf },
}

impl HelmChart {
    /// The source whose artifact this chart is made from, if any.
    pub fn upstream(&self) -> Option<SourceRef> {
        match &self.origin {
            ChartOrigin::Repository { repository, .. } => {
                Some(SourceRef::new(SourceKind::Helm, repository))
            }
            ChartOrigin::Source { source, .. } => Some(source.clone()),
            ChartOrigin::File { .. } => None,
        }
    }
}

source_settings!(HelmRepository, url: endpoint.url, timeout: endpoint.timeout);

source_settings!(HelmChart, url: location, timeout: timeout);

/// One `[helm_release.NAME]` table, referred to as `helm_release/NAME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmRelease {
    pub name: String,
    /// The `[helm_chart]` it installs: declared, or made from the release's
    /// own `chart = { … }` under the release's name.
    pub chart: SourceRef,
    /// The chart's name, as Helm records it (empty when only the package
    /// knows it: a chart from a source directory or a file).
    pub chart_name: String,
    pub target_namespace: String,
    pub release_name: String,
    pub storage_namespace: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub max_history: u32,
    pub depends_on: Vec<Dependency>,
    /// `values_from` entries, in order; then `values_yaml`, then `values`.
    pub values_from: Vec<ValuesFrom>,
    /// `values_yaml` merged with `values` (which wins), as JSON.
    pub values: serde_json::Map<String, serde_json::Value>,
    /// Files inside the chart merged under every other value, in order.
    pub values_files: Vec<PathBuf>,
    pub install: InstallPolicy,
    pub upgrade: UpgradePolicy,
    pub test: bool,
    pub drift: ReleaseDriftMode,
    /// `drift_detection.ignore`: fields left to others, as a kustomization's
    /// `drift.ignore`.
    pub drift_ignore: Vec<super::DriftIgnoreRule>,
    /// Run in order over the rendered manifest (hooks included) before Helm
    /// applies it.
    pub post_renderers: Vec<PostRenderer>,
    /// Wait with kstatus until the release's objects are ready.
    pub wait: bool,
    pub suspend: bool,
    pub deletion_policy: super::DeletionPolicy,
}

impl HelmRelease {
    /// The kind in events, status and the CLI: `helm_release/NAME`.
    pub const KIND: &'static str = "helm_release";
}

/// `drift_detection.mode`: what kedge does when a release's objects are
/// changed in the cluster (Flux's default: disabled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseDriftMode {
    /// Re-apply the release's objects as Helm stored them.
    Enabled,
    /// Report only (status, event, journal).
    Warn,
    #[default]
    Disabled,
}

/// One `post_renderers` entry: kedge's own kustomize over the rendered
/// manifest, patches and images as a kustomization's (Flux's `kustomize`
/// post-renderer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostRenderer {
    pub patches: Vec<super::Patch>,
    pub images: Vec<super::Image>,
}

/// What a release waits for: a kustomization or another release.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    Kustomization(String),
    HelmRelease(String),
}

impl std::fmt::Display for Dependency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dependency::Kustomization(name) => write!(f, "kustomization/{name}"),
            Dependency::HelmRelease(name) => write!(f, "{}/{name}", HelmRelease::KIND),
        }
    }
}

/// One `values_from` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValuesFrom {
    /// A YAML file on the node.
    File { path: PathBuf },
    /// A key of a ConfigMap or Secret in the cluster.
    Object {
        kind: ValuesObjectKind,
        name: String,
        namespace: String,
        values_key: String,
        optional: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValuesObjectKind {
    ConfigMap,
    Secret,
}

/// Flux's `crds` policies for a chart's `crds/` directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrdPolicy {
    Skip,
    Create,
    CreateReplace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemediationStrategy {
    Rollback,
    Uninstall,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallPolicy {
    pub crds: CrdPolicy,
    pub create_namespace: bool,
    pub retries: u32,
    pub remediate_last_failure: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpgradePolicy {
    pub crds: CrdPolicy,
    pub cleanup_on_fail: bool,
    pub force: bool,
    pub retries: u32,
    pub strategy: RemediationStrategy,
    pub remediate_last_failure: bool,
}
