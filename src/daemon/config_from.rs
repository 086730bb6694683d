//! `[agent] config_from`: the part of the config that lives in a source.
//!
//! # Design
//! [`ConfigFiles`] is what the daemon's config is read from: the local
//! file and the last good [`Layer`] of fragments read from the source's
//! artifact. Each new artifact of that source is read and validated with
//! the local file exactly like a local edit ([`reload`](super::reload)),
//! then applied as the same diff; an invalid one is refused and the last
//! good one keeps running. The last good layer is kept in the state
//! database, so that after a restart with the repository unreachable the
//! node runs what it ran before.
//!
//! # Guarantees
//! Until a layer is known (the source's first artifact after a start
//! without a saved one), the config is incomplete: kustomizations declared
//! in the source look removed, so no removal is acted on
//! ([`ConfigFiles::complete`]).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::layers::{parse_layered, Fragment, Layer};
use crate::config::{self, Config, ConfigFrom, MAX_CONFIG_BYTES};
use crate::reconcile::kustomization::lock;
use crate::reconcile::SourceUpdate;
use crate::source::{self, archive, Artifact};
use crate::state::{Store, CONFIG_FROM_REFUSED};

use super::reload::{accepted, refuse};
use super::units::Units;
use super::{notify, status_line};

/// Why a source's artifact gave no layer.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Artifact(#[from] source::Error),
    #[error("{path} is not in the artifact: neither a file nor a directory with *.toml files")]
    Missing { path: String },
    #[error("{path} is not UTF-8")]
    NotUtf8 { path: String },
}

/// The local config file and the last good layer from `config_from`.
pub struct ConfigFiles {
    local: PathBuf,
    layer: Option<Layer>,
    /// The newest layer read, if it was refused: tried again when the
    /// local file changes (it may have been refused for want of a table
    /// the local file now has).
    refused: Option<Layer>,
}

impl ConfigFiles {
    /// The files of a daemon started with `config` read from `local`
    /// alone: the layer of the config source's stored artifact, else the
    /// one saved in `store`, joins it when it is for `config`'s
    /// `config_from` and valid with the local file.
    pub fn start(local: &Path, config: Config, store: &Mutex<Store>) -> (ConfigFiles, Config) {
        let mut files = ConfigFiles {
            local: local.to_path_buf(),
            layer: None,
            refused: None,
        };
        let Some(from) = config.agent.config_from.clone() else {
            return (files, config);
        };
        let saved = saved_layer(store).filter(|layer| layer.is_for(&from));
        let stored = stored_layer(store, &from, saved.as_ref());
        for (layer, is_new) in stored
            .map(|l| (l, true))
            .into_iter()
            .chain(saved.map(|l| (l, false)))
        {
            match files.with_layer(&layer) {
                Ok(layered) => {
                    tracing::info!(
                        source = %from.source,
                        "running the config last read from {}@{}:{} until a new revision is fetched",
                        layer.source,
                        layer.revision,
                        layer.path
                    );
                    if is_new {
                        save_layer(store, &layer);
                    }
                    files.layer = Some(layer);
                    return (files, layered);
                }
                Err(err) => tracing::error!(
                    "the config read from {}@{} does not fit the local file: {err}",
                    layer.source,
                    layer.revision
                ),
            }
        }
        tracing::info!(
            source = %from.source,
            "no config read from {} yet: running the local file's until it is fetched",
            from.source
        );
        (files, config)
    }

    /// The local file's path.
    pub fn local(&self) -> &Path {
        &self.local
    }

    /// Reads the local file with the last good layer laid over it (when it
    /// is still for the file's `config_from`).
    pub fn load(&self) -> Result<Config, config::Error> {
        let text = config::read_bounded(&self.local)?;
        let alone = Config::parse(&self.local, &text)?;
        match (&self.layer, &alone.agent.config_from) {
            (Some(layer), Some(from)) if layer.is_for(from) => {
                parse_layered(&self.local, &text, layer)
            }
            _ => Ok(alone),
        }
    }

    /// Whether the config is whole: no `config_from`, or its layer is known.
    pub fn complete(&self, config: &Config) -> bool {
        config.agent.config_from.is_none() || self.layer.is_some()
    }

    fn with_layer(&self, layer: &Layer) -> Result<Config, config::Error> {
        let text = config::read_bounded(&self.local)?;
        parse_layered(&self.local, &text, layer)
    }
}

/// Applies a new artifact of the config's source, if `update` is one (see
/// the module's design).
pub async fn follow(
    update: &SourceUpdate,
    files: &mut ConfigFiles,
    units: &mut Units,
    store: &Mutex<Store>,
) {
    let Some(from) = units.file_config().agent.config_from.clone() else {
        return;
    };
    let current = files.layer.as_ref().filter(|layer| layer.is_for(&from));
    if update.source != from.source
        || current.is_some_and(|layer| layer.revision == update.artifact.revision)
    {
        return;
    }
    let at = format!("{}@{}:{}", from.source, update.artifact.revision, from.path);
    notify::reloading(&format!("reading the config from {at}"));
    tracing::info!(source = %from.source, revision = %update.artifact.revision, "reading the config from {at}");
    match read_layer(&from, &update.artifact) {
        Err(err) => refuse(
            store,
            CONFIG_FROM_REFUSED,
            &format!("config from {at} refused, still running the last good one: {err}"),
        ),
        Ok(layer) => apply(layer, files, units, store).await,
    }
    notify::ready(&status_line(store));
}

/// Tries the layer refused last again, after the local file changed.
pub async fn retry_refused(files: &mut ConfigFiles, units: &mut Units, store: &Mutex<Store>) {
    let Some(layer) = files.refused.take() else {
        return;
    };
    let from = units.file_config().agent.config_from.clone();
    if from.is_some_and(|from| layer.is_for(&from)) {
        tracing::info!(source = %layer.source, revision = %layer.revision, "the local file changed: trying the config refused from {}@{} again", layer.source, layer.revision);
        apply(layer, files, units, store).await;
    }
}

async fn apply(layer: Layer, files: &mut ConfigFiles, units: &mut Units, store: &Mutex<Store>) {
    let applied = match files.with_layer(&layer) {
        Ok(new) => units
            .apply(new)
            .await
            .map_err(|err| format!("config not applied: {err}")),
        Err(err) => Err(format!(
            "config refused, still running the last good one: {err}"
        )),
    };
    match applied {
        Ok(changes) => {
            save_layer(store, &layer);
            files.layer = Some(layer);
            files.refused = None;
            accepted(store, CONFIG_FROM_REFUSED, &changes);
        }
        Err(message) => {
            files.refused = Some(layer);
            refuse(store, CONFIG_FROM_REFUSED, &message);
        }
    }
}

/// The fragments at `from.path` in `artifact`: that file, or the `*.toml`
/// files directly in that directory, by name.
pub fn read_layer(from: &ConfigFrom, artifact: &Artifact) -> Result<Layer, ReadError> {
    let prefix = format!("{}/", from.path);
    let wanted = |path: &str| {
        path == from.path
            || path
                .strip_prefix(&prefix)
                .is_some_and(|name| !name.contains('/') && name.ends_with(".toml"))
    };
    let mut files = archive::read_files(artifact, wanted, MAX_CONFIG_BYTES)?;
    if let Some(at) = files.iter().position(|(path, _)| *path == from.path) {
        files = vec![files.swap_remove(at)];
    }
    if files.is_empty() {
        return Err(ReadError::Missing {
            path: from.path.clone(),
        });
    }
    let fragments = files
        .into_iter()
        .map(|(path, bytes)| match String::from_utf8(bytes) {
            Ok(text) => Ok(Fragment { path, text }),
            Err(_) => Err(ReadError::NotUtf8 { path }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Layer {
        source: from.source.to_string(),
        revision: artifact.revision.clone(),
        path: from.path.clone(),
        fragments,
    })
}

/// The layer of the config source's artifact recorded in `store`, if it
/// has one, it reads, and its revision is not the `saved` layer's
/// (whose artifact is then not read at all).
fn stored_layer(store: &Mutex<Store>, from: &ConfigFrom, saved: Option<&Layer>) -> Option<Layer> {
    let kind = from.source.kind.as_str();
    let artifact = source::store::latest_artifact(&lock(store), kind, &from.source.name);
    match artifact {
        Ok(Some(artifact)) if saved.is_some_and(|saved| saved.revision == artifact.revision) => {
            None
        }
        Ok(Some(artifact)) => read_layer(from, &artifact)
            .map_err(|err| tracing::warn!(source = %from.source, "{err}"))
            .ok(),
        Ok(None) => None,
        Err(err) => {
            tracing::error!("{err}");
            None
        }
    }
}

fn saved_layer(store: &Mutex<Store>) -> Option<Layer> {
    let saved = match lock(store).config_layer() {
        Ok(saved) => saved?,
        Err(err) => {
            tracing::error!("{err}");
            return None;
        }
    };
    match serde_json::from_str(&saved) {
        Ok(layer) => Some(layer),
        Err(err) => {
            tracing::error!(
                "the saved config from config_from is unreadable ({err}); waiting for the source"
            );
            None
        }
    }
}

fn save_layer(store: &Mutex<Store>, layer: &Layer) {
    let saved = serde_json::to_string(layer)
        .map_err(|err| err.to_string())
        .and_then(|json| {
            lock(store)
                .save_config_layer(&json)
                .map_err(|err| err.to_string())
        });
    if let Err(err) = saved {
        tracing::error!(
            "keeping the config read from {}@{}: {err}; after a restart the node waits for the source",
            layer.source,
            layer.revision
        );
    }
}
