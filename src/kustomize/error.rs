//! Errors of a kustomize build. Every variant names the kustomization file
//! (or manifest) and, where one is involved, the kustomization field.

use std::path::PathBuf;

/// A kustomize build failed; the message says which file and field.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory named by a kustomization could not be read.
    #[error("{file}: field '{field}': cannot read {path}: {source}")]
    Read {
        file: PathBuf,
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The directory to build has no kustomization file.
    #[error("{dir}: no kustomization.yaml, kustomization.yml or Kustomization found")]
    MissingKustomization { dir: PathBuf },
    /// A directory holds more than one kustomization file.
    #[error("{dir}: found multiple kustomization files")]
    AmbiguousKustomization { dir: PathBuf },
    /// A file is not valid YAML (or holds a document that is not an object).
    #[error("{file}: invalid YAML{}: {message}", line.map(|l| format!(" at line {l}")).unwrap_or_default())]
    Yaml {
        file: PathBuf,
        line: Option<usize>,
        message: String,
    },
    /// A kustomization field has a value kedge cannot use.
    #[error("{file}: field '{field}': {message}")]
    Field {
        file: PathBuf,
        field: String,
        message: String,
    },
    /// A kustomization field kedge does not support (yet).
    #[error("{file}: field '{field}' is not supported by kedge: {reason}")]
    Unsupported {
        file: PathBuf,
        field: String,
        reason: String,
    },
    /// Kustomizations include each other in a loop.
    #[error("{file}: field '{field}': cycle: {path} is already being built")]
    Cycle {
        file: PathBuf,
        field: String,
        path: PathBuf,
    },
    /// Two objects have the same group, version, kind, namespace and name.
    #[error("{file}: field '{field}': may not add resource with an already registered id: {id}")]
    DuplicateId {
        file: PathBuf,
        field: String,
        id: String,
    },
    /// A patch or replacement selects no object.
    #[error("{file}: field '{field}': no resource matches target {target}")]
    TargetNotFound {
        file: PathBuf,
        field: String,
        target: String,
    },
    /// A patch could not be applied.
    #[error("{file}: field '{field}': patch {target}: {message}")]
    Patch {
        file: PathBuf,
        field: String,
        target: String,
        message: String,
    },
}

impl Error {
    pub(crate) fn field(file: &std::path::Path, field: &str, message: impl Into<String>) -> Self {
        Error::Field {
            file: file.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}
