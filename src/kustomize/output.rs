//! What happens to the objects just before output: `local-config`
//! objects leave, empty annotations go, and the top kustomization's
//! `buildMetadata` adds origin annotations and the managed-by label.

use std::path::Path;

use serde_json::Value;

use super::resource::{set_at, Origin, Resource};

/// kustomize rewrites every object's annotations while building (its
/// build bookkeeping lives there), and writing an empty set removes the
/// field: `annotations: {}` or `annotations:` never reach the output.
/// Empty labels stay.
pub fn drop_empty_annotations(resources: &mut [Resource]) {
    for r in resources {
        if let Some(Value::Object(metadata)) = r.value.get_mut("metadata") {
            let empty = match metadata.get("annotations") {
                Some(Value::Null) => true,
                Some(Value::Object(a)) => a.is_empty(),
                _ => false,
            };
            if empty {
                metadata.remove("annotations");
            }
        }
    }
}

/// `buildMetadata` of the top kustomization: origin annotations and the
/// managed-by label.
pub fn build_metadata(resources: &mut [Resource], options: &[String], dir: &Path) {
    let has = |o: &str| options.iter().any(|x| x == o);
    for r in resources.iter_mut() {
        if has("managedByLabel") {
            set_at(
                &mut r.value,
                &["metadata", "labels", "app.kubernetes.io/managed-by"],
                // What kubectl's embedded kustomize writes (it has no
                // release version of its own).
                Value::String("kustomize-(devel)".into()),
            );
        }
        if has("transformerAnnotations") && !r.transformations.is_empty() {
            let text: String = r
                .transformations
                .iter()
                .map(|t| {
                    let item = origin_text(t, dir);
                    let mut lines = item.lines();
                    let first = lines.next().unwrap_or_default();
                    let rest: String = lines.map(|l| format!("  {l}\n")).collect();
                    format!("- {first}\n{rest}")
                })
                .collect();
            set_at(
                &mut r.value,
                &[
                    "metadata",
                    "annotations",
                    "alpha.config.kubernetes.io/transformations",
                ],
                Value::String(text),
            );
        }
        if has("originAnnotations") {
            if let Some(text) = r.origin.as_ref().map(|o| origin_text(o, dir)) {
                set_at(
                    &mut r.value,
                    &["metadata", "annotations", "config.kubernetes.io/origin"],
                    Value::String(text),
                );
            }
        }
    }
}

fn origin_text(origin: &Origin, dir: &Path) -> String {
    match origin {
        Origin::File(path) => format!("path: {}\n", relative(dir, path)),
        Origin::Generated {
            file,
            kind,
            name,
            namespace,
        } => {
            let mut text = format!(
                "configuredIn: {}\nconfiguredBy:\n  apiVersion: builtin\n  kind: {kind}\n",
                relative(dir, file)
            );
            if let Some(name) = name {
                text.push_str(&format!("  name: {name}\n"));
            }
            if let Some(namespace) = namespace {
                text.push_str(&format!("  namespace: {namespace}\n"));
            }
            text
        }
    }
}

/// `to` relative to the directory `from`, with `..` where needed.
fn relative(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to_parts: Vec<_> = to.components().collect();
    let common = from
        .iter()
        .zip(&to_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<String> = vec!["..".to_string(); from.len() - common];
    parts.extend(
        to_parts[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

/// Objects annotated `config.kubernetes.io/local-config: "true"` take part
/// in the build (as replacement sources, say) but are not output.
pub fn is_local_config(r: &Resource) -> bool {
    r.annotations()
        .and_then(|a| a.get("config.kubernetes.io/local-config"))
        .and_then(Value::as_str)
        == Some("true")
}
