//! Which fields the transformers touch: kustomize's built-in field specs,
//! extended by a kustomization's `configurations` files (for custom
//! resources). Configurations of bases reach the overlays that use them,
//! as in kustomize.

use std::path::Path;

use serde::Deserialize;

use super::fieldspec::{self, parse_table, specs, FieldSpec};
use super::kustomization::FieldSpecArgs;
use super::{nameref, yaml, Error};

/// A group/version/kind a name reference points at or comes from; empty
/// parts match anything.
pub type Gvk = (String, String, String);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub referral: Gvk,
    pub referrer: Gvk,
    pub path: String,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub common_labels: Vec<FieldSpec>,
    pub template_labels: Vec<FieldSpec>,
    /// Extra fields for every `labels` entry (only from configurations).
    pub labels: Vec<FieldSpec>,
    pub common_annotations: Vec<FieldSpec>,
    pub images: Vec<FieldSpec>,
    pub replicas: Vec<FieldSpec>,
    pub name_references: Vec<Reference>,
    /// Fields, besides every `metadata/name`, that get `namePrefix` /
    /// `nameSuffix` (only from configurations).
    pub name_prefix: Vec<FieldSpec>,
    pub name_suffix: Vec<FieldSpec>,
    /// `metadata/name` field specs from configurations. kustomize merges
    /// its default (every object) after them and drops it as covered, so
    /// when there are any, only the objects they select are renamed.
    pub name_prefix_names: Vec<FieldSpec>,
    pub name_suffix_names: Vec<FieldSpec>,
    /// Fields, besides `metadata/namespace`, set by `namespace`.
    pub namespace: Vec<FieldSpec>,
    /// Fields where `$(VAR)` is expanded.
    pub var_references: Vec<FieldSpec>,
    /// Vars declared by this kustomization and all it includes.
    pub vars: Vec<super::vars::Var>,
}

impl Default for Config {
    /// kustomize's built-in field specs (parsed once, then cloned).
    fn default() -> Config {
        static DEFAULT: std::sync::OnceLock<Config> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(Config::builtin).clone()
    }
}

impl Config {
    fn builtin() -> Config {
        let tables = |list: &[&str]| list.iter().flat_map(|t| parse_table(t)).collect::<Vec<_>>();
        Config {
            common_labels: tables(&[
                fieldspec::SELECTOR_LABELS,
                fieldspec::METADATA_LABELS,
                fieldspec::VOLUME_CLAIM_TEMPLATE_LABELS,
            ]),
            template_labels: tables(&[
                fieldspec::METADATA_LABELS,
                fieldspec::VOLUME_CLAIM_TEMPLATE_LABELS,
            ]),
            labels: Vec::new(),
            common_annotations: parse_table(fieldspec::ANNOTATIONS),
            images: parse_table(fieldspec::IMAGES),
            replicas: parse_table(fieldspec::REPLICAS),
            name_references: nameref::default_references(),
            name_prefix: Vec::new(),
            name_suffix: Vec::new(),
            name_prefix_names: Vec::new(),
            name_suffix_names: Vec::new(),
            namespace: Vec::new(),
            var_references: parse_table(include_str!("var_references.txt")),
            vars: Vec::new(),
        }
    }
}

/// A `configurations` file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default)]
    common_labels: Vec<FieldSpecArgs>,
    #[serde(default)]
    template_labels: Vec<FieldSpecArgs>,
    #[serde(default)]
    labels: Vec<FieldSpecArgs>,
    #[serde(default)]
    common_annotations: Vec<FieldSpecArgs>,
    #[serde(default)]
    images: Vec<FieldSpecArgs>,
    #[serde(default)]
    replicas: Vec<FieldSpecArgs>,
    #[serde(default)]
    name_reference: Vec<ReferenceArgs>,
    #[serde(default)]
    name_prefix: Vec<FieldSpecArgs>,
    #[serde(default)]
    name_suffix: Vec<FieldSpecArgs>,
    #[serde(default)]
    namespace: Vec<FieldSpecArgs>,
    #[serde(default)]
    var_reference: Vec<FieldSpecArgs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ReferenceArgs {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    kind: String,
    #[serde(default)]
    field_specs: Vec<FieldSpecArgs>,
}

fn extend<T: Eq + std::hash::Hash + Clone>(into: &mut Vec<T>, more: &[T]) {
    let mut known: std::collections::HashSet<T> = into.iter().cloned().collect();
    for item in more {
        if known.insert(item.clone()) {
            into.push(item.clone());
        }
    }
}

impl Config {
    /// Adds what `other` has and `self` lacks; a var declared on both
    /// sides is an error, as in kustomize.
    pub fn merge(&mut self, other: &Config) -> Result<(), String> {
        for var in &other.vars {
            super::vars::add(&mut self.vars, var)?;
        }
        extend(&mut self.common_labels, &other.common_labels);
        extend(&mut self.template_labels, &other.template_labels);
        extend(&mut self.labels, &other.labels);
        extend(&mut self.common_annotations, &other.common_annotations);
        extend(&mut self.images, &other.images);
        extend(&mut self.replicas, &other.replicas);
        extend(&mut self.name_references, &other.name_references);
        extend(&mut self.var_references, &other.var_references);
        extend(&mut self.name_prefix, &other.name_prefix);
        extend(&mut self.name_suffix, &other.name_suffix);
        extend(&mut self.name_prefix_names, &other.name_prefix_names);
        extend(&mut self.name_suffix_names, &other.name_suffix_names);
        extend(&mut self.namespace, &other.namespace);
        Ok(())
    }

    /// Reads one `configurations` file into this configuration.
    pub fn load(&mut self, dir: &Path, entry: &str, kustomization: &Path) -> Result<(), Error> {
        const FIELD: &str = "configurations";
        let path = dir.join(entry);
        super::build::check_within(dir, &path, kustomization, FIELD)?;
        let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
            file: kustomization.to_path_buf(),
            field: FIELD.into(),
            path: path.clone(),
            source,
        })?;
        let value = yaml::parse_one(&path, &text)?;
        let file: File = serde_json::from_value(if value.is_null() {
            serde_json::json!({})
        } else {
            value
        })
        .map_err(|e| Error::field(kustomization, FIELD, format!("{}: {e}", path.display())))?;
        extend(&mut self.common_labels, &specs(&file.common_labels));
        extend(&mut self.template_labels, &specs(&file.template_labels));
        extend(&mut self.labels, &specs(&file.labels));
        extend(
            &mut self.common_annotations,
            &specs(&file.common_annotations),
        );
        extend(&mut self.images, &specs(&file.images));
        extend(&mut self.replicas, &specs(&file.replicas));
        extend(&mut self.var_references, &specs(&file.var_reference));
        let (names, others): (Vec<_>, Vec<_>) = specs(&file.name_prefix)
            .into_iter()
            .partition(|s| s.path == "metadata/name");
        extend(&mut self.name_prefix, &others);
        extend(&mut self.name_prefix_names, &names);
        let (names, others): (Vec<_>, Vec<_>) = specs(&file.name_suffix)
            .into_iter()
            .partition(|s| s.path == "metadata/name");
        extend(&mut self.name_suffix, &others);
        extend(&mut self.name_suffix_names, &names);
        extend(&mut self.namespace, &specs(&file.namespace));
        for reference in &file.name_reference {
            for spec in &reference.field_specs {
                let r = Reference {
                    referral: (
                        reference.group.clone(),
                        reference.version.clone(),
                        reference.kind.clone(),
                    ),
                    referrer: (spec.group.clone(), spec.version.clone(), spec.kind.clone()),
                    path: spec.path.clone(),
                };
                extend(&mut self.name_references, &[r]);
            }
        }
        Ok(())
    }
}
