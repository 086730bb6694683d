//! Bucket sources: the objects of an S3, GCS or Azure Blob bucket (under a
//! prefix) as an artifact, like Flux's `Bucket`.
//!
//! # Design
//! One sync is one LIST of the prefix. The listing, less the ignore rules
//! (Flux's defaults, the `.sourceignore` at the prefix root, `ignore`),
//! gives the revision: `sha256:<hex>` of the sorted `key etag` lines, as
//! Flux computes it, so an unchanged bucket costs that one request and
//! builds nothing. Otherwise only the objects whose `(key, ETag)` is not in
//! the source's cache are downloaded. The cache,
//! `state_dir/sources/bucket/NAME/objects/`, holds one file per
//! `(key, ETag)`, named by their sha256: the directory is the per-object
//! ETag index, and a file is there only once it was downloaded whole
//! (written aside, size and ETag checked, then renamed). `artifact.json`
//! beside it lists what the current artifact was built from, so a damaged
//! artifact is rebuilt without the network.
//!
//! # Guarantees
//! - Keys that cannot be a relative path of normal components (`..`, empty
//!   segments), or that are both an object and a directory, refuse the whole
//!   sync; zero-byte "directory marker" objects are skipped.
//! - Object count (`max_objects`), object size and total size are checked on
//!   the listing, before anything is downloaded, and again while reading.
//! - Secrets are read from their files at each sync and handed to the
//!   client only: never logged, stored or put into an error.
//!
//! # Current limitations
//! - A prefix selects a "directory": keys under `prefix/`.
//! - `aws` takes credentials from the files, else the environment and the
//!   instance metadata service (IMDSv2); `~/.aws` profiles are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ignore::{IgnoreRules, SOURCEIGNORE};
use super::store::{hex, ArtifactStore};
use super::sync::{ignore_and_limits_fingerprint, unchanged_artifact};
use super::{io_error, read_secret_file, Artifact, Error, Limits, Restored, Result, SyncOutcome};
use crate::config::{BucketProvider, BucketSource, SourceKind};
use crate::state::SourceStatus;

/// How many objects are downloaded at once.
const PARALLEL_DOWNLOADS: usize = 8;
/// Attempts after a failed request (object_store retries 5xx and
/// connection errors with backoff): few, the next poll is the real retry.
const MAX_RETRIES: usize = 2;
const KIND: &str = "bucket";

/// The cache directory of a bucket source.
pub fn cache_dir(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("sources").join(KIND).join(name)
}

/// One listed object that goes into the artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    /// The full key in the bucket.
    pub key: String,
    /// Its path in the artifact: the key less the prefix.
    pub path: String,
    pub etag: String,
    pub size: u64,
}

impl Object {
    /// The name of its file in the cache: one per `(key, ETag)`.
    fn blob_name(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.key.as_bytes());
        hasher.update([0]);
        hasher.update(self.etag.as_bytes());
        hex(&hasher.finalize())
    }
}

/// What the current artifact was built from, kept for rebuilding it.
#[derive(Debug, Serialize, Deserialize)]
struct BuiltFrom {
    revision: String,
    objects: Vec<Object>,
}

/// `sha256:<hex>` of the sorted `key etag` lines, as Flux computes a
/// Bucket's revision.
pub fn revision(objects: &[Object]) -> String {
    let mut lines: Vec<(&str, &str)> = objects
        .iter()
        .map(|o| (o.key.as_str(), o.etag.as_str()))
        .collect();
    lines.sort_unstable();
    let mut hasher = Sha256::new();
    for (key, etag) in lines {
        hasher.update(format!("{key} {etag}\n").as_bytes());
    }
    format!("sha256:{}", hex(&hasher.finalize()))
}

/// Lists `source` and returns its current artifact, downloading only the
/// objects not cached and building a new artifact only when the revision
/// or the build inputs differ from `previous`.
pub fn sync_bucket_source(
    source: &BucketSource,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    limits: Limits,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    let limits = source_limits(source, limits);
    let client = Client::connect(source)?;
    let runtime = runtime()?;
    let cache = Cache::open(state_dir, &source.name)?;
    let listed = runtime.block_on(interruptible(client.list(), interrupt, &client))?;
    let candidates = candidates(source, listed)?;
    let sourceignore = match candidates.iter().find(|o| o.path == SOURCEIGNORE) {
        Some(object) => {
            runtime.block_on(interruptible(
                client.download_missing(&cache, std::slice::from_ref(object), limits),
                interrupt,
                &client,
            ))?;
            cache.read_to_string(object)?
        }
        None => String::new(),
    };
    let objects = select(source, candidates, &sourceignore, limits)?;
    let revision = revision(&objects);
    let inputs = ignore_and_limits_fingerprint(&source.ignore, limits);
    if let Some(artifact) = previous.and_then(|p| unchanged_artifact(p, &revision, &inputs)) {
        return Ok(SyncOutcome::Unchanged { artifact, inputs });
    }
    runtime.block_on(interruptible(
        client.download_missing(&cache, &objects, limits),
        interrupt,
        &client,
    ))?;
    let artifact = build_artifact(source, state_dir, &cache, revision, objects, limits)?;
    Ok(SyncOutcome::NewArtifact { artifact, inputs })
}

/// Checks the artifact recorded in `previous` and, when it is damaged,
/// rebuilds it from the cached objects, without the network.
pub fn restore_artifact(
    source: &BucketSource,
    state_dir: &Path,
    previous: &SourceStatus,
    limits: Limits,
) -> Result<Option<Restored>> {
    super::sync::restore_with(previous, &source.name, |artifact| {
        rebuild(source, state_dir, previous, artifact, limits)
    })
}

fn rebuild(
    source: &BucketSource,
    state_dir: &Path,
    previous: &SourceStatus,
    artifact: &Artifact,
    limits: Limits,
) -> Result<Artifact> {
    let limits = source_limits(source, limits);
    let cannot = |message: String| Error::ReadTree {
        source_name: source.name.clone(),
        revision: artifact.revision.clone(),
        message,
    };
    let inputs = ignore_and_limits_fingerprint(&source.ignore, limits);
    if previous.artifact_inputs.as_deref() != Some(inputs.as_str()) {
        return Err(cannot(
            "its ignore rules or limits changed since the artifact was built".to_string(),
        ));
    }
    let cache = Cache::open(state_dir, &source.name)?;
    let built = cache.built_from()?;
    if built.as_ref().map(|b| &b.revision) != Some(&artifact.revision) {
        return Err(cannot(
            "the cache no longer holds the objects of that revision".to_string(),
        ));
    }
    let objects = built.map(|b| b.objects).unwrap_or_default();
    build_artifact(
        source,
        state_dir,
        &cache,
        artifact.revision.clone(),
        objects,
        limits,
    )
}

/// The agent's limits, with the source's `max_total_bytes` when lower.
fn source_limits(source: &BucketSource, limits: Limits) -> Limits {
    Limits {
        max_total_bytes: limits.max_total_bytes.min(source.max_total_bytes),
        ..limits
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_error("starting the bucket client", Path::new("")))
}

/// Runs `work` until it ends or `interrupt` is set (timeout, shutdown).
async fn interruptible<T>(
    work: impl Future<Output = Result<T>>,
    interrupt: &AtomicBool,
    client: &Client<'_>,
) -> Result<T> {
    let interrupted = async {
        while !interrupt.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        result = work => result,
        () = interrupted => Err(client.error("reading", "interrupted".to_string())),
    }
}

/// The listed objects that may go into the artifact: keys checked and
/// made relative to the prefix, directory markers dropped, sorted by path.
fn candidates(source: &BucketSource, listed: Vec<Object>) -> Result<Vec<Object>> {
    if listed.len() as u64 > source.max_objects {
        return Err(too_many(source));
    }
    let unsafe_key = |key: &str, why| Error::UnsafeKey {
        source_name: source.name.clone(),
        bucket: source.bucket_name.clone(),
        key: key.to_string(),
        why,
    };
    let mut by_path = BTreeMap::new();
    for object in listed {
        if object.path.is_empty()
            || object
                .path
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
        {
            return Err(unsafe_key(&object.key, "is not a relative path"));
        }
        if by_path.insert(object.path.clone(), object).is_some() {
            return Err(unsafe_key("", "names one path twice"));
        }
    }
    let directories: BTreeSet<String> = by_path
        .keys()
        .flat_map(|path| {
            let parts: Vec<&str> = path.split('/').collect();
            (1..parts.len()).map(move |n| parts[..n].join("/"))
        })
        .collect();
    let mut objects = Vec::with_capacity(by_path.len());
    for (path, object) in by_path {
        if directories.contains(&path) {
            if object.size == 0 {
                continue; // a "folder" created by a console
            }
            return Err(unsafe_key(&object.key, "is both an object and a directory"));
        }
        objects.push(object);
    }
    Ok(objects)
}

fn too_many(source: &BucketSource) -> Error {
    Error::TooManyObjects {
        source_name: source.name.clone(),
        bucket: source.bucket_name.clone(),
        limit: source.max_objects,
    }
}

/// The objects that stay under the ignore rules, refused when one is over
/// the limits (before anything is downloaded).
fn select(
    source: &BucketSource,
    candidates: Vec<Object>,
    sourceignore: &str,
    limits: Limits,
) -> Result<Vec<Object>> {
    let root_ignore = [(PathBuf::new(), sourceignore.to_string())];
    let rules = IgnoreRules::new(&root_ignore, &source.ignore).map_err(|err| Error::Ignore {
        source_name: source.name.clone(),
        source: Box::new(err),
    })?;
    let objects: Vec<Object> = candidates
        .into_iter()
        .filter(|o| !rules.is_ignored(Path::new(&o.path)))
        .collect();
    let mut total: u64 = 0;
    for object in &objects {
        total = total.saturating_add(object.size);
        let limit = if object.size > limits.max_file_bytes {
            limits.max_file_bytes
        } else if total > limits.max_total_bytes {
            limits.max_total_bytes
        } else {
            continue;
        };
        return Err(Error::TooLarge {
            source_name: source.name.clone(),
            path: object.key.clone(),
            size: object.size,
            limit,
        });
    }
    Ok(objects)
}

fn build_artifact(
    source: &BucketSource,
    state_dir: &Path,
    cache: &Cache,
    revision: String,
    objects: Vec<Object>,
    limits: Limits,
) -> Result<Artifact> {
    let store = ArtifactStore::new(state_dir);
    let (digest, path) = store.build(KIND, &source.name, limits, |writer| {
        for object in &objects {
            let blob = cache.blob_path(object);
            let file =
                std::fs::File::open(&blob).map_err(io_error("reading cached object", &blob))?;
            writer.append_file(&object.path, false, object.size, file)?;
        }
        Ok(())
    })?;
    let built = BuiltFrom { revision, objects };
    cache.record_built_from(&built)?;
    cache.keep_only(&built.objects)?;
    Ok(Artifact {
        revision: built.revision,
        digest,
        path,
    })
}

/// The per-source cache of downloaded objects.
struct Cache {
    objects: PathBuf,
    built_from: PathBuf,
}

impl Cache {
    fn open(state_dir: &Path, name: &str) -> Result<Cache> {
        let dir = cache_dir(state_dir, name);
        let objects = dir.join("objects");
        std::fs::create_dir_all(&objects).map_err(io_error("creating cache", &objects))?;
        Ok(Cache {
            objects,
            built_from: dir.join("artifact.json"),
        })
    }

    fn blob_path(&self, object: &Object) -> PathBuf {
        self.objects.join(object.blob_name())
    }

    fn partial_path(&self, object: &Object) -> PathBuf {
        self.blob_path(object).with_extension("partial")
    }

    /// Names complete downloads in the cache, after one flush of the whole
    /// filesystem (one `syncfs`, not an fsync per object): a crash never
    /// leaves a named object with content that did not reach the disk.
    fn commit_partials(&self, objects: &[&Object]) -> Result<()> {
        if objects.is_empty() {
            return Ok(());
        }
        let dir =
            std::fs::File::open(&self.objects).map_err(io_error("opening cache", &self.objects))?;
        rustix::fs::syncfs(&dir)
            .map_err(|err| io_error("flushing cache", &self.objects)(err.into()))?;
        for object in objects {
            let (partial, blob) = (self.partial_path(object), self.blob_path(object));
            std::fs::rename(&partial, &blob).map_err(io_error("caching object", &blob))?;
        }
        Ok(())
    }

    fn discard_partials(&self, objects: &[&Object]) {
        for object in objects {
            let _ = std::fs::remove_file(self.partial_path(object));
        }
    }

    fn has(&self, object: &Object) -> bool {
        std::fs::metadata(self.blob_path(object)).is_ok_and(|m| m.len() == object.size)
    }

    fn read_to_string(&self, object: &Object) -> Result<String> {
        let path = self.blob_path(object);
        let bytes = std::fs::read(&path).map_err(io_error("reading cached object", &path))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn built_from(&self) -> Result<Option<BuiltFrom>> {
        match std::fs::read(&self.built_from) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(io_error("reading", &self.built_from)(err)),
        }
    }

    fn record_built_from(&self, built: &BuiltFrom) -> Result<()> {
        let temp = self.built_from.with_extension("json.partial");
        let json = serde_json::to_vec(built).map_err(|err| {
            io_error("writing", &temp)(std::io::Error::new(std::io::ErrorKind::InvalidData, err))
        })?;
        std::fs::write(&temp, json).map_err(io_error("writing", &temp))?;
        std::fs::rename(&temp, &self.built_from).map_err(io_error("writing", &self.built_from))
    }

    /// Removes cached objects (and stray partial downloads) not in `objects`.
    fn keep_only(&self, objects: &[Object]) -> Result<()> {
        let keep: BTreeSet<String> = objects.iter().map(Object::blob_name).collect();
        let listing =
            std::fs::read_dir(&self.objects).map_err(io_error("listing cache", &self.objects))?;
        for entry in listing {
            let entry = entry.map_err(io_error("listing cache", &self.objects))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io_error("removing cached object", &path))?;
            }
        }
        Ok(())
    }
}

/// An object store client for one source, with the source's names for errors.
struct Client<'a> {
    source: &'a BucketSource,
    store: Arc<dyn ObjectStore>,
}

impl<'a> Client<'a> {
    /// Builds the client; reads the secret files (nothing is sent yet).
    fn connect(source: &'a BucketSource) -> Result<Client<'a>> {
        super::install_tls_provider();
        let secret = |path: &Option<PathBuf>| {
            path.as_deref()
                .map(|path| read_secret_file(SourceKind::Bucket, &source.name, path))
                .transpose()
        };
        let access_key_id = secret(&source.access_key_id_file)?;
        let secret_key = secret(&source.secret_access_key_file)?;
        let options = client_options(source)?;
        let retry = RetryConfig {
            max_retries: MAX_RETRIES,
            retry_timeout: source.timeout,
            ..RetryConfig::default()
        };
        let built: object_store::Result<Arc<dyn ObjectStore>> = match source.provider {
            BucketProvider::Generic | BucketProvider::Aws => {
                use object_store::aws::AmazonS3Builder;
                let mut builder = match source.provider {
                    BucketProvider::Aws => AmazonS3Builder::from_env(),
                    _ => AmazonS3Builder::new().with_virtual_hosted_style_request(false),
                };
                builder = builder
                    .with_bucket_name(&source.bucket_name)
                    .with_region(source.region.as_deref().unwrap_or("us-east-1"))
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(endpoint) = &source.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                match (access_key_id, secret_key) {
                    (Some(id), Some(key)) => {
                        builder = builder.with_access_key_id(id).with_secret_access_key(key)
                    }
                    _ if source.provider == BucketProvider::Generic => {
                        builder = builder.with_skip_signature(true)
                    }
                    _ => {}
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            BucketProvider::Gcp => {
                use object_store::gcp::GoogleCloudStorageBuilder;
                let mut builder = GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(&source.bucket_name)
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(key) = secret_key {
                    builder = builder.with_service_account_key(key);
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
            BucketProvider::Azure => {
                use object_store::azure::MicrosoftAzureBuilder;
                let endpoint = source.endpoint.as_deref().unwrap_or_default();
                let mut builder = MicrosoftAzureBuilder::from_env()
                    .with_url(format!("{endpoint}/{}", source.bucket_name))
                    .with_client_options(options)
                    .with_retry(retry);
                if let Some(key) = secret_key {
                    builder = builder.with_access_key(key);
                }
                builder.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
        };
        let store = built.map_err(|err| bucket_error(source, "connecting to", describe(&err)))?;
        Ok(Client { source, store })
    }

    fn error(&self, action: &'static str, message: String) -> Error {
        bucket_error(self.source, action, message)
    }

    fn prefix(&self) -> Option<ObjectPath> {
        let prefix = self.source.prefix.trim_matches('/');
        (!prefix.is_empty()).then(|| ObjectPath::from_iter(prefix.split('/')))
    }

    /// Every object under the prefix, stopping past `max_objects`.
    async fn list(&self) -> Result<Vec<Object>> {
        let prefix = self.prefix();
        let strip = prefix
            .as_ref()
            .map(|p| format!("{}/", p.as_ref()))
            .unwrap_or_default();
        let mut listing = self.store.list(prefix.as_ref());
        let mut objects = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|err| self.list_error(err))?;
            if objects.len() as u64 >= self.source.max_objects {
                return Err(too_many(self.source));
            }
            let key = meta.location.as_ref().to_string();
            let path = key.strip_prefix(&strip).unwrap_or(&key).to_string();
            let etag = meta
                .e_tag
                .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp()));
            objects.push(Object {
                key,
                path,
                etag,
                size: meta.size,
            });
        }
        Ok(objects)
    }

    fn list_error(&self, err: object_store::Error) -> Error {
        use object_store::path::Error as PathError;
        if let object_store::Error::InvalidPath { source } = &err {
            let key = match source {
                PathError::BadSegment { path, .. } | PathError::EmptySegment { path } => {
                    Some(path.clone())
                }
                _ => None,
            };
            if let Some(key) = key {
                return Error::UnsafeKey {
                    source_name: self.source.name.clone(),
                    bucket: self.source.bucket_name.clone(),
                    key,
                    why: "is not a relative path without '..' or empty segments",
                };
            }
        }
        self.error("listing", describe(&err))
    }

    /// Downloads each of `objects` not in `cache`, a few at a time.
    async fn download_missing(
        &self,
        cache: &Cache,
        objects: &[Object],
        limits: Limits,
    ) -> Result<()> {
        let missing: Vec<&Object> = objects.iter().filter(|o| !cache.has(o)).collect();
        if !missing.is_empty() {
            tracing::debug!(source = %self.source.source_ref(), objects = missing.len(), "downloading changed objects");
        }
        let downloaded: Vec<Result<&Object>> = futures::stream::iter(missing)
            .map(
                |object| async move { self.download(cache, object, limits).await.map(|()| object) },
            )
            .buffer_unordered(PARALLEL_DOWNLOADS)
            .collect()
            .await;
        let (complete, failed): (Vec<_>, Vec<_>) = downloaded.into_iter().partition(Result::is_ok);
        let complete: Vec<&Object> = complete.into_iter().flatten().collect();
        if let Some(Err(err)) = failed.into_iter().next() {
            cache.discard_partials(&complete);
            return Err(err);
        }
        cache.commit_partials(&complete)
    }

    /// Downloads one object aside ([`Cache::partial_path`]), checking its
    /// size and ETag against the listing.
    async fn download(&self, cache: &Cache, object: &Object, limits: Limits) -> Result<()> {
        use std::io::Write;
        let partial = cache.partial_path(object);
        let failed =
            |message: String| self.error("downloading", format!("{}: {message}", object.key));
        let result = self
            .store
            .get(&ObjectPath::from(object.key.as_str()))
            .await
            .map_err(|err| failed(describe(&err)))?;
        if let Some(etag) = &result.meta.e_tag {
            if *etag != object.etag {
                return Err(failed(
                    "it changed since it was listed; the next sync takes the new version"
                        .to_string(),
                ));
            }
        }
        let mut file =
            std::fs::File::create(&partial).map_err(io_error("caching object", &partial))?;
        let mut stream = result.into_stream();
        let mut written: u64 = 0;
        let outcome = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|err| failed(describe(&err)))?;
                written = written.saturating_add(chunk.len() as u64);
                if written > object.size || written > limits.max_file_bytes {
                    return Err(failed(format!(
                        "the server sent more than the listed {} bytes",
                        object.size
                    )));
                }
                file.write_all(&chunk)
                    .map_err(io_error("caching object", &partial))?;
            }
            if written != object.size {
                return Err(failed(format!(
                    "got {written} of the listed {} bytes",
                    object.size
                )));
            }
            Ok(())
        }
        .await;
        if outcome.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        outcome
    }
}

fn bucket_error(source: &BucketSource, action: &'static str, message: String) -> Error {
    Error::Bucket {
        source_name: source.name.clone(),
        action,
        bucket: source.bucket_name.clone(),
        url: source.url.clone(),
        message,
    }
}

fn client_options(source: &BucketSource) -> Result<ClientOptions> {
    let mut options = ClientOptions::new()
        .with_allow_http(
            source
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
        )
        .with_timeout(source.timeout)
        .with_connect_timeout(source.timeout.min(Duration::from_secs(10)));
    if let Some(ca_file) = &source.ca_file {
        let pem = super::read_credential_file(SourceKind::Bucket, &source.name, ca_file)?;
        let certificate = object_store::Certificate::from_pem(&pem).map_err(|err| {
            let unusable = super::credential_error(SourceKind::Bucket, &source.name, ca_file);
            unusable(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                err.to_string(),
            ))
        })?;
        options = options.with_root_certificate(certificate);
    }
    Ok(options)
}

/// An object store error in words: the S3 error code and message rather
/// than the whole response body, with a hint for the usual causes.
fn describe(err: &object_store::Error) -> String {
    let full = crate::error_chain::describe(err);
    let code = xml_element(&full, "Code");
    let denied = matches!(
        err,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || full.contains("403 Forbidden")
        || full.contains("401 Unauthorized");
    let answer = match (code, xml_element(&full, "Message")) {
        (Some(code), Some(message)) => format!("{code}: {message}"),
        (Some(code), None) => code.to_string(),
        _ => full.chars().take(400).collect(),
    };
    if denied {
        format!("access denied ({answer}); check access_key_id_file and secret_access_key_file")
    } else {
        answer
    }
}

/// The text of the first `<name>…</name>` in `text`.
fn xml_element<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let length = text[start..].find(&format!("</{name}>"))?;
    Some(&text[start..start + length])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(key: &str, etag: &str, size: u64) -> Object {
        Object {
            key: key.to_string(),
            path: key.to_string(),
            etag: etag.to_string(),
            size,
        }
    }

    fn source() -> BucketSource {
        let text = "[bucket.b]\nendpoint = \"s3.local\"\nbucket_name = \"fleet\"\n";
        match crate::config::Config::parse(Path::new("kedge.toml"), text) {
            Ok(config) => match config.sources.into_values().next() {
                Some(crate::config::Source::Bucket(bucket)) => bucket,
                other => panic!("a bucket source: {other:?}"),
            },
            Err(err) => panic!("valid config: {err}"),
        }
    }

    #[test]
    fn the_revision_is_flux_s_digest_of_sorted_key_etag_lines_whatever_the_order() {
        let a = object("a.yaml", "\"1\"", 1);
        let b = object("b.yaml", "\"2\"", 1);
        let expected = format!(
            "sha256:{}",
            hex(&Sha256::digest(b"a.yaml \"1\"\nb.yaml \"2\"\n"))
        );
        assert_eq!(revision(&[b.clone(), a.clone()]), expected);
        assert_eq!(revision(&[a, b]), expected);
    }

    #[test]
    fn directory_markers_are_skipped_and_an_object_that_is_also_a_directory_is_refused() {
        let listed = vec![
            object("apps/", "\"m\"", 0),
            object("apps/a.yaml", "\"1\"", 3),
        ];
        let listed: Vec<Object> = listed
            .into_iter()
            .map(|mut o| {
                o.path = o.path.trim_end_matches('/').to_string();
                o
            })
            .collect();
        let kept = candidates(&source(), listed).map_err(|e| e.to_string());
        assert_eq!(
            kept.map(|k| k.into_iter().map(|o| o.path).collect::<Vec<_>>()),
            Ok(vec!["apps/a.yaml".to_string()])
        );
        let conflict = vec![
            object("apps", "\"x\"", 5),
            object("apps/a.yaml", "\"1\"", 3),
        ];
        let err = candidates(&source(), conflict)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(
            err.as_ref()
                .is_err_and(|m| m.contains("both an object and a directory")),
            "{err:?}"
        );
    }
}
