//! A release's values, merged in Flux's order: the chart's `values_files`,
//! then each `values_from` entry (a file on the node, a key of a ConfigMap
//! or Secret), then `values_yaml` and `values` from the config.
//!
//! Values may hold secrets: they are never logged or stored, only their
//! digest.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use serde_json::{Map, Value};

use crate::apply::Manager;
use crate::config::{merge_values, HelmRelease, ValuesFrom, ValuesObjectKind};

/// The largest values file (or ConfigMap/Secret key) kedge reads.
const MAX_VALUES_BYTES: u64 = 4 << 20;
/// The largest chart package read for its `Chart.yaml` and values files.
const MAX_CHART_FILE_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {}: {message}", path.display())]
    File { path: PathBuf, message: String },
    #[error("{what} is not a YAML mapping of values: {message}")]
    NotValues { what: String, message: String },
    #[error("{what}: {message}")]
    Object { what: String, message: String },
    #[error("chart package {}: {message}", path.display())]
    Chart { path: PathBuf, message: String },
}

/// The merged values of `release`, whose chart package is `chart`.
pub async fn compose(
    manager: &Manager,
    release: &HelmRelease,
    chart: &Path,
) -> Result<Map<String, Value>, Error> {
    let mut merged = Map::new();
    if !release.values_files.is_empty() {
        let files = chart_files(chart, &release.values_files)?;
        for (path, text) in files {
            let what = format!("values file {} of the chart", path.display());
            merge_values(&mut merged, parse(&what, &text)?);
        }
    }
    for entry in &release.values_from {
        if let Some(values) = values_from(manager, entry).await? {
            merge_values(&mut merged, values);
        }
    }
    merge_values(&mut merged, release.values.clone());
    Ok(merged)
}

async fn values_from(
    manager: &Manager,
    entry: &ValuesFrom,
) -> Result<Option<Map<String, Value>>, Error> {
    match entry {
        ValuesFrom::File { path } => {
            let text = read_bounded(path)?;
            parse(&path.display().to_string(), &text).map(Some)
        }
        ValuesFrom::Object {
            kind,
            name,
            namespace,
            values_key,
            optional,
        } => {
            let what = format!("{kind:?} {namespace}/{name} key {values_key:?}");
            match object_key(manager, *kind, namespace, name, values_key).await {
                Ok(Some(text)) => parse(&what, &text).map(Some),
                Ok(None) if *optional => Ok(None),
                Ok(None) => Err(Error::Object {
                    what,
                    message: "not found (set optional = true if it may be absent)".into(),
                }),
                Err(message) => Err(Error::Object { what, message }),
            }
        }
    }
}

/// The text at `key` of the ConfigMap or Secret, `None` if either is absent.
async fn object_key(
    manager: &Manager,
    kind: ValuesObjectKind,
    namespace: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, String> {
    let client = manager.client().clone();
    let text = match kind {
        ValuesObjectKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client, namespace);
            let object = api.get_opt(name).await.map_err(|e| e.to_string())?;
            object.and_then(|cm| cm.data.and_then(|mut data| data.remove(key)))
        }
        ValuesObjectKind::Secret => {
            let api: Api<Secret> = Api::namespaced(client, namespace);
            let object = api.get_opt(name).await.map_err(|e| e.to_string())?;
            let bytes = object.and_then(|s| s.data.and_then(|mut data| data.remove(key)));
            match bytes {
                Some(bytes) => Some(
                    String::from_utf8(bytes.0).map_err(|_| "the value is not UTF-8".to_string())?,
                ),
                None => None,
            }
        }
    };
    if text
        .as_ref()
        .is_some_and(|t| t.len() as u64 > MAX_VALUES_BYTES)
    {
        return Err(format!("larger than {MAX_VALUES_BYTES} bytes"));
    }
    Ok(text)
}

fn parse(what: &str, text: &str) -> Result<Map<String, Value>, Error> {
    match serde_yaml::from_str::<Value>(text) {
        Ok(Value::Object(values)) => Ok(values),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(Error::NotValues {
            what: what.to_string(),
            message: "it is not a mapping".into(),
        }),
        Err(err) => Err(Error::NotValues {
            what: what.to_string(),
            message: err.to_string(),
        }),
    }
}

fn read_bounded(path: &Path) -> Result<String, Error> {
    let error = |message: String| Error::File {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_VALUES_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| error(e.to_string()))?;
    if text.len() as u64 > MAX_VALUES_BYTES {
        return Err(error(format!("larger than {MAX_VALUES_BYTES} bytes")));
    }
    Ok(text)
}

/// The chart's name, from the `Chart.yaml` of its package.
pub fn chart_name(chart: &Path) -> Result<String, Error> {
    let files = chart_files(chart, &[PathBuf::from("Chart.yaml")])?;
    let text = files
        .into_iter()
        .next()
        .map(|(_, text)| text)
        .unwrap_or_default();
    let metadata: Value = serde_yaml::from_str(&text).map_err(|err| Error::Chart {
        path: chart.to_path_buf(),
        message: format!("Chart.yaml: {err}"),
    })?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(name) if !name.is_empty() => Ok(name.to_string()),
        _ => Err(Error::Chart {
            path: chart.to_path_buf(),
            message: "Chart.yaml has no name".into(),
        }),
    }
}

/// The files `wanted` (relative to the chart's root) of a chart package, in
/// the order asked; each must exist.
fn chart_files(chart: &Path, wanted: &[PathBuf]) -> Result<Vec<(PathBuf, String)>, Error> {
    let error = |message: String| Error::Chart {
        path: chart.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(chart).map_err(|e| error(e.to_string()))?;
    let mut archive = tar::Archive::new(GzDecoder::new(file));
    let mut found: Vec<Option<String>> = vec![None; wanted.len()];
    for entry in archive.entries().map_err(|e| error(e.to_string()))? {
        let mut entry = entry.map_err(|e| error(e.to_string()))?;
        let path = entry.path().map_err(|e| error(e.to_string()))?.into_owned();
        // A package holds one top directory, the chart's name.
        let inside: PathBuf = path.components().skip(1).collect();
        let Some(index) = wanted.iter().position(|w| *w == inside) else {
            continue;
        };
        if entry.size() > MAX_CHART_FILE_BYTES {
            return Err(error(format!(
                "{} is larger than {MAX_CHART_FILE_BYTES} bytes",
                inside.display()
            )));
        }
        let mut text = String::new();
        entry
            .read_to_string(&mut text)
            .map_err(|e| error(format!("{}: {e}", inside.display())))?;
        found[index] = Some(text);
    }
    wanted
        .iter()
        .zip(found)
        .map(|(path, text)| match text {
            Some(text) => Ok((path.clone(), text)),
            None => Err(error(format!("it has no {}", path.display()))),
        })
        .collect()
}
