//! The built-in transformers a kustomization configures with plain fields:
//! `namespace`, `namePrefix` / `nameSuffix`, `commonLabels` / `labels`,
//! `commonAnnotations`, `images` and `replicas`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::config::Config;
use super::fieldspec::{self, parse_table, visit, FieldSpec};
use super::kustomization::{Image, Label, Replica};
use super::resource::Resource;
use super::schema::is_cluster_scoped;
use super::Error;

/// Sets the namespace of every namespaced object, of `v1` Namespaces'
/// names, and of RoleBinding subjects named `default`.
pub fn namespace(resources: &mut [Resource], namespace: &str, extra: &[FieldSpec]) {
    for r in resources.iter_mut() {
        r.remember_id();
        let id = r.id();
        for spec in extra.iter().filter(|s| s.matches(&id)) {
            let _ = visit(&mut r.value, &spec.path, spec.create, &mut |node| {
                if node.is_null() || node.is_string() {
                    *node = Value::String(namespace.into());
                }
                Ok(())
            });
        }
        let id = r.id();
        if !is_cluster_scoped(&id.group, &id.version, &id.kind) {
            r.set_namespace(namespace);
        }
        if id.kind == "Namespace" && r.api_version() == "v1" {
            r.set_name(namespace);
        }
        if id.group == "apiregistration.k8s.io" && id.kind == "APIService" {
            super::resource::set_at(
                &mut r.value,
                &["spec", "service", "namespace"],
                Value::String(namespace.into()),
            );
        }
        if id.group == "apiextensions.k8s.io" && id.kind == "CustomResourceDefinition" {
            let path = "spec/conversion/webhook/clientConfig/service/namespace";
            let _ = visit(&mut r.value, path, false, &mut |node| {
                *node = Value::String(namespace.into());
                Ok(())
            });
        }
        if id.kind == "RoleBinding" || id.kind == "ClusterRoleBinding" {
            if let Some(Value::Array(subjects)) = r.value.get_mut("subjects") {
                for subject in subjects
                    .iter_mut()
                    .filter(|s| s.get("name") == Some(&Value::from("default")))
                {
                    if let Value::Object(map) = subject {
                        map.insert("namespace".into(), Value::String(namespace.into()));
                    }
                }
            }
        }
    }
}

/// Kinds whose names prefixes and suffixes leave alone.
fn keeps_name(r: &Resource) -> bool {
    let id = r.id();
    matches!(
        (id.group.as_str(), id.kind.as_str()),
        ("apiextensions.k8s.io", "CustomResourceDefinition")
            | ("apiregistration.k8s.io", "APIService")
            | ("", "Namespace")
    )
}

/// Whether `namePrefix`/`nameSuffix` renames `r`: every object, unless
/// configurations name the kinds whose `metadata/name` they change.
fn renamed(r: &Resource, names: &[FieldSpec]) -> bool {
    if keeps_name(r) {
        return false;
    }
    let id = r.original_id();
    names.is_empty() || names.iter().any(|s| s.matches(&id))
}

pub fn prefix(resources: &mut [Resource], prefix: &str, extra: &[FieldSpec], names: &[FieldSpec]) {
    affix_other_fields(resources, prefix, "", extra);
    for r in resources.iter_mut().filter(|r| renamed(r, names)) {
        r.prefixes.push(prefix.to_string());
        r.remember_id();
        let name = format!("{prefix}{}", r.name());
        r.set_name(&name);
    }
}

pub fn suffix(resources: &mut [Resource], suffix: &str, extra: &[FieldSpec], names: &[FieldSpec]) {
    affix_other_fields(resources, "", suffix, extra);
    for r in resources.iter_mut().filter(|r| renamed(r, names)) {
        r.suffixes.push(suffix.to_string());
        r.remember_id();
        let name = format!("{}{suffix}", r.name());
        r.set_name(&name);
    }
}

/// `namePrefix`/`nameSuffix` on fields a `configurations` file adds.
fn affix_other_fields(resources: &mut [Resource], prefix: &str, suffix: &str, specs: &[FieldSpec]) {
    for r in resources.iter_mut() {
        let id = r.original_id();
        for spec in specs.iter().filter(|s| s.matches(&id)) {
            let _ = visit(&mut r.value, &spec.path, spec.create, &mut |node| {
                if let Value::String(s) = node {
                    *s = format!("{prefix}{s}{suffix}");
                }
                Ok(())
            });
        }
    }
}

/// A prefix and suffix on the given fields (a `PrefixSuffixTransformer`
/// with field specs); on `metadata/name` it renames like `namePrefix`.
pub fn affix_fields(resources: &mut [Resource], prefix: &str, suffix: &str, specs: &[FieldSpec]) {
    for r in resources.iter_mut().filter(|r| !keeps_name(r)) {
        let original = r.original_id();
        for spec in specs.iter().filter(|s| s.matches(&original)) {
            if spec.path == "metadata/name" {
                if !prefix.is_empty() {
                    r.prefixes.push(prefix.to_string());
                }
                if !suffix.is_empty() {
                    r.suffixes.push(suffix.to_string());
                }
                r.remember_id();
                let name = format!("{prefix}{}{suffix}", r.name());
                r.set_name(&name);
                continue;
            }
            let _ = visit(&mut r.value, &spec.path, spec.create, &mut |node| {
                if let Value::String(s) = node {
                    *s = format!("{prefix}{s}{suffix}");
                }
                Ok(())
            });
        }
    }
}

pub fn labels(
    resources: &mut [Resource],
    common: &BTreeMap<String, String>,
    entries: &[Label],
    config: &Config,
    file: &Path,
) -> Result<(), Error> {
    if !common.is_empty() {
        set_everywhere(
            resources,
            &config.common_labels,
            common,
            file,
            "commonLabels",
        )?;
    }
    for entry in entries {
        let mut specs: Vec<FieldSpec> = entry
            .fields
            .iter()
            .map(|f| FieldSpec {
                group: f.group.clone(),
                version: f.version.clone(),
                kind: f.kind.clone(),
                path: f.path.clone(),
                create: f.create,
            })
            .collect();
        if entry.include_selectors {
            specs.extend(config.common_labels.iter().cloned());
        } else {
            specs.extend(parse_table("|||metadata/labels|true"));
            if entry.include_templates {
                specs.extend(config.template_labels.iter().cloned());
            }
        }
        specs.extend(config.labels.iter().cloned());
        set_everywhere(resources, &specs, &entry.pairs, file, "labels")?;
    }
    Ok(())
}

pub fn annotations(
    resources: &mut [Resource],
    common: &BTreeMap<String, String>,
    config: &Config,
    file: &Path,
) -> Result<(), Error> {
    if common.is_empty() {
        return Ok(());
    }
    set_everywhere(
        resources,
        &config.common_annotations,
        common,
        file,
        "commonAnnotations",
    )
}

fn set_everywhere(
    resources: &mut [Resource],
    specs: &[FieldSpec],
    pairs: &BTreeMap<String, String>,
    file: &Path,
    field: &str,
) -> Result<(), Error> {
    for r in resources.iter_mut() {
        fieldspec::set_map_entries(&mut r.value, specs, pairs)
            .map_err(|m| Error::field(file, field, format!("{}: {m}", r.id())))?;
    }
    Ok(())
}

pub fn images(resources: &mut [Resource], images: &[Image], config: &Config) {
    let specs = &config.images;
    for r in resources.iter_mut() {
        for image in images {
            update_containers_anywhere(&mut r.value, image);
            let id = r.id();
            for spec in specs.iter().filter(|s| s.matches(&id)) {
                let _ = visit(&mut r.value, &spec.path, false, &mut |node| {
                    if let Value::String(s) = node {
                        if let Some(updated) = update_image(s, image) {
                            *s = updated;
                        }
                    }
                    Ok(())
                });
            }
        }
    }
}

/// kustomize also updates `image` in any `containers` / `initContainers`
/// list, wherever it sits (custom resources embedding pod specs).
fn update_containers_anywhere(node: &mut Value, image: &Image) {
    match node {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "containers" || key == "initContainers" {
                    if let Value::Array(items) = child {
                        for item in items.iter_mut() {
                            if let Some(Value::String(s)) = item.get_mut("image") {
                                if let Some(updated) = update_image(s, image) {
                                    *s = updated;
                                }
                            }
                        }
                    }
                }
                update_containers_anywhere(child, image);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|i| update_containers_anywhere(i, image)),
        _ => {}
    }
}

/// Splits `registry/name:tag@digest` into name, tag and digest.
fn split_image(image: &str) -> (&str, &str, &str) {
    let (rest, digest) = image.split_once('@').unwrap_or((image, ""));
    let slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
    match rest[slash..].find(':') {
        Some(colon) => (&rest[..slash + colon], &rest[slash + colon + 1..], digest),
        None => (rest, "", digest),
    }
}

fn update_image(current: &str, image: &Image) -> Option<String> {
    let (name, tag, digest) = split_image(current);
    if name != image.name {
        return None;
    }
    let mut name = name.to_string();
    let (mut tag, mut digest) = (tag.to_string(), digest.to_string());
    if !image.new_name.is_empty() {
        name = image.new_name.clone();
    }
    if !image.new_tag.is_empty() && !image.digest.is_empty() {
        tag = image.new_tag.clone();
        digest = image.digest.clone();
    } else if !image.new_tag.is_empty() {
        tag = image.new_tag.clone();
        digest.clear();
    } else if !image.digest.is_empty() {
        digest = image.digest.clone();
        tag.clear();
    }
    if !image.tag_suffix.is_empty() {
        tag.push_str(&image.tag_suffix);
    }
    if !tag.is_empty() {
        name = format!("{name}:{tag}");
    }
    if !digest.is_empty() {
        name = format!("{name}@{digest}");
    }
    Some(name)
}

pub fn replicas(resources: &mut [Resource], replicas: &[Replica], config: &Config) {
    let specs = &config.replicas;
    for replica in replicas {
        for r in resources.iter_mut() {
            if !r.all_ids().iter().any(|id| id.name == replica.name) {
                continue;
            }
            let id = r.id();
            for spec in specs.iter().filter(|s| s.matches(&id)) {
                let _ = visit(&mut r.value, &spec.path, spec.create, &mut |node| {
                    *node = Value::from(replica.count);
                    Ok(())
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_after_the_registry_port() {
        assert_eq!(
            split_image("localhost:5000/nginx:1.7"),
            ("localhost:5000/nginx", "1.7", "")
        );
        assert_eq!(split_image("nginx@sha256:abc"), ("nginx", "", "sha256:abc"));
        assert_eq!(split_image("nginx"), ("nginx", "", ""));
    }

    #[test]
    fn a_new_tag_replaces_tag_and_digest() {
        let image = Image {
            name: "nginx".into(),
            new_tag: "2".into(),
            ..Default::default()
        };
        assert_eq!(
            update_image("nginx@sha256:abc", &image).as_deref(),
            Some("nginx:2")
        );
        assert_eq!(update_image("other:1", &image), None);
    }
}
