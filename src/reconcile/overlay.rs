//! A kustomization's Flux fields turned into what the engines take: the
//! build's overrides (`target_namespace`, `name_prefix`, `name_suffix`,
//! `patches`, `images`, `components`), `common_metadata` set on every
//! built object, and drift ignore rules compiled for `apply` (also for Helm
//! releases' `drift_detection`, which has the same shape).

use serde_json::{Map, Value};

use crate::apply::{self, DriftIgnore, IgnoreError};
use crate::config::{self, DriftIgnoreRule, Kustomization, ObjectSelector, Overlay};
use crate::kustomize::{self, FluxOverrides};

/// What `k` merges into the kustomization at its path, as Flux does.
pub fn flux_overrides(k: &Kustomization) -> FluxOverrides {
    let overlay = &k.overlay;
    FluxOverrides {
        namespace: k.target_namespace.clone(),
        name_prefix: overlay.name_prefix.clone(),
        name_suffix: overlay.name_suffix.clone(),
        patches: overlay
            .patches
            .iter()
            .map(|p| (p.patch.clone(), p.target.as_ref().map(selector)))
            .collect(),
        images: overlay.images.iter().map(image).collect(),
        components: overlay
            .components
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    }
}

fn text(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

fn selector(s: &ObjectSelector) -> kustomize::Selector {
    kustomize::Selector {
        group: text(&s.group),
        version: text(&s.version),
        kind: text(&s.kind),
        name: text(&s.name),
        namespace: text(&s.namespace),
        label_selector: text(&s.label_selector),
        annotation_selector: text(&s.annotation_selector),
    }
}

fn image(i: &config::Image) -> kustomize::Image {
    kustomize::Image {
        name: i.name.clone(),
        new_name: text(&i.new_name),
        new_tag: text(&i.new_tag),
        digest: text(&i.digest),
        ..kustomize::Image::default()
    }
}

/// Sets `common_metadata`'s labels and annotations on every object,
/// replacing values of the same keys (Flux's `commonMetadata`).
pub fn set_common_metadata(objects: &mut [Value], overlay: &Overlay) {
    let fields = [
        ("labels", &overlay.common_labels),
        ("annotations", &overlay.common_annotations),
    ];
    for object in objects.iter_mut() {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        for (field, values) in fields.iter().filter(|(_, v)| !v.is_empty()) {
            let entry = metadata
                .entry(*field)
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(map) = entry.as_object_mut() {
                for (key, value) in values.iter() {
                    map.insert(key.clone(), Value::String(value.clone()));
                }
            }
        }
    }
}

/// Drift ignore rules as `apply` matches them.
///
/// # Errors
/// A rule the config validation let through but `apply` cannot compile.
pub fn drift_ignore(rules: &[DriftIgnoreRule]) -> Result<DriftIgnore, IgnoreError> {
    let rules: Vec<apply::IgnoreRule> = rules
        .iter()
        .map(|rule| apply::IgnoreRule {
            paths: rule.paths.clone(),
            target: apply::ObjectSelector {
                group: rule.target.group.clone(),
                version: rule.target.version.clone(),
                kind: rule.target.kind.clone(),
                name: rule.target.name.clone(),
                namespace: rule.target.namespace.clone(),
            },
        })
        .collect();
    DriftIgnore::new(&rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn common_metadata_is_set_on_every_object_over_its_own_values() {
        let overlay = Overlay {
            common_labels: [("team".to_string(), "edge".to_string())].into(),
            common_annotations: [("owner".to_string(), "ops".to_string())].into(),
            ..Overlay::default()
        };
        let mut objects = vec![
            json!({"metadata": {"name": "a", "labels": {"team": "web", "app": "a"}}}),
            json!({"metadata": {"name": "b", "annotations": null}}),
        ];
        set_common_metadata(&mut objects, &overlay);
        assert_eq!(
            objects[0]["metadata"]["labels"],
            json!({"team": "edge", "app": "a"})
        );
        assert_eq!(objects[1]["metadata"]["labels"], json!({"team": "edge"}));
        assert_eq!(
            objects[1]["metadata"]["annotations"],
            json!({"owner": "ops"})
        );
    }
}
