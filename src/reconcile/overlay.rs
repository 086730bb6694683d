//! A kustomization's Flux fields turned into what the engines take: the
//! build's overrides (`target_namespace`, `name_prefix`, `name_suffix`,
//! `patches`, `images`, `components`), `common_metadata` set on every
//! built object, and drift ignore rules compiled for `apply` (also for Helm
//! releases' `drift_detection`, which has the same shape). A Helm
//! release's `post_renderers` are the same patches and images, built over
//! the rendered manifest ([`post_render`]).

use serde_json::{Map, Value};

use crate::apply::{self, DriftIgnore, IgnoreError};
use crate::config::{self, DriftIgnoreRule, Kustomization, ObjectSelector, Overlay, PostRenderer};
use crate::kustomize::{self, FluxOverrides};

/// What `k` merges into the kustomization at its path, as Flux does.
pub fn flux_overrides(k: &Kustomization) -> FluxOverrides {
    let overlay = &k.overlay;
    FluxOverrides {
        namespace: k.target_namespace.clone(),
        name_prefix: overlay.name_prefix.clone(),
        name_suffix: overlay.name_suffix.clone(),
        patches: overlay.patches.iter().map(patch).collect(),
        images: overlay.images.iter().map(image).collect(),
        components: overlay
            .components
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect(),
    }
}

/// Runs `renderers` in order over a rendered Helm manifest, each a
/// kustomize build of it with its patches and images, as Flux's kustomize
/// post-renderer does. The error names the post-renderer.
pub fn post_render(renderers: &[PostRenderer], manifest: &str) -> Result<String, String> {
    let mut manifest = manifest.to_string();
    for (index, renderer) in renderers.iter().enumerate() {
        manifest = post_render_once(renderer, &manifest)
            .map_err(|err| format!("post_renderers[{index}]: {err}"))?;
    }
    Ok(manifest)
}

fn post_render_once(renderer: &PostRenderer, manifest: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().map_err(|err| format!("a build directory: {err}"))?;
    std::fs::write(dir.path().join(RENDERED_FILE), manifest)
        .map_err(|err| format!("writing the rendered manifest: {err}"))?;
    let overrides = FluxOverrides {
        patches: renderer.patches.iter().map(patch).collect(),
        images: renderer.images.iter().map(image).collect(),
        ..FluxOverrides::default()
    };
    let built = kustomize::build_flux(dir.path(), &overrides).map_err(|err| err.to_string())?;
    Ok(kustomize::to_yaml(&built))
}

/// The file the rendered manifest is built from (a name errors show).
const RENDERED_FILE: &str = "helm-rendered.yaml";

fn patch(p: &config::Patch) -> (String, Option<kustomize::Selector>) {
    (p.patch.clone(), p.target.as_ref().map(selector))
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
    fn post_renderers_patch_and_retag_the_rendered_manifest_in_order() {
        let manifest = concat!(
            "---\n# Source: web/templates/deployment.yaml\n",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    postrenderer.helm.sh/postrender-filename: web/templates/deployment.yaml\n",
            "spec:\n  template:\n    spec:\n      containers:\n      - name: web\n        image: registry.invalid/web:1.0\n",
        );
        let renderers = [
            PostRenderer {
                patches: vec![config::Patch {
                    patch: "- op: add\n  path: /metadata/labels\n  value: {patched: \"yes\"}\n"
                        .into(),
                    target: Some(ObjectSelector {
                        kind: Some("Deployment".into()),
                        ..ObjectSelector::default()
                    }),
                }],
                images: Vec::new(),
            },
            PostRenderer {
                patches: Vec::new(),
                images: vec![config::Image {
                    name: "registry.invalid/web".into(),
                    new_name: None,
                    new_tag: Some("2.0".into()),
                    digest: None,
                }],
            },
        ];
        let rendered = post_render(&renderers, manifest).unwrap_or_else(|err| panic!("{err}"));
        let object = kustomize::parse_object(&rendered).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(object["metadata"]["labels"]["patched"], "yes", "{rendered}");
        assert_eq!(
            object["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.invalid/web:2.0"
        );
        assert_eq!(
            object["metadata"]["annotations"]["postrenderer.helm.sh/postrender-filename"],
            "web/templates/deployment.yaml",
            "Helm finds its files again by this annotation"
        );
        let broken = [PostRenderer {
            patches: vec![config::Patch {
                patch: "- op: replace\n  path: /spec/nothing/here\n  value: 1\n".into(),
                target: None,
            }],
            images: Vec::new(),
        }];
        let err = post_render(&broken, manifest).err().unwrap_or_default();
        assert!(err.starts_with("post_renderers[0]: "), "{err}");
    }

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
