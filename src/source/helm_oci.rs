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

use std::collections::BTreeSet;
use std::future::Future;
use std::path::Path;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::manifest::OciManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use super::helm::read_secret;
use super::helm_index::{ChartVersion, Index};
use super::store::hex;
use super::{Error, Result};
use crate::config::version_range::parse_version;
use crate::config::{HelmEndpoint, SourceKind};

/// The config media type of a Helm chart in a registry.
pub const HELM_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
/// The media type of its one layer, the chart package.
pub const HELM_CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";

/// One registry of one source.
pub struct Registry<'e> {
    client: Client,
    auth: RegistryAuth,
    /// `HOST[:PORT]`.
    host: String,
    /// The repository path under the host, without slashes at either end.
    path: String,
    endpoint: &'e HelmEndpoint,
    kind: SourceKind,
    source_name: String,
}

/// A chart pulled from a registry.
pub struct Pulled {
    pub package: Vec<u8>,
    /// sha256 of `package`, lowercase hex.
    pub digest: String,
}

impl<'e> Registry<'e> {
    pub fn new(
        endpoint: &'e HelmEndpoint,
        kind: SourceKind,
        source_name: &str,
    ) -> Result<Registry<'e>> {
        super::install_tls_provider();
        let fail = |message: String| Error::Helm {
            kind,
            source_name: source_name.to_string(),
            url: endpoint.url.clone(),
            message,
        };
        let rest = endpoint
            .url
            .strip_prefix("oci://")
            .ok_or_else(|| fail("not an oci:// URL".to_string()))?;
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut extra_root_certificates = Vec::new();
        if let Some(ca) = &endpoint.ca_file {
            let data = super::read_credential_file(SourceKind::Helm, source_name, ca)?;
            extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let config = ClientConfig {
            protocol: if endpoint.insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            extra_root_certificates,
            read_timeout: Some(endpoint.timeout),
            connect_timeout: Some(endpoint.timeout),
            ..ClientConfig::default()
        };
        let client = Client::try_from(config)
            .map_err(|err| fail(format!("setting up the client: {err}")))?;
        Ok(Registry {
            client,
            auth: registry_auth(endpoint, source_name)?,
            host: host.to_string(),
            path: path.trim_matches('/').to_string(),
            endpoint,
            kind,
            source_name: source_name.to_string(),
        })
    }

    fn repository(&self, chart: &str) -> String {
        if self.path.is_empty() {
            chart.to_string()
        } else {
            format!("{}/{chart}", self.path)
        }
    }

    fn error(&self, what: &str, err: impl std::fmt::Display) -> Error {
        Error::Helm {
            kind: self.kind,
            source_name: self.source_name.clone(),
            url: self.endpoint.url.clone(),
            message: format!("{what}: {err}"),
        }
    }

    /// The kept index: every semver tag of each of `charts`.
    pub fn index(&self, charts: &BTreeSet<String>) -> Result<Index> {
        let mut index = Index {
            api_version: "v1".to_string(),
            ..Index::default()
        };
        for chart in charts {
            let repository = self.repository(chart);
            let reference =
                Reference::with_tag(self.host.clone(), repository.clone(), "latest".to_string());
            let what = format!("listing the tags of {repository}");
            let tags = self.run(
                &what,
                self.client.list_tags(&reference, &self.auth, None, None),
            )?;
            let versions = tags
                .tags
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
        let reference = self.reference(url)?;
        self.run(
            &format!("resolving {url}"),
            self.client.fetch_manifest_digest(&reference, &self.auth),
        )
    }

    /// Pulls the chart `url` names, refusing a manifest that is not a Helm
    /// chart or a layer over `max_bytes`.
    pub fn pull(&self, url: &str, max_bytes: u64) -> Result<Pulled> {
        let reference = self.reference(url)?;
        let (manifest, _) = self.run(
            &format!("pulling the manifest of {url}"),
            self.client.pull_manifest(&reference, &self.auth),
        )?;
        let OciManifest::Image(manifest) = manifest else {
            return Err(self.error(url, "an image index, not a Helm chart"));
        };
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
        if u64::try_from(layer.size).unwrap_or(u64::MAX) > max_bytes {
            return Err(self.error(
                url,
                format!(
                    "the chart is {} bytes, over the {max_bytes}-byte limit",
                    layer.size
                ),
            ));
        }
        let mut package = Vec::new();
        self.run(
            &format!("pulling the chart of {url}"),
            self.client.pull_blob(&reference, layer, &mut package),
        )?;
        let digest = hex(&Sha256::digest(&package));
        if layer.digest != format!("sha256:{digest}") {
            return Err(self.error(
                url,
                format!(
                    "the chart has sha256 {digest}, the manifest says {}: refused",
                    layer.digest
                ),
            ));
        }
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

fn registry_auth(endpoint: &HelmEndpoint, source_name: &str) -> Result<RegistryAuth> {
    let secret = |path: &Path| read_secret(path, source_name);
    if let Some(file) = &endpoint.bearer_token_file {
        return Ok(RegistryAuth::Bearer(secret(file)?));
    }
    if let (Some(user), Some(file)) = (&endpoint.username, &endpoint.password_file) {
        return Ok(RegistryAuth::Basic(user.clone(), secret(file)?));
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
