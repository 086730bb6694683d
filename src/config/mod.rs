//! The TOML configuration: schema, defaults, validation with file:line:col
//! errors, and the diff between two configs for a reload.
//!
//! # Design
//! Two stages. [`raw`] is serde over the file as written, keeping the span
//! of every value. [`validate`](validate::validate) turns it into a
//! [`Config`]: durations resolved, URLs parsed, key files checked,
//! kustomization sources and `depends_on` cycles checked. Every problem of a
//! file is reported at once, each as `file:line:col: key: message`.

/// [`SourceSettings`] for a kind's table: `name`, `interval` and `suspend`
/// are fields of every one; its URL and timeout are where the kind keeps them.
macro_rules! source_settings {
    ($kind:ty, url: $($url:ident).+, timeout: $($timeout:ident).+) => {
        impl SourceSettings for $kind {
            fn name(&self) -> &str {
                &self.name
            }
            fn url(&self) -> &str {
                &self.$($url).+
            }
            fn interval(&self) -> Duration {
                self.interval
            }
            fn timeout(&self) -> Duration {
                self.$($timeout).+
            }
            fn suspend(&self) -> bool {
                self.suspend
            }
            fn set_suspend(&mut self, suspend: bool) {
                self.suspend = suspend;
            }
        }
    };
}

mod diff;
mod drift;
mod error;
pub mod forge;
mod helm;
pub mod layers;
mod overlay;
mod postbuild;
pub mod raw;
mod validate;
mod validate_bucket;
mod validate_helm;
mod validate_kustomization;
mod validate_observe;
mod validate_oci;
mod validate_postbuild;
mod validate_release;
mod validate_verify;
pub mod version_range;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diff::{diff, Changes, ConfigDiff};
pub use drift::{DriftIgnoreRule, DriftMode, DriftPolicy, ObjectSelector};
pub use error::{Error, Problem, Problems};
pub use helm::{
    ChartOrigin, CrdPolicy, Dependency, HelmChart, HelmEndpoint, HelmRelease, HelmRepository,
    InstallPolicy, PostRenderer, ReleaseDriftMode, RemediationStrategy, UpgradePolicy, ValuesFrom,
    ValuesObjectKind,
};
pub use overlay::{Image, Overlay, Patch};
pub use postbuild::{Decryption, PostBuild, SubstituteFrom, VarsKind};
pub use validate_oci::FLUX_CONTENT_MEDIA_TYPE;
pub use validate_postbuild::is_variable_name;
pub use validate_release::merge_values;

/// Where the daemon reads its config unless told otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kedge/kedge.toml";
/// Where the daemon keeps its state unless `[agent] state_dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kedge";
/// Where the daemon listens for the CLI unless `[agent] socket` says otherwise
/// (`RuntimeDirectory=kedge` in the unit).
pub const DEFAULT_SOCKET_PATH: &str = "/run/kedge/kedge.sock";
/// Where the `kedge-helm` Debian package installs the Helm helper.
pub const DEFAULT_HELM_HELPER: &str = "/usr/lib/kedge/kedge-helm";
/// Where bundle signing keys are trusted from unless `[agent] trusted_keys_dir` says otherwise.
pub const DEFAULT_TRUSTED_KEYS_DIR: &str = "/etc/kedge/trusted-keys";
/// The `url` of a source fed by signed bundles only: it never touches the network.
pub const BUNDLE_URL: &str = "bundle:";

/// A validated config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub agent: Agent,
    /// Every source, of every kind, by `kind/name`.
    pub sources: BTreeMap<SourceRef, Source>,
    pub kustomizations: BTreeMap<String, Kustomization>,
    /// Webhook receivers by name (`[receiver.NAME]`).
    pub receivers: BTreeMap<String, Receiver>,
    /// Where outcomes are sent, by name (`[alert.NAME]`).
    pub alerts: BTreeMap<String, Alert>,
    pub helm_releases: BTreeMap<String, HelmRelease>,
    /// Where the tables not declared in the local file were, by
    /// `kind/name` (`kustomization/apps`): `git/fleet@<revision>:<path>`.
    pub declared_in: BTreeMap<String, String>,
}

/// The `[agent]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub state_dir: PathBuf,
    /// `None`: in-cluster, else `$KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// The control socket the CLI talks to.
    pub socket: PathBuf,
    /// How long the config file must stay unchanged before the objects of
    /// a kustomization removed from it are deleted (a file caught
    /// half-written must not delete anything).
    pub removal_grace_period: Duration,
    /// `kedge-helm`, which runs Helm actions for `[helm_release]`s.
    pub helm_helper: PathBuf,
    /// Where `/metrics` is served (`None`: not at all).
    pub metrics: Option<SocketAddr>,
    /// A directory watched for signed bundles (`None`: only `kedge bundle import`).
    pub bundle_dir: Option<PathBuf>,
    /// The SSH public keys a bundle must be signed with, one file or more.
    pub trusted_keys_dir: PathBuf,
    /// Where the rest of the config comes from, besides this file.
    pub config_from: Option<ConfigFrom>,
}

/// `[agent] config_from`: a file, or a directory of `*.toml` fragments,
/// in a source's artifact, laid over the local file (see [`layers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFrom {
    pub source: SourceRef,
    /// Relative to the artifact's root, without `.` or `..` components.
    pub path: String,
}

/// One `[receiver.NAME]` table: an HTTP endpoint where a forge's push
/// event makes the named sources fetch at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    pub name: String,
    pub listen: SocketAddr,
    pub kind: ReceiverKind,
    /// Holds the shared secret: a token for `gitlab` and `generic`, the
    /// HMAC key for `github` and `generic-hmac`. Read at each request.
    pub secret_file: PathBuf,
    pub resources: Vec<SourceRef>,
}

/// How a receiver authenticates a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverKind {
    /// `X-Hub-Signature-256: sha256=<HMAC-SHA256 of the body>`; push and ping events.
    Github,
    /// `X-Gitlab-Token: <secret>`; push and tag push events.
    Gitlab,
    /// `X-Signature: sha256=<HMAC-SHA256 of the body>`.
    GenericHmac,
    /// `Authorization: Bearer <secret>`.
    Generic,
}

impl ReceiverKind {
    pub const ALL: &'static [ReceiverKind] = &[
        ReceiverKind::Github,
        ReceiverKind::Gitlab,
        ReceiverKind::GenericHmac,
        ReceiverKind::Generic,
    ];

    /// The kind as written in `type = "…"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Github => "github",
            ReceiverKind::Gitlab => "gitlab",
            ReceiverKind::GenericHmac => "generic-hmac",
            ReceiverKind::Generic => "generic",
        }
    }
}

/// One `[alert.NAME]` table: which outcomes go where (Flux's Alert and
/// Provider in one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub name: String,
    pub provider: AlertProvider,
    /// The webhook URL (Slack, Teams, …), the Matrix homeserver, the
    /// Alertmanager alerts endpoint; `None` only for Telegram's own API.
    pub address: Option<AlertAddress>,
    /// The HMAC key (generic-hmac), access token (matrix), bot token
    /// (telegram) or API token (github, gitlab, gitea); a bearer token
    /// otherwise, if given.
    pub token_file: Option<PathBuf>,
    /// A CA (PEM) the provider's certificate may chain to, besides the
    /// system's: a self-hosted forge or webhook.
    pub ca_file: Option<PathBuf>,
    /// A Slack or Discord channel, a Matrix room id, a Telegram chat id.
    pub channel: Option<String>,
    pub username: Option<String>,
    /// `Error`: only failures; `Info`: every change.
    pub severity: crate::state::Severity,
    /// `kind/name` patterns; `*` as the name matches every object of a kind.
    pub events: Vec<String>,
    /// Regular expressions: a message matching one is not sent.
    pub exclude: Vec<String>,
    pub summary: Option<String>,
}

/// Where an alert's address comes from: URLs with a token in them belong
/// in a file, plain ones may be written inline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAddress {
    Inline(String),
    File(PathBuf),
}

/// The services an alert can post to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertProvider {
    Generic,
    GenericHmac,
    Slack,
    Msteams,
    Discord,
    Googlechat,
    Matrix,
    Telegram,
    Alertmanager,
    /// Commit status providers: the address is the repository's URL.
    Github,
    Gitlab,
    Gitea,
}

impl AlertProvider {
    pub const ALL: &'static [AlertProvider] = &[
        AlertProvider::Generic,
        AlertProvider::GenericHmac,
        AlertProvider::Slack,
        AlertProvider::Msteams,
        AlertProvider::Discord,
        AlertProvider::Googlechat,
        AlertProvider::Matrix,
        AlertProvider::Telegram,
        AlertProvider::Alertmanager,
        AlertProvider::Github,
        AlertProvider::Gitlab,
        AlertProvider::Gitea,
    ];

    /// The provider as written in `provider = "…"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertProvider::Generic => "generic",
            AlertProvider::GenericHmac => "generic-hmac",
            AlertProvider::Slack => "slack",
            AlertProvider::Msteams => "msteams",
            AlertProvider::Discord => "discord",
            AlertProvider::Googlechat => "googlechat",
            AlertProvider::Matrix => "matrix",
            AlertProvider::Telegram => "telegram",
            AlertProvider::Alertmanager => "alertmanager",
            AlertProvider::Github => "github",
            AlertProvider::Gitlab => "gitlab",
            AlertProvider::Gitea => "gitea",
        }
    }

    /// Whether it posts commit statuses to a forge rather than messages.
    pub fn is_forge(self) -> bool {
        matches!(
            self,
            AlertProvider::Github | AlertProvider::Gitlab | AlertProvider::Gitea
        )
    }
}

/// The largest config file kedge reads.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// The most sources one config may declare.
pub const MAX_SOURCES: usize = 1_000;
/// The most kustomizations one config may declare.
pub const MAX_KUSTOMIZATIONS: usize = 5_000;
/// The most Helm releases one config may declare.
pub const MAX_HELM_RELEASES: usize = 1_000;
/// The default of `[agent] removal_grace_period`.
pub const DEFAULT_REMOVAL_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// One `[git.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitSource {
    pub name: String,
    /// The URL as written in the config (never holds a password: validation
    /// rejects userinfo passwords).
    pub url: String,
    pub reference: GitRef,
    pub interval: Duration,
    pub timeout: Duration,
    pub auth: GitAuth,
    /// Extra gitignore-style patterns, on top of Flux's defaults and the
    /// repository's `.sourceignore` files.
    pub ignore: Vec<String>,
    pub suspend: bool,
    /// Signature verification (`verify = { … }`): `None` accepts any commit.
    pub verify: Option<GitVerify>,
}

/// `verify = { … }` of a Git source: which objects must carry a valid
/// signature, and the keys trusted to make it. At least one key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitVerify {
    pub mode: VerifyMode,
    /// ssh-keygen's ALLOWED SIGNERS format, as `gpg.ssh.allowedSignersFile`.
    pub ssh_allowed_signers_file: Option<PathBuf>,
    /// OpenPGP public keys, armored or binary (`gpg --export [--armor]`).
    pub gpg_keyring_file: Option<PathBuf>,
}

/// Flux's `verify.mode`: what must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyMode {
    /// The commit the source resolves to.
    Head,
    /// The annotated tag the source follows (`ref.tag` or `ref.semver`).
    Tag,
    /// Both the tag and the commit it points to.
    TagAndHead,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Head => "HEAD",
            VerifyMode::Tag => "Tag",
            VerifyMode::TagAndHead => "TagAndHEAD",
        }
    }

    pub fn verifies_commit(self) -> bool {
        matches!(self, VerifyMode::Head | VerifyMode::TagAndHead)
    }

    pub fn verifies_tag(self) -> bool {
        matches!(self, VerifyMode::Tag | VerifyMode::TagAndHead)
    }
}

/// Which commit of the repository a source follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GitRef {
    Branch(String),
    Tag(String),
    /// The highest tag that parses as semver (an optional leading `v`) and
    /// matches the range.
    Semver(semver::VersionReq),
    /// A full 40-hex commit id.
    Commit(String),
}

impl GitRef {
    /// The default when `ref` is not given, like Flux: branch `master`
    /// would surprise today, so kedge follows `main`.
    pub fn default_branch() -> Self {
        GitRef::Branch("main".to_string())
    }
}

/// How kedge authenticates to a remote. Secrets stay in their files and are
/// read at fetch time only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GitAuth {
    pub ssh_key_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub bearer_token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

/// One `[bucket.NAME]` table: the objects of a bucket (under a prefix) as
/// an artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketSource {
    pub name: String,
    pub provider: BucketProvider,
    /// `https://host[:port]` (`http://` only with `insecure`); `None`: the
    /// provider's own service.
    pub endpoint: Option<String>,
    pub bucket_name: String,
    /// Only keys under this "directory" (`a/b` and `a/b/` alike); empty:
    /// the whole bucket.
    pub prefix: String,
    pub region: Option<String>,
    /// Holds the access key id (generic, aws).
    pub access_key_id_file: Option<PathBuf>,
    /// Holds the secret access key (generic, aws), the service account key
    /// JSON (gcp) or the storage account key (azure).
    pub secret_access_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Extra gitignore-style patterns, on top of Flux's defaults and the
    /// bucket's root `.sourceignore`.
    pub ignore: Vec<String>,
    /// The most objects (after the prefix, before ignore rules) one sync accepts.
    pub max_objects: u64,
    /// The largest sum of object sizes one artifact may hold.
    pub max_total_bytes: u64,
    pub suspend: bool,
    /// Where it fetches from, for logs and `kedge status` (no secret).
    pub url: String,
}

/// Which object storage API a bucket source speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketProvider {
    /// Any S3-compatible API (MinIO, SeaweedFS, Ceph, …), path-style requests.
    Generic,
    Aws,
    Gcp,
    Azure,
}

/// One `[oci.NAME]` table: an artifact in an OCI registry, in Flux's
/// format (`flux push artifact`, `kedge push artifact`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciSource {
    pub name: String,
    /// `oci://HOST[:PORT]/REPOSITORY`, as written (never holds a credential).
    pub url: String,
    pub reference: OciRef,
    pub interval: Duration,
    pub timeout: Duration,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// Plain HTTP to the registry.
    pub insecure: bool,
    pub layer_selector: LayerSelector,
    /// The cosign public key (PEM) every artifact must be signed with.
    pub cosign_public_key_file: Option<PathBuf>,
    pub suspend: bool,
}

/// Which manifest of the repository a source follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciRef {
    Tag(String),
    /// The highest tag in the range (Masterminds/Flux semver ranges).
    Semver(version_range::VersionRange),
    /// `sha256:<64 hex>`: one manifest, never another.
    Digest(String),
}

/// Which layer of the manifest becomes the artifact, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSelector {
    pub media_type: String,
    pub operation: LayerOperation,
}

/// What is done with the selected layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerOperation {
    /// The layer is a `tar.gz` whose files become the artifact's files.
    Extract,
    /// The layer is one file of the artifact, as it is.
    Copy,
}

/// A reference to a source, written `kind/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceRef {
    pub kind: SourceKind,
    pub name: String,
}

/// The kinds of source kedge knows. Each has one `[KIND.NAME]` table in
/// the config and one file under `src/source/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    Git,
    /// A Helm repository: its artifact is its index, less the charts nobody uses.
    Helm,
    /// A Helm chart: its artifact is the packaged chart (`.tgz`).
    Chart,
    Bucket,
    /// An artifact in an OCI registry.
    Oci,
}

impl SourceKind {
    /// Every kind, in the order `kedge status` lists them.
    pub const ALL: &'static [SourceKind] = &[
        SourceKind::Git,
        SourceKind::Bucket,
        SourceKind::Oci,
        SourceKind::Helm,
        SourceKind::Chart,
    ];

    /// The kind as written in `kind/name` and in the state.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::Helm => "helm",
            SourceKind::Chart => "chart",
            SourceKind::Bucket => "bucket",
            SourceKind::Oci => "oci",
        }
    }

    /// The TOML table that declares sources of this kind.
    pub fn table(self) -> &'static str {
        match self {
            SourceKind::Git => "git",
            SourceKind::Helm => "helm_repository",
            SourceKind::Chart => "helm_chart",
            SourceKind::Bucket => "bucket",
            SourceKind::Oci => "oci",
        }
    }

    /// The kind of Flux's object that plays this part (alerts name it).
    pub fn flux_kind(self) -> &'static str {
        match self {
            SourceKind::Git => "GitRepository",
            SourceKind::Helm => "HelmRepository",
            SourceKind::Chart => "HelmChart",
            SourceKind::Bucket => "Bucket",
            SourceKind::Oci => "OCIRepository",
        }
    }

    /// Flux's condition reason when a fetch of this kind fails.
    pub fn fetch_failed_reason(self) -> &'static str {
        match self {
            SourceKind::Git => "GitOperationFailed",
            SourceKind::Helm => "IndexationFailed",
            SourceKind::Chart => "ChartPullFailed",
            SourceKind::Bucket => "BucketOperationFailed",
            SourceKind::Oci => "OCIArtifactPullFailed",
        }
    }

    /// Whether its artifact is a tree of files a kustomization (or a chart
    /// `path`) can build from.
    pub fn holds_files(self) -> bool {
        match self {
            SourceKind::Git => true,
            SourceKind::Bucket | SourceKind::Oci => true,
            SourceKind::Helm | SourceKind::Chart => false,
        }
    }

    pub fn parse(kind: &str) -> Option<SourceKind> {
        Self::ALL.iter().copied().find(|k| k.as_str() == kind)
    }
}

impl SourceRef {
    pub fn new(kind: SourceKind, name: &str) -> SourceRef {
        SourceRef {
            kind,
            name: name.to_string(),
        }
    }

    /// `kind/name`, `None` when the kind is unknown or there is no `/`.
    pub fn parse(written: &str) -> Option<SourceRef> {
        let (kind, name) = written.split_once('/')?;
        SourceRef::from_parts(kind, name)
    }

    /// The source of a kind and name as the state stores them; `None` for
    /// a kind this kedge does not know.
    pub fn from_parts(kind: &str, name: &str) -> Option<SourceRef> {
        Some(SourceRef::new(SourceKind::parse(kind)?, name))
    }
}

/// One configured source, of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Git(GitSource),
    Helm(HelmRepository),
    Chart(HelmChart),
    Bucket(BucketSource),
    Oci(OciSource),
}

/// What every kind of source has: the scheduler needs nothing else.
pub trait SourceSettings {
    fn name(&self) -> &str;
    /// Where it fetches from, as written (never holds a secret).
    fn url(&self) -> &str;
    fn interval(&self) -> Duration;
    fn timeout(&self) -> Duration;
    fn suspend(&self) -> bool;
    fn set_suspend(&mut self, suspend: bool);
}

impl Source {
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Git(_) => SourceKind::Git,
            Source::Helm(_) => SourceKind::Helm,
            Source::Chart(_) => SourceKind::Chart,
            Source::Bucket(_) => SourceKind::Bucket,
            Source::Oci(_) => SourceKind::Oci,
        }
    }

    pub fn settings(&self) -> &dyn SourceSettings {
        match self {
            Source::Git(git) => git,
            Source::Helm(helm) => helm,
            Source::Chart(chart) => chart,
            Source::Bucket(bucket) => bucket,
            Source::Oci(oci) => oci,
        }
    }

    pub fn settings_mut(&mut self) -> &mut dyn SourceSettings {
        match self {
            Source::Git(git) => git,
            Source::Helm(helm) => helm,
            Source::Chart(chart) => chart,
            Source::Bucket(bucket) => bucket,
            Source::Oci(oci) => oci,
        }
    }

    /// The source whose artifact this one is built from: it syncs again
    /// whenever that one has a new artifact.
    pub fn upstream(&self) -> Option<SourceRef> {
        match self {
            Source::Chart(chart) => chart.upstream(),
            Source::Git(_) | Source::Helm(_) | Source::Bucket(_) | Source::Oci(_) => None,
        }
    }

    /// `kind/name`: how the CLI, `kedge status` and the journal's `SOURCE=`
    /// field name this source.
    pub fn source_ref(&self) -> SourceRef {
        SourceRef::new(self.kind(), self.settings().name())
    }

    pub fn name(&self) -> &str {
        self.settings().name()
    }

    pub fn interval(&self) -> Duration {
        self.settings().interval()
    }

    pub fn timeout(&self) -> Duration {
        self.settings().timeout()
    }

    pub fn suspend(&self) -> bool {
        self.settings().suspend()
    }

    /// Whether only bundles feed it (`url = "bundle:"`, or a chart of such
    /// a repository): its sync never touches the network.
    pub fn is_bundle_only(&self) -> bool {
        match self {
            Source::Chart(chart) => match &chart.origin {
                ChartOrigin::Repository { endpoint, .. } => endpoint.url == BUNDLE_URL,
                ChartOrigin::Source { .. } | ChartOrigin::File { .. } => false,
            },
            other => other.settings().url() == BUNDLE_URL,
        }
    }
}

source_settings!(GitSource, url: url, timeout: timeout);

source_settings!(BucketSource, url: url, timeout: timeout);

source_settings!(OciSource, url: url, timeout: timeout);

impl GitSource {
    pub fn source_ref(&self) -> SourceRef {
        SourceRef::new(SourceKind::Git, &self.name)
    }
}

impl std::fmt::Display for SourceRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// One `[kustomization.NAME]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kustomization {
    pub name: String,
    pub source: SourceRef,
    /// Relative to the artifact root, normalised: no `.` or `..` parts; empty
    /// for the root itself.
    pub path: PathBuf,
    pub interval: Duration,
    pub retry_interval: Duration,
    pub timeout: Duration,
    pub prune: bool,
    pub wait: bool,
    pub health_checks: Vec<HealthCheck>,
    pub depends_on: Vec<String>,
    pub target_namespace: Option<String>,
    pub suspend: bool,
    pub force: bool,
    pub deletion_policy: DeletionPolicy,
    /// What is done about drift, and which fields are left to others.
    pub drift: DriftPolicy,
    /// Flux's fields that change the build.
    pub overlay: Overlay,
    /// Substitution and decryption between the build and the apply.
    pub post_build: PostBuild,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub api_version: Option<String>,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// What happens to a kustomization's objects when it leaves the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionPolicy {
    Delete,
    Orphan,
}

impl Config {
    /// The source `source` names, if configured.
    pub fn source(&self, source: &SourceRef) -> Option<&Source> {
        self.sources.get(source)
    }

    /// The Git source `name`, if configured.
    pub fn git(&self, name: &str) -> Option<&GitSource> {
        match self.sources.get(&SourceRef::new(SourceKind::Git, name)) {
            Some(Source::Git(git)) => Some(git),
            _ => None,
        }
    }

    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] if the file cannot be read, [`Error::Invalid`] with
    /// every problem found otherwise.
    pub fn load(path: &Path) -> Result<Config, Error> {
        Config::parse(path, &read_bounded(path)?)
    }

    /// Validates `text` as the content of the config file at `path` (used
    /// in messages and to resolve nothing else: relative paths are errors).
    pub fn parse(path: &Path, text: &str) -> Result<Config, Error> {
        validate::parse_and_validate(text).map_err(|problems| {
            Error::Invalid(Problems {
                file: path.to_path_buf(),
                problems,
            })
        })
    }

    /// A digest of the config file's content, to tell whether it changed.
    pub fn file_digest(path: &Path) -> Result<String, Error> {
        use sha2::{Digest, Sha256};
        let text = read_bounded(path)?;
        Ok(hex(&Sha256::digest(text.as_bytes())))
    }

    /// Path of the SQLite database inside the state directory.
    pub fn database_path(&self) -> PathBuf {
        self.agent.state_dir.join("kedge.db")
    }
}

/// The file at `path` as text, refused past [`MAX_CONFIG_BYTES`].
pub fn read_bounded(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let read_error = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_CONFIG_BYTES,
        });
    }
    String::from_utf8(bytes).map_err(|err| {
        Error::Invalid(Problems {
            file: path.to_path_buf(),
            problems: vec![validate::not_utf8(err.as_bytes(), err.utf8_error())],
        })
    })
}

/// `bytes` as lowercase hex (digests in names, revisions and messages).
/// Here, below every module that prints a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
