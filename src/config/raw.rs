//! The config file as written: serde types as close to the TOML as
//! possible, every value keeping its span for file:line:col errors. Nothing
//! here is validated beyond TOML types and unknown keys.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub agent: Option<Spanned<RawAgent>>,
    #[serde(default)]
    pub git: BTreeMap<Spanned<String>, Spanned<RawGitSource>>,
    #[serde(default)]
    pub bucket: BTreeMap<Spanned<String>, Spanned<RawBucketSource>>,
    #[serde(default)]
    pub oci: BTreeMap<Spanned<String>, Spanned<RawOciSource>>,
    #[serde(default)]
    pub kustomization: BTreeMap<Spanned<String>, Spanned<RawKustomization>>,
    #[serde(default)]
    pub helm_repository: BTreeMap<Spanned<String>, Spanned<RawHelmRepository>>,
    #[serde(default)]
    pub helm_chart: BTreeMap<Spanned<String>, Spanned<RawHelmChart>>,
    #[serde(default)]
    pub helm_release: BTreeMap<Spanned<String>, Spanned<RawHelmRelease>>,
    #[serde(default)]
    pub receiver: BTreeMap<Spanned<String>, Spanned<RawReceiver>>,
    #[serde(default)]
    pub alert: BTreeMap<Spanned<String>, Spanned<RawAlert>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub state_dir: Option<Spanned<String>>,
    pub kubeconfig: Option<Spanned<String>>,
    pub socket: Option<Spanned<String>>,
    pub removal_grace_period: Option<Spanned<String>>,
    pub helm_helper: Option<Spanned<String>>,
    pub metrics: Option<Spanned<String>>,
    pub metrics_allow_remote: Option<Spanned<bool>>,
    pub bundle_dir: Option<Spanned<String>>,
    pub trusted_keys_dir: Option<Spanned<String>>,
    pub config_from: Option<Spanned<RawConfigFrom>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfigFrom {
    pub source: Spanned<String>,
    pub path: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGitSource {
    pub url: Spanned<String>,
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<RawGitRef>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub ssh_key_file: Option<Spanned<String>>,
    pub known_hosts_file: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub ignore: Option<Spanned<Vec<String>>>,
    pub suspend: Option<Spanned<bool>>,
    pub verify: Option<Spanned<RawGitVerify>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGitVerify {
    pub mode: Option<Spanned<String>>,
    pub ssh_allowed_signers_file: Option<Spanned<String>>,
    pub gpg_keyring_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucketSource {
    pub provider: Option<Spanned<String>>,
    pub endpoint: Option<Spanned<String>>,
    pub bucket_name: Spanned<String>,
    pub prefix: Option<Spanned<String>>,
    pub region: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub access_key_id_file: Option<Spanned<String>>,
    pub secret_access_key_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub ignore: Option<Spanned<Vec<String>>>,
    pub max_objects: Option<Spanned<i64>>,
    pub max_total_bytes: Option<Spanned<i64>>,
    pub suspend: Option<Spanned<bool>>,
}

/// One `[oci.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOciSource {
    pub url: Spanned<String>,
    #[serde(rename = "ref")]
    pub reference: Option<Spanned<RawOciRef>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub layer_selector: Option<Spanned<RawLayerSelector>>,
    pub verify: Option<Spanned<RawOciVerify>>,
    pub suspend: Option<Spanned<bool>>,
}

/// `ref = { tag | semver | digest }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOciRef {
    pub tag: Option<Spanned<String>>,
    pub semver: Option<Spanned<String>>,
    pub digest: Option<Spanned<String>>,
}

/// `layer_selector = { media_type, operation }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLayerSelector {
    pub media_type: Option<Spanned<String>>,
    pub operation: Option<Spanned<String>>,
}

/// `verify = { cosign_public_key_file }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOciVerify {
    pub cosign_public_key_file: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGitRef {
    pub branch: Option<Spanned<String>>,
    pub tag: Option<Spanned<String>>,
    pub semver: Option<Spanned<String>>,
    pub commit: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawKustomization {
    pub source: Spanned<String>,
    pub path: Option<Spanned<String>>,
    pub interval: Spanned<String>,
    pub retry_interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub prune: Spanned<bool>,
    pub wait: Option<Spanned<bool>>,
    pub health_checks: Option<Vec<Spanned<RawHealthCheck>>>,
    pub depends_on: Option<Vec<Spanned<String>>>,
    pub target_namespace: Option<Spanned<String>>,
    pub suspend: Option<Spanned<bool>>,
    pub force: Option<Spanned<bool>>,
    pub deletion_policy: Option<Spanned<String>>,
    // Drift: modes and ignore rules.
    pub drift: Option<Spanned<RawDrift>>,
    // Flux's fields applied on top of the build (see `overlay.rs`).
    pub name_prefix: Option<Spanned<String>>,
    pub name_suffix: Option<Spanned<String>>,
    pub patches: Option<Vec<Spanned<RawPatch>>>,
    pub images: Option<Vec<Spanned<RawImage>>>,
    pub components: Option<Vec<Spanned<String>>>,
    pub common_metadata: Option<Spanned<RawCommonMetadata>>,
    pub substitute: Option<Spanned<BTreeMap<String, String>>>,
    pub substitute_from: Option<Vec<Spanned<RawSubstituteFrom>>>,
    pub strict: Option<Spanned<bool>>,
    pub decryption: Option<Spanned<RawDecryption>>,
}

/// `drift = { mode, ignore = [...] }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrift {
    pub mode: Option<Spanned<String>>,
    pub ignore: Option<Vec<Spanned<RawDriftIgnore>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriftIgnore {
    pub paths: Vec<String>,
    pub target: Option<RawObjectSelector>,
}

/// A target: Flux's (kustomize's) selector fields in snake_case.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObjectSelector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub annotation_selector: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPatch {
    pub patch: String,
    pub target: Option<RawObjectSelector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawImage {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCommonMetadata {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// One `substitute_from` entry: `{ kind, name, namespace, optional }` or
/// `{ file, optional }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubstituteFrom {
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
    pub optional: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDecryption {
    pub provider: Spanned<String>,
    pub age_key_file: Option<Spanned<String>>,
    pub pgp_keyring_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealthCheck {
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelmRepository {
    pub url: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub insecure: Option<Spanned<bool>>,
    pub pass_credentials: Option<Spanned<bool>>,
    pub suspend: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelmChart {
    pub chart: Spanned<RawChartRef>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub suspend: Option<Spanned<bool>>,
}

/// Where a chart comes from: `{ repository, name, version }`, `{ source,
/// path }` or `{ file }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChartRef {
    pub repository: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub version: Option<Spanned<String>>,
    pub digest: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub file: Option<Spanned<String>>,
}

/// One `[helm_release.NAME]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHelmRelease {
    pub chart: Option<Spanned<RawChartRef>>,
    /// The name of a `[helm_chart]` (instead of `chart`).
    pub chart_ref: Option<Spanned<String>>,
    pub target_namespace: Option<Spanned<String>>,
    pub release_name: Option<Spanned<String>>,
    pub storage_namespace: Option<Spanned<String>>,
    pub interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_history: Option<Spanned<i64>>,
    pub depends_on: Option<Spanned<Vec<String>>>,
    pub values: Option<Spanned<toml::Table>>,
    pub values_yaml: Option<Spanned<String>>,
    pub values_files: Option<Spanned<Vec<String>>>,
    pub values_from: Option<Spanned<Vec<RawValuesFrom>>>,
    pub install: Option<Spanned<RawInstall>>,
    pub upgrade: Option<Spanned<RawUpgrade>>,
    pub test: Option<Spanned<RawTest>>,
    pub drift_detection: Option<Spanned<RawDriftDetection>>,
    pub post_renderers: Option<Vec<Spanned<RawPostRenderer>>>,
    pub wait: Option<Spanned<bool>>,
    pub suspend: Option<Spanned<bool>>,
    pub deletion_policy: Option<Spanned<String>>,
}

/// `values_from = [{ file }, { kind, name, namespace, values_key, optional }]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawValuesFrom {
    pub file: Option<Spanned<String>>,
    pub kind: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
    pub values_key: Option<Spanned<String>>,
    pub optional: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInstall {
    pub crds: Option<Spanned<String>>,
    pub create_namespace: Option<Spanned<bool>>,
    pub remediation: Option<Spanned<RawRemediation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpgrade {
    pub crds: Option<Spanned<String>>,
    pub cleanup_on_fail: Option<Spanned<bool>>,
    pub force: Option<Spanned<bool>>,
    pub remediation: Option<Spanned<RawRemediation>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemediation {
    pub retries: Option<Spanned<i64>>,
    pub strategy: Option<Spanned<String>>,
    pub remediate_last_failure: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTest {
    pub enable: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDriftDetection {
    pub mode: Option<Spanned<String>>,
    pub ignore: Option<Vec<Spanned<RawDriftIgnore>>>,
}

/// One `post_renderers` entry: Flux's only kind, `kustomize`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostRenderer {
    pub kustomize: Option<Spanned<RawPostRendererKustomize>>,
}

/// `kustomize = { patches = [...], images = [...] }`, as a kustomization's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostRendererKustomize {
    pub patches: Option<Vec<Spanned<RawPatch>>>,
    pub images: Option<Vec<Spanned<RawImage>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    pub listen: Spanned<String>,
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub secret_file: Option<Spanned<String>>,
    pub resources: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    pub provider: Spanned<String>,
    pub address: Option<Spanned<String>>,
    pub address_file: Option<Spanned<String>>,
    pub token_file: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub channel: Option<Spanned<String>>,
    pub username: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    pub events: Vec<Spanned<String>>,
    pub exclude: Option<Vec<Spanned<String>>>,
    pub summary: Option<Spanned<String>>,
}
