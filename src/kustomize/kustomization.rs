//! The kustomization file: read strictly (unknown fields and wrongly typed
//! values are errors, as in kustomize).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::{yaml, Error};

/// File names kustomize looks for, in this order.
pub const FILE_NAMES: [&str; 3] = ["kustomization.yaml", "kustomization.yml", "Kustomization"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Kustomization {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    // Accepted as kustomize does; the build does not use it.
    #[allow(dead_code)]
    pub metadata: Option<Value>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub bases: Vec<String>,
    #[serde(default)]
    pub components: Vec<String>,
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub labels: Vec<Label>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub patches: Vec<Patch>,
    #[serde(default)]
    pub patches_strategic_merge: Vec<String>,
    #[serde(default, rename = "patchesJson6902")]
    pub patches_json6902: Vec<Patch>,
    #[serde(default)]
    pub images: Vec<Image>,
    #[serde(default)]
    pub replicas: Vec<Replica>,
    #[serde(default)]
    pub config_map_generator: Vec<GeneratorArgs>,
    #[serde(default)]
    pub secret_generator: Vec<GeneratorArgs>,
    pub generator_options: Option<GeneratorOptions>,
    #[serde(default)]
    pub replacements: Vec<Value>,
    pub sort_options: Option<SortOptions>,
    #[serde(default)]
    pub build_metadata: Vec<String>,
    // Fields kedge refuses with a clear error (see `unsupported_fields`).
    pub helm_charts: Option<Value>,
    pub helm_globals: Option<Value>,
    pub helm_chart_inflation_generator: Option<Value>,
    #[serde(default)]
    pub generators: Vec<String>,
    #[serde(default)]
    pub transformers: Vec<String>,
    pub validators: Option<Value>,
    #[serde(default)]
    pub vars: Vec<super::vars::Var>,
    #[serde(default)]
    pub crds: Vec<String>,
    #[serde(default)]
    pub configurations: Vec<String>,
    pub openapi: Option<BTreeMap<String, String>>,
    pub image_tags: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Label {
    #[serde(default)]
    pub pairs: BTreeMap<String, String>,
    #[serde(default)]
    pub include_selectors: bool,
    #[serde(default)]
    pub include_templates: bool,
    #[serde(default)]
    pub fields: Vec<FieldSpecArgs>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FieldSpecArgs {
    pub path: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub create: bool,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    pub path: Option<String>,
    pub patch: Option<String>,
    pub target: Option<Selector>,
    pub options: Option<BTreeMap<String, bool>>,
}

/// Which objects a patch or replacement applies to.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub label_selector: String,
    #[serde(default)]
    pub annotation_selector: String,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    pub name: String,
    #[serde(default)]
    pub new_name: String,
    #[serde(default)]
    pub new_tag: String,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub tag_suffix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Replica {
    pub name: String,
    pub count: i64,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorArgs {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    pub behavior: Option<String>,
    #[serde(default)]
    pub literals: Vec<String>,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    pub env: Option<String>,
    pub options: Option<GeneratorOptions>,
    #[serde(rename = "type")]
    pub secret_type: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneratorOptions {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub disable_name_suffix_hash: Option<bool>,
    pub immutable: Option<bool>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SortOptions {
    pub order: Option<String>,
    pub legacy_sort_options: Option<LegacySortOptions>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacySortOptions {
    #[serde(default)]
    pub order_first: Vec<String>,
    #[serde(default)]
    pub order_last: Vec<String>,
}

impl Kustomization {
    /// Finds and reads the kustomization file of `dir`.
    pub fn load(dir: &Path) -> Result<(PathBuf, Kustomization), Error> {
        let found: Vec<PathBuf> = FILE_NAMES
            .iter()
            .map(|n| dir.join(n))
            .filter(|p| p.is_file())
            .collect();
        let file = match found.len() {
            0 => {
                return Err(Error::MissingKustomization {
                    dir: dir.to_path_buf(),
                })
            }
            1 => found[0].clone(),
            _ => {
                return Err(Error::AmbiguousKustomization {
                    dir: dir.to_path_buf(),
                })
            }
        };
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
            file: file.clone(),
            field: "kustomization".into(),
            path: file.clone(),
            source,
        })?;
        let value = yaml::parse_kustomization(&file, &text)?;
        let value = if value.is_null() {
            Value::Object(Default::default())
        } else {
            value
        };
        let value = nulls_as_go_decodes(fold_field_names(value), false);
        check_not_empty(&file, &value)?;
        let kustomization: Kustomization = serde_json::from_value(value).map_err(|e| {
            Error::field(
                &file,
                "kustomization",
                format!("invalid Kustomization: {e}"),
            )
        })?;
        kustomization.check_supported(&file)?;
        Ok((file, kustomization))
    }

    /// kedge builds offline and without plugins: refuse what needs either.
    fn check_supported(&self, file: &Path) -> Result<(), Error> {
        let unsupported = [
            (
                "helmCharts",
                &self.helm_charts,
                "Helm charts are not supported in kustomizations",
            ),
            (
                "helmGlobals",
                &self.helm_globals,
                "Helm charts are not supported in kustomizations",
            ),
            (
                "helmChartInflationGenerator",
                &self.helm_chart_inflation_generator,
                "Helm charts are not supported in kustomizations",
            ),
            (
                "validators",
                &self.validators,
                "validator plugins are not supported",
            ),
            ("imageTags", &self.image_tags, "use images"),
        ];
        for (field, value, reason) in unsupported {
            if value.as_ref().is_some_and(|v| !is_empty(v)) {
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: field.into(),
                    reason: reason.into(),
                });
            }
        }
        let unsupported = self.build_metadata.iter().find(|m| {
            ![
                "originAnnotations",
                "managedByLabel",
                "transformerAnnotations",
            ]
            .contains(&m.as_str())
        });
        if let Some(meta) = unsupported {
            return Err(Error::Unsupported {
                file: file.to_path_buf(),
                field: "buildMetadata".into(),
                reason: format!("option '{meta}' adds build annotations kedge does not write"),
            });
        }
        Ok(())
    }
}

/// The top-level field names, as kustomize spells them.
const FIELDS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "resources",
    "bases",
    "components",
    "namespace",
    "namePrefix",
    "nameSuffix",
    "commonLabels",
    "labels",
    "commonAnnotations",
    "patches",
    "patchesStrategicMerge",
    "patchesJson6902",
    "images",
    "replicas",
    "configMapGenerator",
    "secretGenerator",
    "generatorOptions",
    "replacements",
    "sortOptions",
    "buildMetadata",
    "helmCharts",
    "helmGlobals",
    "helmChartInflationGenerator",
    "generators",
    "transformers",
    "validators",
    "vars",
    "crds",
    "configurations",
    "openapi",
    "imageTags",
];

/// kustomize decodes with Go's encoding/json, which matches field names
/// case-insensitively when no exact match exists (`nameprefix` works).
fn fold_field_names(value: Value) -> Value {
    let Value::Object(map) = value else {
        return value;
    };
    let folded = map
        .into_iter()
        .map(|(key, v)| {
            let known = FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&key));
            match known {
                Some(name) if *name != key && !FIELDS.contains(&key.as_str()) => {
                    (name.to_string(), v)
                }
                _ => (key, v),
            }
        })
        .collect();
    Value::Object(folded)
}

/// Go's JSON decoding, which kustomize reads the file with, leaves a field
/// given as null at its zero value (`components:` with every entry
/// commented out is no list, not an error) and makes a null map value "".
fn nulls_as_go_decodes(value: Value, string_map: bool) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter_map(|(key, v)| match v {
                    Value::Null if string_map => Some((key, Value::String(String::new()))),
                    Value::Null => None,
                    Value::Object(_) => {
                        let strings = STRING_MAPS.contains(&key.as_str());
                        Some((key, nulls_as_go_decodes(v, strings)))
                    }
                    other => Some((key, nulls_as_go_decodes(other, false))),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| nulls_as_go_decodes(i, false))
                .collect(),
        ),
        other => other,
    }
}

/// Fields (at any level) that are maps of strings.
const STRING_MAPS: &[&str] = &[
    "commonLabels",
    "commonAnnotations",
    "pairs",
    "labels",
    "annotations",
    "openapi",
];

/// kustomize refuses a kustomization that sets nothing besides apiVersion
/// and kind (after its fix-ups: empty `bases`, `imageTags` and
/// `helmChartInflationGenerator` lists vanish, empty strings are unset).
fn check_not_empty(file: &Path, value: &Value) -> Result<(), Error> {
    let Value::Object(map) = value else {
        return Ok(());
    };
    let sets_something = map.iter().any(|(key, v)| match key.as_str() {
        "apiVersion" | "kind" => false,
        "bases" | "imageTags" | "helmChartInflationGenerator" => !is_empty(v),
        _ => v.as_str() != Some(""),
    });
    if sets_something {
        return Ok(());
    }
    Err(Error::field(
        file,
        "kustomization",
        "kustomization.yaml is empty",
    ))
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// A remote resource (URL or Git repository) rather than a local path.
pub fn is_remote(entry: &str) -> bool {
    [
        "http://",
        "https://",
        "git@",
        "git::",
        "ssh://",
        "github.com/",
        "gitlab.com/",
        "bitbucket.org/",
    ]
    .iter()
    .any(|p| entry.starts_with(p))
}
