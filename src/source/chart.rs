//! Helm charts (kind `chart`): the artifact is the packaged chart, a
//! `.tgz` a release installs as it is.
//!
//! # Design
//! - From a repository: the highest version of the chart in range in the
//!   repository's kept index (its artifact, so no network unless the
//!   version or its digest changed), downloaded and checked against the
//!   index's sha256. Revision: the chart version.
//! - From a source of files (`git/NAME`): the directory at `path` in that
//!   source's artifact, less what its `.helmignore` excludes, packaged as
//!   `helm package` lays it out (`NAME/…`) but deterministically (sorted,
//!   mtime 0, uid/gid 0, no gzip time). Revision: the `Chart.yaml`
//!   version, or `VERSION+<12 hex of the commit>` when the files changed
//!   and the version did not (Flux's `reconcileStrategy: Revision`), so a
//!   release still upgrades. Dependencies must be vendored in `charts/`.
//! - From a file on the node: its bytes; revision as for Git, the suffix
//!   being 12 hex of the file's sha256.
//!
//! Every chart is checked to hold `NAME/Chart.yaml` with a semver version.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::AtomicBool;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::archive::{self, ArtifactWriter, MemoryFile};
use super::helm::{self, intact_previous, HelmClient};
use super::helm_index::ChartVersion;
use super::helm_oci::Registry;
use super::store::{hex, ArtifactStore};
use super::{io_error, Artifact, Error, Limits, Result, SyncOutcome};
use crate::config::version_range::{parse_version, VersionRange};
use crate::config::{ChartOrigin, HelmChart, HelmEndpoint, SourceKind};
use crate::state::SourceStatus;

/// What kedge reads of a `Chart.yaml`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChartMetadata {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub dependencies: Vec<ChartDependency>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChartDependency {
    pub name: String,
    #[serde(default)]
    pub repository: Option<String>,
}

/// Fetches or builds the chart of `chart` and returns its current artifact.
/// `upstream` is the current artifact of the source it is made from.
pub fn sync_chart(
    chart: &HelmChart,
    state_dir: &Path,
    previous: Option<&SourceStatus>,
    upstream: Option<&Artifact>,
    limits: Limits,
    interrupt: &AtomicBool,
) -> Result<SyncOutcome> {
    let context = Context {
        chart,
        state_dir,
        previous,
        limits,
    };
    match &chart.origin {
        ChartOrigin::Repository {
            endpoint,
            chart: name,
            digest: Some(digest),
            ..
        } => context.pull_pinned(endpoint, name, digest),
        ChartOrigin::Repository {
            endpoint,
            chart: name,
            version,
            ..
        } => {
            let index = context.upstream_artifact(upstream)?;
            context.pull_from_repository(endpoint, name, version, index, interrupt)
        }
        ChartOrigin::Source { path, .. } => {
            let tree = context.upstream_artifact(upstream)?;
            context.package_tree(tree, path)
        }
        ChartOrigin::File { path } => context.package_of_file(path),
    }
}

struct Context<'a> {
    chart: &'a HelmChart,
    state_dir: &'a Path,
    previous: Option<&'a SourceStatus>,
    limits: Limits,
}

impl Context<'_> {
    fn fail(&self, message: String) -> Error {
        Error::Chart {
            source_name: self.chart.name.clone(),
            message,
        }
    }

    fn upstream_artifact<'u>(&self, upstream: Option<&'u Artifact>) -> Result<&'u Artifact> {
        upstream.ok_or_else(|| Error::UpstreamNotReady {
            source_name: self.chart.name.clone(),
            upstream: self
                .chart
                .upstream()
                .map(|u| u.to_string())
                .unwrap_or_default(),
        })
    }

    fn unchanged(&self, digest: &str) -> Option<SyncOutcome> {
        intact_previous(self.previous)
            .filter(|previous| previous.digest == digest)
            .map(|artifact| SyncOutcome::Unchanged {
                artifact,
                inputs: String::new(),
            })
    }

    fn pull_from_repository(
        &self,
        endpoint: &HelmEndpoint,
        name: &str,
        range: &VersionRange,
        index_artifact: &Artifact,
        interrupt: &AtomicBool,
    ) -> Result<SyncOutcome> {
        let index = helm::read_index_artifact(index_artifact).map_err(|err| {
            self.fail(format!(
                "reading the index artifact {}: {err}",
                index_artifact.path.display()
            ))
        })?;
        let versions = index.entries.get(name).map(Vec::as_slice).unwrap_or(&[]);
        let picked = pick(versions, range).ok_or_else(|| {
            let offered: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
            self.fail(format!(
                "no version of chart {name} matches {range} (the repository has {})",
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            ))
        })?;
        if endpoint.is_oci() {
            return self.pull_from_registry(endpoint, picked);
        }
        if let Some(unchanged) = self
            .unchanged(&picked.digest)
            .filter(|_| self.previous.and_then(|p| p.revision.as_deref()) == Some(&picked.version))
        {
            return Ok(unchanged);
        }
        let client = HelmClient::new(endpoint, SourceKind::Chart, &self.chart.name)?;
        let url = client.join(picked.urls.first().map(String::as_str).unwrap_or_default())?;
        let response = client.send(client.get(&url)?, &url)?;
        let store = ArtifactStore::new(self.state_dir);
        let temp = store.temp_path(SourceKind::Chart.as_str(), &self.chart.name)?;
        let downloaded = write_hashed(
            helm::Bounded::new(response, self.limits.max_file_bytes, interrupt),
            &temp,
        );
        let digest = match downloaded {
            Ok(digest) if digest == picked.digest.to_ascii_lowercase() => digest,
            Ok(digest) => {
                let _ = std::fs::remove_file(&temp);
                return Err(client.error(
                    &url,
                    format!(
                        "the download has sha256 {digest}, the index says {}: refused",
                        picked.digest
                    ),
                ));
            }
            Err(err) => {
                let _ = std::fs::remove_file(&temp);
                return Err(client.error(&url, format!("downloading: {err}")));
            }
        };
        let checked = read_file_bounded(&temp, self.limits.max_file_bytes)
            .map_err(|err| self.fail(err))
            .and_then(|bytes| chart_metadata(&bytes).map_err(|err| self.fail(err)));
        if let Err(err) = checked {
            let _ = std::fs::remove_file(&temp);
            return Err(err);
        }
        let path = store.commit(SourceKind::Chart.as_str(), &self.chart.name, &temp, &digest)?;
        Ok(SyncOutcome::NewArtifact {
            artifact: Artifact {
                revision: picked.version.clone(),
                digest,
                path,
            },
            inputs: String::new(),
        })
    }

    /// The chart `picked` names in a registry; `inputs` is the manifest
    /// digest it was pulled at, so that a tag pushed again is pulled again.
    fn pull_from_registry(
        &self,
        endpoint: &HelmEndpoint,
        picked: &ChartVersion,
    ) -> Result<SyncOutcome> {
        let registry = Registry::new(endpoint, SourceKind::Chart, &self.chart.name)?;
        let url = picked.urls.first().map(String::as_str).unwrap_or_default();
        let manifest = registry.manifest_digest(url)?;
        let same = self.previous.is_some_and(|p| {
            p.revision.as_deref() == Some(picked.version.as_str())
                && p.artifact_inputs.as_deref() == Some(manifest.as_str())
        });
        if let Some(artifact) = intact_previous(self.previous).filter(|_| same) {
            return Ok(SyncOutcome::Unchanged {
                artifact,
                inputs: manifest,
            });
        }
        let pulled = registry.pull(url, self.limits.max_file_bytes)?;
        chart_metadata(&pulled.package).map_err(|err| self.fail(err))?;
        self.store_bytes(
            &pulled.package,
            &pulled.digest,
            picked.version.clone(),
            manifest,
        )
    }

    /// The chart of an OCI registry that `digest` pins: pulled once, kept
    /// while the pin stays. Revision: the version its Chart.yaml says.
    fn pull_pinned(
        &self,
        endpoint: &HelmEndpoint,
        name: &str,
        digest: &str,
    ) -> Result<SyncOutcome> {
        let same = self
            .previous
            .is_some_and(|p| p.artifact_inputs.as_deref() == Some(digest));
        if let Some(artifact) = intact_previous(self.previous).filter(|_| same) {
            return Ok(SyncOutcome::Unchanged {
                artifact,
                inputs: digest.to_string(),
            });
        }
        let registry = Registry::new(endpoint, SourceKind::Chart, &self.chart.name)?;
        let pulled = registry.pull(
            &registry.url_of(name, &format!("@{digest}")),
            self.limits.max_file_bytes,
        )?;
        let metadata = chart_metadata(&pulled.package).map_err(|err| self.fail(err))?;
        self.store_bytes(
            &pulled.package,
            &pulled.digest,
            metadata.version,
            digest.to_string(),
        )
    }

    fn package_of_file(&self, path: &Path) -> Result<SyncOutcome> {
        let bytes =
            read_file_bounded(path, self.limits.max_file_bytes).map_err(|err| self.fail(err))?;
        let metadata = chart_metadata(&bytes).map_err(|err| self.fail(err))?;
        let digest = hex(&Sha256::digest(&bytes));
        if let Some(unchanged) = self.unchanged(&digest) {
            return Ok(unchanged);
        }
        let revision = self.revision(&metadata.version, &digest[..12]);
        self.store_bytes(&bytes, &digest, revision, String::new())
    }

    fn package_tree(&self, tree: &Artifact, path: &Path) -> Result<SyncOutcome> {
        let files = chart_files(tree, path, self.limits).map_err(|err| self.fail(err))?;
        let chart_yaml = files.get("Chart.yaml").ok_or_else(|| {
            self.fail(format!(
                "no Chart.yaml in {} of {}",
                path.display(),
                tree.revision
            ))
        })?;
        let metadata: ChartMetadata = serde_yaml::from_slice(&chart_yaml.content)
            .map_err(|err| self.fail(format!("{}/Chart.yaml: {err}", path.display())))?;
        check_version(&metadata).map_err(|err| self.fail(err))?;
        check_vendored(&metadata, &files).map_err(|err| self.fail(err))?;
        let packaged: Vec<MemoryFile> = files
            .into_values()
            .map(|file| MemoryFile {
                path: format!("{}/{}", metadata.name, file.path),
                ..file
            })
            .collect();
        let store = ArtifactStore::new(self.state_dir);
        let temp = store.temp_path(SourceKind::Chart.as_str(), &self.chart.name)?;
        let written =
            ArtifactWriter::create(&temp, self.limits, &self.chart.name).and_then(|mut writer| {
                archive::append_memory_files(&packaged, &mut writer)?;
                writer.finish()
            });
        let digest = match written {
            Ok(digest) => digest,
            Err(err) => {
                let _ = std::fs::remove_file(&temp);
                return Err(err);
            }
        };
        if let Some(unchanged) = self.unchanged(&digest) {
            let _ = std::fs::remove_file(&temp);
            return Ok(unchanged);
        }
        let commit = tree
            .revision
            .rsplit_once("sha1:")
            .map_or(tree.digest.as_str(), |(_, sha)| sha);
        let revision = self.revision(&metadata.version, &commit[..commit.len().min(12)]);
        let path = store.commit(SourceKind::Chart.as_str(), &self.chart.name, &temp, &digest)?;
        Ok(SyncOutcome::NewArtifact {
            artifact: Artifact {
                revision,
                digest,
                path,
            },
            inputs: String::new(),
        })
    }

    /// `version`, or `version+suffix` when the previous artifact had this
    /// version already (its content differs, or it would be unchanged).
    fn revision(&self, version: &str, suffix: &str) -> String {
        let previous_version = self
            .previous
            .and_then(|p| p.revision.as_deref())
            .map(|revision| revision.split('+').next().unwrap_or(revision));
        if previous_version == Some(version.split('+').next().unwrap_or(version)) {
            format!("{version}+{suffix}")
        } else {
            version.to_string()
        }
    }

    fn store_bytes(
        &self,
        bytes: &[u8],
        digest: &str,
        revision: String,
        inputs: String,
    ) -> Result<SyncOutcome> {
        let store = ArtifactStore::new(self.state_dir);
        let temp = store.temp_path(SourceKind::Chart.as_str(), &self.chart.name)?;
        std::fs::write(&temp, bytes).map_err(io_error("writing artifact", &temp))?;
        let path = store.commit(SourceKind::Chart.as_str(), &self.chart.name, &temp, digest)?;
        Ok(SyncOutcome::NewArtifact {
            artifact: Artifact {
                revision,
                digest: digest.to_string(),
                path,
            },
            inputs,
        })
    }
}

/// The highest version of `versions` in `range`.
pub fn pick<'v>(versions: &'v [ChartVersion], range: &VersionRange) -> Option<&'v ChartVersion> {
    range
        .highest(versions.iter().map(|v| v.version.as_str()))
        .and_then(|(index, _)| versions.get(index))
}

fn write_hashed(mut reader: impl Read, dest: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::create(dest)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        file.write_all(&buffer[..read])?;
    }
    file.sync_all()?;
    Ok(hex(&hasher.finalize()))
}

fn read_file_bounded(path: &Path, limit: u64) -> std::result::Result<Vec<u8>, String> {
    let file =
        std::fs::File::open(path).map_err(|err| format!("reading {}: {err}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| format!("reading {}: {err}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} is over the {limit}-byte limit", path.display()));
    }
    Ok(bytes)
}

fn check_version(metadata: &ChartMetadata) -> std::result::Result<(), String> {
    match parse_version(&metadata.version) {
        Some(_) => Ok(()),
        None => Err(format!(
            "chart {}: version {:?} is not semver",
            metadata.name, metadata.version
        )),
    }
}

/// The `Chart.yaml` of a packaged chart (`NAME/Chart.yaml`), checked.
pub fn chart_metadata(package: &[u8]) -> std::result::Result<ChartMetadata, String> {
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(package));
    let entries = tar
        .entries()
        .map_err(|err| format!("not a chart package: {err}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|err| format!("not a chart package: {err}"))?;
        let path = entry.path().map_err(|err| err.to_string())?.into_owned();
        let parts: Vec<Component<'_>> = path.components().collect();
        if parts.len() == 2 && parts[1].as_os_str() == "Chart.yaml" {
            let mut text = Vec::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_end(&mut text)
                .map_err(|err| err.to_string())?;
            let metadata: ChartMetadata = serde_yaml::from_slice(&text)
                .map_err(|err| format!("{}: {err}", path.display()))?;
            check_version(&metadata)?;
            return Ok(metadata);
        }
    }
    Err("not a chart package: no NAME/Chart.yaml in it".to_string())
}

/// The regular files under `dir` of a tree artifact, by path relative to
/// `dir`, less those its `.helmignore` excludes.
fn chart_files(
    tree: &Artifact,
    dir: &Path,
    limits: Limits,
) -> std::result::Result<BTreeMap<String, MemoryFile>, String> {
    let file = std::fs::File::open(&tree.path)
        .map_err(|err| format!("reading {}: {err}", tree.path.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut files = BTreeMap::new();
    let mut total: u64 = 0;
    let entries = tar.entries().map_err(|err| err.to_string())?;
    for entry in entries {
        let mut entry = entry.map_err(|err| err.to_string())?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let path: PathBuf = entry.path().map_err(|err| err.to_string())?.into_owned();
        let Ok(relative) = path.strip_prefix(dir) else {
            continue;
        };
        let size = entry.size();
        total = total.saturating_add(size);
        if size > limits.max_file_bytes || total > limits.max_total_bytes {
            return Err(format!(
                "{} makes the chart larger than kedge's limits",
                path.display()
            ));
        }
        let mut content = Vec::with_capacity(size as usize);
        entry
            .read_to_end(&mut content)
            .map_err(|err| err.to_string())?;
        let executable = entry
            .header()
            .mode()
            .map(|m| m & 0o111 != 0)
            .unwrap_or(false);
        let relative = relative.to_string_lossy().into_owned();
        files.insert(
            relative.clone(),
            MemoryFile {
                path: relative,
                mode: if executable { 0o755 } else { 0o644 },
                content,
            },
        );
    }
    if let Some(helmignore) = files.get(".helmignore") {
        let rules = helmignore_rules(&helmignore.content)?;
        files.retain(|path, _| {
            !rules
                .matched_path_or_any_parents(Path::new("/chart").join(path), false)
                .is_ignore()
        });
    }
    Ok(files)
}

fn helmignore_rules(content: &[u8]) -> std::result::Result<ignore::gitignore::Gitignore, String> {
    let mut builder = ignore::gitignore::GitignoreBuilder::new("/chart");
    for line in String::from_utf8_lossy(content).lines() {
        builder
            .add_line(None, line)
            .map_err(|err| format!(".helmignore: {err}"))?;
    }
    builder.build().map_err(|err| format!(".helmignore: {err}"))
}

/// Every dependency must be in `charts/` (as a directory or a `.tgz`):
/// kedge does not fetch dependencies while packaging.
fn check_vendored(
    metadata: &ChartMetadata,
    files: &BTreeMap<String, MemoryFile>,
) -> std::result::Result<(), String> {
    for dependency in &metadata.dependencies {
        let dir = format!("charts/{}/", dependency.name);
        let archive_prefix = format!("charts/{}-", dependency.name);
        let vendored = files.keys().any(|path| {
            path.starts_with(&dir) || (path.starts_with(&archive_prefix) && path.ends_with(".tgz"))
        });
        if !vendored {
            return Err(format!(
                "dependency {} (repository {}) is not in charts/: run `helm dependency update` and commit charts/",
                dependency.name,
                dependency.repository.as_deref().unwrap_or("none")
            ));
        }
    }
    Ok(())
}
