//! `generators` and `transformers` entries that configure kustomize's
//! built-in plugins (`apiVersion: builtin`): the same generators and
//! transformers as the kustomization fields, with explicit settings and
//! field specs. Configurations come inline, from files, or from
//! kustomization directories whose output is the configurations. Other
//! plugins (exec, Go, KRM functions) are refused.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::config::Config;
use super::fieldspec::{self, FieldSpec};
use super::kustomization::{GeneratorArgs, Image, Patch, Replica, Selector};
use super::resource::{Origin, Resource};
use super::{generate, patch, replace, transform, Error};

fn kind_of(config: &Value, file: &Path, field: &str) -> Result<String, Error> {
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = config
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if api_version != "builtin" {
        return Err(Error::Unsupported {
            file: file.to_path_buf(),
            field: field.into(),
            reason: format!("plugin {api_version}/{kind}: only kustomize's built-in plugins (apiVersion: builtin) are supported"),
        });
    }
    Ok(kind)
}

/// The settings of a plugin config: everything but its type and metadata.
fn settings<T: for<'de> Deserialize<'de>>(
    config: &Value,
    file: &Path,
    field: &str,
) -> Result<T, Error> {
    let mut map: Map<String, Value> = config.as_object().cloned().unwrap_or_default();
    for key in ["apiVersion", "kind", "metadata"] {
        map.remove(key);
    }
    serde_json::from_value(Value::Object(map)).map_err(|e| Error::field(file, field, e.to_string()))
}

/// `configs` pairs each configuration with the file it was written in.
pub fn generate(
    configs: &[(Value, std::path::PathBuf)],
    dir: &Path,
    file: &Path,
) -> Result<Vec<Resource>, Error> {
    let field = "generators";
    let mut generated = Vec::new();
    for (config, source) in configs {
        let plugin_kind = kind_of(config, file, field)?;
        let origin = Origin::Generated {
            file: source.clone(),
            kind: plugin_kind.clone(),
            name: config
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(String::from),
            namespace: None,
        };
        let kind = match plugin_kind.as_str() {
            "IAMPolicyGenerator" => {
                let mut r = iam_service_account(config, file)?;
                r.origin = Some(origin);
                generated.push(r);
                continue;
            }
            "ConfigMapGenerator" => generate::Kind::ConfigMap,
            "SecretGenerator" => generate::Kind::Secret,
            other => {
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: field.into(),
                    reason: format!("built-in generator '{other}'"),
                })
            }
        };
        const ARGS: &[&str] = &[
            "name",
            "namespace",
            "behavior",
            "literals",
            "files",
            "envs",
            "env",
            "options",
            "type",
        ];
        let mut args: Map<String, Value> = config
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(k, _)| ARGS.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let metadata = config.get("metadata").cloned().unwrap_or(Value::Null);
        // The generator's own `name`/`namespace` win over the plugin's metadata.
        for key in ["name", "namespace"] {
            if let (false, Some(v)) = (args.contains_key(key), metadata.get(key)) {
                args.insert(key.into(), v.clone());
            }
        }
        let args: GeneratorArgs = serde_json::from_value(Value::Object(args))
            .map_err(|e| Error::field(file, field, e.to_string()))?;
        let mut r = generate::generate(kind, &args, None, dir, file)?;
        r.origin = Some(origin);
        generated.push(r);
    }
    Ok(generated)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IamPolicy {
    cloud: String,
    kubernetes_service: NamespacedName,
    service_account: GcpServiceAccount,
}

#[derive(Deserialize)]
struct NamespacedName {
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GcpServiceAccount {
    name: String,
    project_id: String,
}

/// `IAMPolicyGenerator` (GKE workload identity): a ServiceAccount bound to
/// a Google service account.
fn iam_service_account(config: &Value, file: &Path) -> Result<Resource, Error> {
    let s: IamPolicy = settings(config, file, "generators")?;
    if s.cloud != "gke" {
        return Err(Error::field(
            file,
            "generators",
            format!("IAMPolicyGenerator: unsupported cloud '{}'", s.cloud),
        ));
    }
    let mut metadata = serde_json::json!({
        "name": s.kubernetes_service.name,
        "annotations": {
            "iam.gke.io/gcp-service-account":
                format!("{}@{}.iam.gserviceaccount.com", s.service_account.name, s.service_account.project_id),
        },
    });
    if !s.kubernetes_service.namespace.is_empty() {
        metadata["namespace"] = Value::String(s.kubernetes_service.namespace);
    }
    Ok(Resource::new(
        serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata}),
    ))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PrefixSuffix {
    #[serde(default)]
    prefix: String,
    #[serde(default)]
    suffix: String,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Labels {
    #[serde(default, alias = "annotations")]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ImageTag {
    image_tag: Image,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicaCount {
    replica: Replica,
    #[serde(default)]
    field_specs: Vec<FieldSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Json6902 {
    target: Selector,
    path: Option<String>,
    json_op: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StrategicMerge {
    #[serde(default)]
    paths: Vec<String>,
    patches: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Replacements {
    #[serde(default)]
    replacements: Vec<Value>,
}

pub fn transform(
    resources: &mut Vec<Resource>,
    configs: &[(Value, std::path::PathBuf)],
    dir: &Path,
    file: &Path,
    config: &Config,
) -> Result<(), Error> {
    let field = "transformers";
    for (plugin, source) in configs {
        let kind = kind_of(plugin, file, field)?;
        let meta = |key: &str| {
            plugin
                .pointer(&format!("/metadata/{key}"))
                .and_then(Value::as_str)
                .map(String::from)
        };
        let record = Origin::Generated {
            file: source.clone(),
            kind: kind.clone(),
            name: meta("name"),
            namespace: meta("namespace"),
        };
        match kind.as_str() {
            "PrefixSuffixTransformer" | "PrefixTransformer" | "SuffixTransformer" => {
                let s: PrefixSuffix = settings(plugin, file, field)?;
                let specs = if s.field_specs.is_empty() {
                    fieldspec::parse_table("|||metadata/name|false")
                } else {
                    s.field_specs
                };
                transform::affix_fields(resources, &s.prefix, &s.suffix, &specs);
            }
            "LabelTransformer" | "AnnotationsTransformer" => {
                let s: Labels = settings(plugin, file, field)?;
                for r in resources.iter_mut() {
                    fieldspec::set_map_entries(&mut r.value, &s.field_specs, &s.labels)
                        .map_err(|m| Error::field(file, field, m))?;
                }
            }
            "ImageTagTransformer" => {
                let s: ImageTag = settings(plugin, file, field)?;
                let mut own = config.clone();
                own.images = s.field_specs;
                transform::images(resources, std::slice::from_ref(&s.image_tag), &own);
            }
            "ReplicaCountTransformer" => {
                let s: ReplicaCount = settings(plugin, file, field)?;
                let mut own = config.clone();
                own.replicas = s.field_specs;
                transform::replicas(resources, std::slice::from_ref(&s.replica), &own);
            }
            "NamespaceTransformer" => {
                let ns = plugin
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !ns.is_empty() {
                    transform::namespace(resources, ns, &[]);
                }
            }
            "PatchTransformer" => {
                let entry: Patch = settings(plugin, file, field)?;
                patch::patches(resources, &[entry], dir, file, field)?;
            }
            "PatchJson6902Transformer" => {
                let s: Json6902 = settings(plugin, file, field)?;
                let entry = Patch {
                    path: s.path,
                    patch: s.json_op,
                    target: Some(s.target),
                    options: None,
                };
                patch::patches(resources, &[entry], dir, file, field)?;
            }
            "PatchStrategicMergeTransformer" => {
                let s: StrategicMerge = settings(plugin, file, field)?;
                let mut entries = s.paths;
                entries.extend(s.patches);
                patch::strategic_merge(resources, &entries, dir, file)?;
            }
            "ReplacementTransformer" => {
                let s: Replacements = settings(plugin, file, field)?;
                replace::replacements(resources, &s.replacements, dir, file)?;
            }
            other => {
                return Err(Error::Unsupported {
                    file: file.to_path_buf(),
                    field: field.into(),
                    reason: format!("built-in transformer '{other}'"),
                })
            }
        }
        for r in resources.iter_mut() {
            r.transformations.push(record.clone());
        }
    }
    Ok(())
}
