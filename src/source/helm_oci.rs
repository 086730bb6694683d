//! Helm repositories in OCI registries (`oci://HOST/PATH`), through the
//! `oci-client` crate over rustls: chart `NAME` is the OCI repository
//! `PATH/NAME`, its versions are its tags (Helm writes a version's `+` as
//! `_` in tags), a version is an image manifest whose config has Helm's
//! media type and whose one chart layer is the `.tgz`.
//!
//! # Design
//! A repository sync lists the tags of the kept charts into the same kept
//! index an HTTP repository has (URLs `oci://…:TAG`, no digest); a chart
//! sync resolves the picked tag to its manifest digest (one request, so a
//! re-pushed tag is seen), and pulls the layer only when that digest
//! differs from the one its artifact was built from. The registry's token
//! dance (a 401 naming a realm, then a bearer token) is oci-client's.
//!
//! [`Registry`] is kedge's one registry client: the `oci` kind
//! ([`super::oci`]) and `kedge push artifact` reach registries through it
//! too, with their own [`Connection`].

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use oci_client::client::{
    Certificate, CertificateEncoding, ClientConfig, ClientProtocol, Config, ImageLayer,
};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::helm_index::{ChartVersion, Index};
use super::store::hex;
use super::{read_secret_file, Error, Result};
use crate::config::version_range::parse_version;
use crate::config::{HelmEndpoint, SourceKind};

/// The config media type of a Helm chart in a registry.
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// The media type of its one layer, the chart package.
pub const HELM_CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// How to reach a registry: what every kind that uses one configures.
pub struct Connection<'a> {
    /// `oci://HOST[:PORT]/PATH`.
    pub url: &'a str,
    pub auth: RegistryAuth,
    pub ca_file: Option<&'a Path>,
    /// Plain HTTP.
    pub insecure: bool,
    pub timeout: Duration,
}

/// One registry of one source (or of `kedge push artifact`): the one
/// client of every registry request kedge makes.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    /// `HOST[:PORT]`.
    host: String,
    /// The repository path under the host, without slashes at either end.
    path: String,
    url: String,
    kind: SourceKind,
    source_name: String,
}

/// A chart pulled from a registry.
pub struct Pulled {
    pub package: Vec<u8>,
    /// sha256 of `package`, lowercase hex.
    pub digest: String,
}

impl Registry {
    /// The registry of a Helm repository.
    pub fn new(endpoint: &HelmEndpoint, kind: SourceKind, source_name: &str) -> Result<Registry> {
        let auth = registry_auth(
            kind,
            source_name,
            endpoint.username.as_deref(),
            endpoint.password_file.as_deref(),
            endpoint.bearer_token_file.as_deref(),
        )?;
        let connection = Connection {
            url: &endpoint.url,
            auth,
            ca_file: endpoint.ca_file.as_deref(),
            insecure: endpoint.insecure,
            timeout: endpoint.timeout,
        };
        Registry::connect(connection, kind, source_name)
    }

    /// A client for `connection`, naming source `kind/source_name` in errors.
    pub fn connect(
        connection: Connection<'_>,
        kind: SourceKind,
        source_name: &str,
    ) -> Result<Registry> {
        super::install_tls_provider();
        let fail = |message: String| Error::Registry {
            kind,
            source_name: source_name.to_string(),
            url: connection.url.to_string(),
            message,
        };
        let rest = connection
            .url
            .strip_prefix("oci://")
            .ok_or_else(|| fail("not an oci:// URL".to_string()))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut extra_root_certificates = Vec::new();
        if let Some(ca) = connection.ca_file {
            let data = super::read_credential_file(kind, source_name, ca)?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if connection.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates,
            read_timeout: Some(connection.timeout),
            connect_timeout: Some(connection.timeout),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|err| fail(format!("setting up the client: {err}")))?;
        Ok(Registry {
            client,
            auth: connection.auth,
            host: host.to_string(),
            path: path.trim_matches('/').to_string(),
            url: connection.url.to_string(),
            kind,
            source_name: source_name.to_string(),
        })
    }

    /// The repository `name` below the URL's path (`""`: the path itself).
    pub fn repository(&self, name: &str) -> String {
        match (self.path.is_empty(), name.is_empty()) {
            (true, _) => name.to_string(),
            (false, true) => self.path.clone(),
            (false, false) => format!("{}/{name}", self.path),
        }
    }

    /// Tag `tag` of `repository`.
    pub fn tagged(&self, repository: &str, tag: &str) -> Reference {
        Reference::with_tag(self.host.clone(), repository.to_string(), tag.to_string())
    }

    /// The manifest `digest` of `repository`.
    pub fn at_digest(&self, repository: &str, digest: &str) -> Reference {
        Reference::with_digest(
            self.host.clone(),
            repository.to_string(),
            digest.to_string(),
        )
    }

    pub fn error(&self, what: &str, err: impl std::fmt::Display) -> Error {
        Error::Registry {
            kind: self.kind,
            source_name: self.source_name.clone(),
            url: self.url.clone(),
            message: format!("{what}: {err}"),
        }
    }

    /// Every tag of `repository`.
    pub fn tags(&self, repository: &str) -> Result<Vec<String>> {
        let reference = self.tagged(repository, "latest");
        let what = format!("listing the tags of {repository}");
        let listed = self.run(
            &what,
            self.client.list_tags(&reference, &self.auth, None, None),
        )?;
        Ok(listed.tags)
    }

    /// The digest of the manifest `reference` names: one HEAD request.
    pub fn digest_of(&self, reference: &Reference) -> Result<String> {
        self.run(
            &format!("resolving {reference}"),
            self.client.fetch_manifest_digest(reference, &self.auth),
        )
    }

    /// The image manifest `reference` names, `None` when the registry has
    /// no such manifest.
    pub fn image_manifest(&self, reference: &Reference) -> Result<Option<OciImageManifest>> {
        let what = format!("pulling the manifest of {reference}");
        match block_on(self.client.pull_manifest(reference, &self.auth)) {
            Ok(Ok((OciManifest::Image(manifest), _))) => Ok(Some(manifest)),
            Ok(Ok((OciManifest::ImageIndex(_), _))) => {
                Err(self.error(&what, "an image index, not an image manifest"))
            }
            Ok(Err(err)) if is_not_found(&err) => Ok(None),
            Ok(Err(err)) => Err(self.error(&what, err)),
            Err(err) => Err(self.error(&what, err)),
        }
    }

    /// The blob `layer` of `reference`, refused over `max_bytes` or when
    /// its bytes are not the digest the manifest names.
    pub fn blob(
        &self,
        reference: &Reference,
        layer: &OciDescriptor,
        max_bytes: u64,
    ) -> Result<Vec<u8>> {
        let what = format!("pulling blob {} of {reference}", layer.digest);
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
            return Err(self.error(
                &what,
                format!("{} bytes, over the {max_bytes}-byte limit", layer.size),
            ));
        }
        let mut content = Vec::new();
        self.run(&what, self.client.pull_blob(reference, layer, &mut content))?;
        let digest = format!("sha256:{}", hex(&Sha256::digest(&content)));
        if layer.digest != digest || u64::try_from(layer.size).ok() != Some(content.len() as u64) {
            return Err(self.error(
                &what,
                format!(
                    "the registry sent {} bytes of {digest}: refused",
                    content.len()
                ),
            ));
        }
        Ok(content)
    }

    /// Pushes `layers`, `config` and `manifest` as `reference`.
    pub fn push(
        &self,
        reference: &Reference,
        layers: &[ImageLayer],
        config: Config,
        manifest: OciImageManifest,
    ) -> Result<()> {
        self.run(
            &format!("pushing {reference}"),
            self.client
                .push(reference, layers, config, &self.auth, Some(manifest)),
        )
        .map(drop)
    }

    /// The kept index: every semver tag of each of `charts`.
    pub fn index(&self, charts: &BTreeSet<String>) -> Result<Index> {
        let mut index = Index {
            api_version: "v1".to_string(),
            ..Index::default()
        };
        for chart in charts {
            let versions = self
                .tags(&self.repository(chart))?
                .into_iter()
                .filter_map(|tag| {
                    let version = tag.replace('_', "+");
                    parse_version(&version)?;
                    Some(ChartVersion {
                        name: chart.clone(),
                        urls: vec![self.url_of(chart, &format!(":{tag}"))],
                        version,
                        ..ChartVersion::default()
                    })
                })
                .collect();
            index.entries.insert(chart.clone(), versions);
        }
        Ok(index)
    }

    /// `oci://HOST/PATH/CHART` followed by `suffix` (`:TAG` or `@DIGEST`).
    pub fn url_of(&self, chart: &str, suffix: &str) -> String {
        format!("oci://{}/{}{suffix}", self.host, self.repository(chart))
    }

    /// The digest of the manifest `url` (`oci://HOST/REPO:TAG`) names.
    pub fn manifest_digest(&self, url: &str) -> Result<String> {
        self.digest_of(&self.reference(url)?)
    }

    /// Pulls the chart `url` names, refusing a manifest that is not a Helm
    /// chart or a layer over `max_bytes`.
    pub fn pull(&self, url: &str, max_bytes: u64) -> Result<Pulled> {
        let reference = self.reference(url)?;
        let manifest = self
            .image_manifest(&reference)?
            .ok_or_else(|| self.error(url, "no such manifest"))?;
        if manifest.config.media_type != HELM_CONFIG_MEDIA_TYPE {
            return Err(self.error(
                url,
                format!(
                    "config media type {:?}, not a Helm chart",
                    manifest.config.media_type
                ),
            ));
        }
        let layer = manifest
            .layers
            .iter()
            .find(|layer| layer.media_type == HELM_CHART_MEDIA_TYPE)
            .ok_or_else(|| self.error(url, "no chart layer"))?;
        let package = self.blob(&reference, layer, max_bytes)?;
        let digest = hex(&Sha256::digest(&package));
        Ok(Pulled { package, digest })
    }

    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        future: impl Future<Output = std::result::Result<T, E>>,
    ) -> Result<T> {
        match block_on(future) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(self.error(what, err)),
            Err(err) => Err(self.error(what, err)),
        }
    }

    fn reference(&self, url: &str) -> Result<Reference> {
        url.strip_prefix("oci://")
            .unwrap_or(url)
            .parse()
            .map_err(|err| self.error(&format!("bad reference {url}"), err))
    }
}

/// Whether the registry answered that the manifest does not exist.
fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NotFound
            )
        }),
        OciDistributionError::ServerError { code, .. } => *code == 404,
        _ => false,
    }
}

/// Basic or bearer credentials read from their files now, else anonymous.
pub fn registry_auth(
    kind: SourceKind,
    source_name: &str,
    username: Option<&str>,
    password_file: Option<&Path>,
    bearer_token_file: Option<&Path>,
) -> Result<RegistryAuth> {
    if let Some(file) = bearer_token_file {
        return Ok(RegistryAuth::Bearer(read_secret_file(
            kind,
            source_name,
            file,
        )?));
    }
    if let (Some(user), Some(file)) = (username, password_file) {
        let password = read_secret_file(kind, source_name, file)?;
        return Ok(RegistryAuth::Basic(user.to_string(), password));
    }
    Ok(RegistryAuth::Anonymous)
}

/// Runs `future` to completion from blocking code (a sync runs on the
/// blocking pool): on the runtime that pool belongs to, or on a small one
/// of its own outside any runtime.
fn block_on<F: Future>(future: F) -> std::io::Result<F::Output> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => Ok(handle.block_on(future)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|runtime| runtime.block_on(future)),
    }
}
