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
//! A build reads the kustomization file strictly (`kustomization`:
//! unknown fields and wrong types are errors, field names match
//! case-insensitively like Go's JSON decoding), loads `resources` (files,
//! directories, nested kustomizations; files must lie in or below the
//! kustomization, as with kustomize's default load restriction), runs the
//! generators (`configMapGenerator`, `secretGenerator`, built-in generator
//! plugins), applies `components` on top of what was accumulated, then the
//! transformers in kustomize's order: strategic merge patches, `patches`,
//! `namespace`, `namePrefix`, `nameSuffix`, labels, annotations, JSON 6902
//! patches, `replicas`, `images`, `replacements`, then built-in transformer
//! plugins; finally it binds the layer's `vars`. Once, at the top,
//! generated objects get their content hash, name references are
//! rewritten (`nameref`), vars are expanded, `local-config` objects are
//! dropped and objects are sorted (`order`).
//!
//! YAML is read from libyaml's events the way kustomize reads it with
//! go-yaml v3 (`yaml`, `libyaml`): plain `0644` is the number 420, quoted
//! `"0644"` a string, timestamps become RFC 3339 text, `<<` merges maps,
//! folded text changes as go-yaml's emitter changes it, and keys written
//! without a value are remembered for strategic merge patches, which drop
//! them. Objects are plain JSON values; a [`Resource`] also remembers earlier
//! ids, prefixes and suffixes, as kustomize's build annotations do. Which
//! fields each transformer touches comes from kustomize's default field
//! specs plus `configurations` (`config`) and the OpenAPI extensions of
//! legacy `crds` files (`crds`); strategic merge keys come from
//! the Kubernetes OpenAPI, turned into `merge_keys.json` by
//! `scripts/gen-merge-keys.sh`, or from the kustomization's `openapi`
//! schema (`schema`); which kinds are cluster-scoped comes from
//! kustomize's own built-in schema (Kubernetes v1.21.2), by apiVersion.
//!
//! # Output normalisation
//!
//! [`to_yaml`] prints like `kubectl kustomize`, which re-encodes every
//! object through JSON and go-yaml v2: keys sorted (go-yaml's natural
//! order: digit runs compare as numbers, letters after other characters),
//! two-space indentation, lists not indented under their key, `{}`/`[]`
//! for empty collections, integral numbers without a fraction, strings
//! quoted only where a plain string would read back as another type
//! (`"true"`, `"1"`, `"y"`, `""`) or is not valid plain YAML (then single,
//! else double quotes), literal blocks for multi-line text, folding at
//! column 80, annotation values as strings, documents joined by `---`.
//! Input comments, quoting and flow styles are not kept (nor does kubectl
//! keep them). See `emit` and `scalar`.
//!
//! # Current limitations
//!
//! Failing with an error that names the field: remote resources (kedge
//! builds offline), `helmCharts`, exec/Go/KRM plugins in `generators`,
//! `transformers` and `validators`, and
//! `buildMetadata: [transformerAnnotations]`. `metadata/name` field specs
//! for `namePrefix` / `nameSuffix` in `configurations` replace the default
//! (every object), as in kustomize; only the kinds they select are
//! renamed. Corpus cases not matched yet
//! are listed in `tests/fixtures/kustomize-corpus-known-failures.txt`.
//!
//! Known to differ, not seen in real trees: kustomization files and JSON
//! patches are read by kustomize with go-yaml v2 (YAML 1.1: `yes` is
//! true there), kedge reads them like manifests; a more-indented line of
//! a folded scalar longer than 80 columns, which go-yaml's emitter breaks,
//! is kept whole.

mod absorb;
mod build;
mod config;
mod crds;
mod emit;
mod error;
mod fieldspec;
#[cfg(test)]
mod fuzz_tests;
mod generate;
mod json_patch;
mod kustomization;
pub(crate) mod libyaml;
mod nameref;
mod order;
mod output;
mod overrides;
mod patch;
mod plugins;
mod replace;
mod resource;
mod scalar;
mod schema;
mod select;
mod smp;
mod smp_multikey;
mod transform;
mod vars;
mod yaml;

use std::path::{Path, PathBuf};

pub use error::Error;
pub use kustomization::{Image, Selector};
pub use overrides::FluxOverrides;
pub use resource::Resource;

/// Builds the kustomization in `dir`, like `kustomize build dir`.
///
/// # Errors
///
/// Every error names the kustomization file and field involved: missing
/// files, cycles, duplicate ids, patch targets not found, bad YAML (with
/// the line), unsupported fields.
pub fn build(dir: &Path) -> Result<Vec<Resource>, Error> {
    build::build_top(dir, &FluxOverrides::default())
}

/// Builds a directory the way Flux does: with a kustomization file, as
/// [`build`]; without one, as if it had one listing, in path order, every
/// `.yaml`/`.yml` file below it and every subdirectory that has a
/// kustomization file (not descending into those), hidden entries skipped
/// (Flux's `generator`, see fluxcd/pkg `kustomize`).
pub fn build_plain_dir(dir: &Path) -> Result<Vec<Resource>, Error> {
    build_flux(dir, &FluxOverrides::default())
}

/// [`build_plain_dir`] with a Flux Kustomization's `overrides` merged into
/// the kustomization at `dir` (or the one generated for it), as Flux does.
pub fn build_flux(dir: &Path, overrides: &FluxOverrides) -> Result<Vec<Resource>, Error> {
    if has_kustomization(dir) {
        return build::build_top(dir, overrides);
    }
    let mut entries = Vec::new();
    collect_manifests(dir, &mut entries)?;
    build::build_entries(dir, &entries, overrides)
}

fn has_kustomization(dir: &Path) -> bool {
    kustomization::FILE_NAMES
        .iter()
        .any(|n| dir.join(n).is_file())
}

fn collect_manifests(dir: &Path, entries: &mut Vec<PathBuf>) -> Result<(), Error> {
    let read_error = |source| Error::Read {
        file: dir.join("kustomization.yaml"),
        field: "resources".into(),
        path: dir.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_error)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read_error)?;
    paths.sort();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            if has_kustomization(&path) {
                entries.push(path);
            } else {
                collect_manifests(&path, entries)?;
            }
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            entries.push(path);
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
