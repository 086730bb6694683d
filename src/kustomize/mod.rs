//! Native `kustomize build`: loader, generators, transformers, strategic
//! merge and JSON 6902 patches, output order. Knows nothing of Kubernetes
//! clients.
//!
//! # Background
//!
//! Flux builds every Kustomization with kustomize. kedge does the same in
//! Rust, checked differentially against `kubectl kustomize` (kustomize
//! v5.5.0) on the fixtures under `tests/fixtures/`.
//!
//! # Design
//!
//! A build reads the kustomization file strictly ([`kustomization`]),
//! loads `resources` (files, directories, nested kustomizations), runs the
//! generators, applies `components` on top of what was accumulated, then
//! the transformers in kustomize's order: strategic merge patches,
//! `patches`, `namespace`, `namePrefix`/`nameSuffix`, labels, annotations,
//! JSON 6902 patches, `replicas`, `images`, `replacements`. Once, at the
//! top, generated objects get their content hash, name references are
//! rewritten ([`nameref`]) and objects are sorted ([`order`]).
//!
//! Objects are plain JSON values; a [`Resource`] also remembers earlier
//! ids, prefixes and suffixes, as kustomize's build annotations do.
//!
//! # Output normalisation
//!
//! [`to_yaml`] prints like `kubectl kustomize`, which re-encodes every
//! object through JSON and go-yaml v2: keys sorted (go-yaml's natural
//! order), two-space indentation, lists not indented under their key,
//! `{}`/`[]` for empty collections, quotes only where a plain string
//! would read back as another type or is not valid plain YAML, literal
//! blocks for multi-line strings, folding at column 80, documents joined
//! by `---`. Input comments, quoting and flow styles are not kept (neither
//! does kubectl). See [`emit`] and [`scalar`].
//!
//! # Current limitations
//!
//! Remote resources, Helm charts, generator/transformer/validator
//! plugins, `vars`, `crds`, `configurations`, `openapi` and
//! `buildMetadata` fail with an error naming the field.

mod build;
mod emit;
mod error;
mod fieldspec;
#[cfg(test)]
mod fuzz_tests;
mod generate;
mod json_patch;
mod kustomization;
mod nameref;
mod order;
mod patch;
mod replace;
mod resource;
mod scalar;
mod schema;
mod select;
mod smp;
mod transform;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::Error;
pub use resource::Resource;

/// Builds the kustomization in `dir`, like `kustomize build dir`.
///
/// # Errors
///
/// Every error names the kustomization file and field involved: missing
/// files, cycles, duplicate ids, patch targets not found, bad YAML (with
/// the line), unsupported fields.
pub fn build(dir: &Path) -> Result<Vec<Resource>, Error> {
    build::build_top(dir)
}

/// Builds a directory without kustomization file the way Flux does: every
/// `.yaml`, `.yml` and `.json` file below it (hidden directories skipped),
/// in path order, as the `resources` of a generated kustomization. A
/// directory that does have a kustomization file is built normally.
pub fn build_plain_dir(dir: &Path) -> Result<Vec<Resource>, Error> {
    if kustomization::FILE_NAMES
        .iter()
        .any(|n| dir.join(n).is_file())
    {
        return build(dir);
    }
    let mut files = Vec::new();
    collect_manifests(dir, &mut files)?;
    files.sort();
    build::build_files(dir, &files)
}

fn collect_manifests(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), Error> {
    let read_error = |source| Error::Read {
        file: dir.join("kustomization.yaml"),
        field: "resources".into(),
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_manifests(&path, files)?;
        } else if [".yaml", ".yml", ".json"]
            .iter()
            .any(|ext| name.ends_with(ext))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Multi-document YAML exactly as `kubectl kustomize` prints it.
pub fn to_yaml(resources: &[Resource]) -> String {
    resources
        .iter()
        .map(|r| emit::to_yaml_document(&r.value))
        .collect::<Vec<_>>()
        .join("---\n")
}
