//! Helm repositories over HTTP(S) (kind `helm`): the `index.yaml`, fetched
//! only when it changed (`If-None-Match` / `If-Modified-Since`) and kept
//! only for the charts some `[helm_chart]` takes from it.
//!
//! # Design
//! The artifact is a `tar.gz` holding one `index.yaml` with the kept
//! entries ([`helm_index::Index`]); its revision is `sha256:<artifact
//! digest>`, so it changes only when a kept entry does. The validators of
//! the response it was built from (ETag, Last-Modified) and the set of
//! kept charts are its recorded inputs: a conditional request is sent only
//! while the artifact is intact and the same charts are wanted.
//!
//! [`HelmClient`] is the one HTTP client of both Helm kinds: private CA,
//! client certificate, basic or bearer credentials read from their files
//! for each request and sent only to the repository's host unless
//! `pass_credentials` is set. Nothing secret is logged or stored.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::blocking::{Client, RequestBuilder};
use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::archive::{self, MemoryFile};
use super::helm_index::{self, Index, IndexError};
use super::helm_oci::Registry;
use super::store::{self, hex, ArtifactStore};
use super::sync::recorded_artifact;
use super::{Artifact, Error, Result, SyncOutcome};
use crate::config::{HelmEndpoint, HelmRepository, SourceKind};
use crate::state::SourceStatus;

/// The largest `index.yaml` read (Flux's default limit is 50 MiB).
pub const MAX_INDEX_BYTES: u64 = 128 << 20;
/// The file inside a repository's artifact.
pub const INDEX_FILE: &str = "index.yaml";

/// What a repository artifact was built from besides the index content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Inputs {
    /// A fingerprint of the kept chart names.
    charts: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_modified: Option<String>,
}

impl Inputs {
    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn decode(recorded: Option<&str>) -> Option<Inputs> {
        serde_json::from_str(recorded?).ok()
    }
}

fn charts_fingerprint(repository: &HelmRepository) -> String {
    let mut hasher = Sha256::new();
    for chart in &repository.charts {
        hasher.update(chart.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize()[..8])
}

/// The recorded artifact of `previous` if it is still intact.
pub(crate) fn intact_previous(previous: Option<&SourceStatus>) -> Option<Artifact> {
    previous
        .and_then(recorded_artifact)
        .filter(|artifact| store::verify(artifact).is_ok())
}

/// Fetches the index of `repository` and returns its current artifact.
pub fn sync_helm_repository(
    repository: &HelmRepository,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    let charts = charts_fingerprint(repository);
    let intact = intact_previous(previous);
    if repository.endpoint.is_oci() {
        let registry = Registry::new(&repository.endpoint, SourceKind::Helm, &repository.name)?;
        let index = registry.index(&repository.charts)?;
        let inputs = Inputs {
            charts,
            ..Inputs::default()
        };
        return outcome(repository, state_dir, intact, &index, inputs);
    }
    let client = HelmClient::new(&repository.endpoint, SourceKind::Helm, &repository.name)?;
    let index_url = client.join(INDEX_FILE)?;
    let validators = match (
        &intact,
        Inputs::decode(previous.and_then(|p| p.artifact_inputs.as_deref())),
    ) {
        (Some(_), Some(inputs)) if inputs.charts == charts => Some(inputs),
        _ => None,
    };
    let mut request = client.get(&index_url)?;
    if let Some(validators) = &validators {
        if let Some(etag) = &validators.etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(modified) = &validators.last_modified {
            request = request.header(IF_MODIFIED_SINCE, modified);
        }
    }
    let response = client.send(request, &index_url)?;
    if response.status() == StatusCode::NOT_MODIFIED {
        if let (Some(artifact), Some(inputs)) = (intact, validators) {
            return Ok(SyncOutcome::Unchanged {
                artifact,
                inputs: inputs.encode(),
            });
        }
        return Err(client.error(
            &index_url,
            "answered 304 Not Modified to an unconditional request".to_string(),
        ));
    }
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let inputs = Inputs {
        charts,
        etag: header(ETAG),
        last_modified: header(LAST_MODIFIED),
    };
    let index = read_index(&client, &index_url, response, &repository.charts, interrupt)?;
    outcome(repository, state_dir, intact, &index, inputs)
}

/// Stores `index` and returns the outcome against the intact previous artifact.
fn outcome(
    repository: &HelmRepository,
    state_dir: &Path,
    intact: Option<Artifact>,
    index: &Index,
    inputs: Inputs,
) -> Result<SyncOutcome> {
    let stored = store_index(repository, state_dir, index)?;
    match intact {
        // The same kept entries: what changed upstream concerns no chart of ours.
        Some(previous) if previous.digest == stored.digest => Ok(SyncOutcome::Unchanged {
            artifact: previous,
            inputs: inputs.encode(),
        }),
        _ => Ok(SyncOutcome::NewArtifact {
            artifact: stored,
            inputs: inputs.encode(),
        }),
    }
}

fn read_index(
    client: &HelmClient,
    url: &Url,
    response: reqwest::blocking::Response,
    wanted: &std::collections::BTreeSet<String>,
    interrupt: &AtomicBool,
) -> Result<Index> {
    let body = Bounded::new(response, MAX_INDEX_BYTES, interrupt);
    helm_index::parse(body, wanted).map_err(|err| match err {
        IndexError::Read(read) => client.error(url, read.to_string()),
        other => client.error(url, other.to_string()),
    })
}

/// Writes the kept index as the repository's artifact (named by digest,
/// so writing the same one again changes nothing).
fn store_index(repository: &HelmRepository, state_dir: &Path, index: &Index) -> Result<Artifact> {
    let kind = SourceKind::Helm.as_str();
    let content = serde_yaml::to_string(index).map_err(|err| Error::Helm {
        kind: SourceKind::Helm,
        source_name: repository.name.clone(),
        url: super::redact_url(&repository.endpoint.url),
        message: format!("writing the kept index: {err}"),
    })?;
    let files = [MemoryFile {
        path: INDEX_FILE.to_string(),
        mode: 0o644,
        content: content.into_bytes(),
    }];
    // The kept index is a part of one the fetch already bounded.
    let limits = super::Limits {
        max_file_bytes: MAX_INDEX_BYTES,
        max_total_bytes: MAX_INDEX_BYTES,
    };
    let (digest, path) =
        ArtifactStore::new(state_dir).build(kind, &repository.name, limits, |writer| {
            archive::append_memory_files(&files, writer)
        })?;
    Ok(Artifact {
        revision: format!("sha256:{digest}"),
        digest,
        path,
    })
}

/// Reads the kept index back from a repository artifact.
pub fn read_index_artifact(artifact: &Artifact) -> std::result::Result<Index, String> {
    let file = std::fs::File::open(&artifact.path).map_err(|err| err.to_string())?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = tar.entries().map_err(|err| err.to_string())?;
    for entry in entries {
        let entry = entry.map_err(|err| err.to_string())?;
        let is_index = entry
            .path()
            .map(|p| p == Path::new(INDEX_FILE))
            .unwrap_or(false);
        if is_index {
            return serde_yaml::from_reader(entry.take(MAX_INDEX_BYTES))
                .map_err(|err| err.to_string());
        }
    }
    Err(format!("no {INDEX_FILE} in it"))
}

/// A reader that fails past `limit` bytes or once `interrupt` is set.
pub(crate) struct Bounded<'a, R> {
    inner: R,
    read: u64,
    limit: u64,
    interrupt: &'a AtomicBool,
}

impl<'a, R: Read> Bounded<'a, R> {
    pub(crate) fn new(inner: R, limit: u64, interrupt: &'a AtomicBool) -> Self {
        Bounded {
            inner,
            read: 0,
            limit,
            interrupt,
        }
    }
}

impl<R: Read> Read for Bounded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.interrupt.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("interrupted"));
        }
        let read = self.inner.read(buf)?;
        self.read += read as u64;
        if self.read > self.limit {
            return Err(std::io::Error::other(format!(
                "larger than the {}-byte limit",
                self.limit
            )));
        }
        Ok(read)
    }
}

/// The HTTP client of one Helm repository.
pub(crate) struct HelmClient<'e> {
    client: Client,
    endpoint: &'e HelmEndpoint,
    /// The repository URL with a trailing `/`: relative chart URLs and
    /// `index.yaml` resolve against it.
    base: Url,
    kind: SourceKind,
    source_name: String,
}

impl<'e> HelmClient<'e> {
    pub(crate) fn new(
        endpoint: &'e HelmEndpoint,
        kind: SourceKind,
        source_name: &str,
    ) -> Result<HelmClient<'e>> {
        super::install_tls_provider();
        let fail = |message: String| Error::Helm {
            kind,
            source_name: source_name.to_string(),
            url: super::redact_url(&endpoint.url),
            message,
        };
        let mut base = Url::parse(&endpoint.url).map_err(|err| fail(format!("bad URL: {err}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let mut builder = Client::builder()
            .timeout(endpoint.timeout)
            .user_agent(concat!("kedge/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &endpoint.ca_file {
            let pem = read_file(ca, source_name)?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|err| fail(format!("ca_file {}: {err}", ca.display())))?;
            builder = builder.add_root_certificate(certificate);
        }
        if let (Some(cert), Some(key)) = (&endpoint.cert_file, &endpoint.key_file) {
            let mut pem = read_file(cert, source_name)?;
            pem.push(b'\n');
            pem.extend(read_file(key, source_name)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|err| {
                fail(format!(
                    "cert_file {} / key_file {}: {err}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let client = builder
            .build()
            .map_err(|err| fail(format!("setting up HTTPS: {err}")))?;
        Ok(HelmClient {
            client,
            endpoint,
            base,
            kind,
            source_name: source_name.to_string(),
        })
    }

    /// `relative` (a chart's URL from the index, or `index.yaml`) resolved
    /// against the repository URL.
    pub(crate) fn join(&self, relative: &str) -> Result<Url> {
        self.base
            .join(relative)
            .map_err(|err| self.error(&self.base, format!("bad URL {relative:?}: {err}")))
    }

    /// A GET of `url`, with the credentials when `url` is on the
    /// repository's host or `pass_credentials` is set.
    pub(crate) fn get(&self, url: &Url) -> Result<RequestBuilder> {
        let request = self.client.get(url.clone());
        let same_host = url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.scheme() == self.base.scheme();
        if !same_host && !self.endpoint.pass_credentials {
            return Ok(request);
        }
        if let Some(file) = &self.endpoint.bearer_token_file {
            let token = read_secret(file, &self.source_name)?;
            return Ok(request.bearer_auth(token));
        }
        if let (Some(user), Some(file)) = (&self.endpoint.username, &self.endpoint.password_file) {
            let password = read_secret(file, &self.source_name)?;
            return Ok(request.basic_auth(user, Some(password)));
        }
        Ok(request)
    }

    /// Sends `request`; any status but 2xx and 304 is an error.
    pub(crate) fn send(
        &self,
        request: RequestBuilder,
        url: &Url,
    ) -> Result<reqwest::blocking::Response> {
        let response = request
            .send()
            .map_err(|err| self.error(url, crate::error_chain::describe(&err)))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                ": check the repository's credentials"
            }
            _ => "",
        };
        Err(self.error(url, format!("HTTP {status}{hint}")))
    }

    pub(crate) fn error(&self, url: &Url, message: String) -> Error {
        Error::Helm {
            kind: self.kind,
            source_name: self.source_name.clone(),
            url: super::redact_url(url.as_str()),
            message,
        }
    }
}

fn read_file(path: &Path, source_name: &str) -> Result<Vec<u8>> {
    super::read_credential_file(SourceKind::Helm, source_name, path)
}

/// The secret in `path`, less a trailing newline.
pub(crate) fn read_secret(path: &Path, source_name: &str) -> Result<String> {
    super::read_secret_file(SourceKind::Helm, source_name, path)
}
