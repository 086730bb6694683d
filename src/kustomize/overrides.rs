//! Flux's Kustomization fields that change a build, merged into the
//! kustomization at the path as Flux's generator merges them (fluxcd/pkg
//! `kustomize`): `namespace`, `namePrefix` and `nameSuffix` replace the
//! file's, `patches` and `components` are appended, and an image replaces
//! the file's entry of the same name or is appended.

use super::kustomization::{Image, Kustomization, Patch, Selector};

/// What a configured kustomization adds to the one at its path.
#[derive(Debug, Default, Clone)]
pub struct FluxOverrides {
    pub namespace: Option<String>,
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    /// Inline patches (strategic merge or JSON 6902) and their targets.
    pub patches: Vec<(String, Option<Selector>)>,
    pub images: Vec<Image>,
    /// Paths relative to the kustomization's directory.
    pub components: Vec<String>,
}

impl FluxOverrides {
    pub fn is_empty(&self) -> bool {
        self.namespace.is_none()
            && self.name_prefix.is_none()
            && self.name_suffix.is_none()
            && self.patches.is_empty()
            && self.images.is_empty()
            && self.components.is_empty()
    }

    pub(crate) fn merge_into(&self, k: &mut Kustomization) {
        let replace = |field: &mut Option<String>, value: &Option<String>| {
            if value.is_some() {
                field.clone_from(value);
            }
        };
        replace(&mut k.namespace, &self.namespace);
        replace(&mut k.name_prefix, &self.name_prefix);
        replace(&mut k.name_suffix, &self.name_suffix);
        k.patches
            .extend(self.patches.iter().map(|(patch, target)| Patch {
                path: None,
                patch: Some(patch.clone()),
                target: target.clone(),
                options: None,
            }));
        k.components.extend(self.components.iter().cloned());
        for image in &self.images {
            match k.images.iter_mut().find(|i| i.name == image.name) {
                Some(existing) => *existing = image.clone(),
                None => k.images.push(image.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, tag: &str) -> Image {
        Image {
            name: name.into(),
            new_tag: tag.into(),
            ..Image::default()
        }
    }

    #[test]
    fn scalars_replace_lists_append_and_an_image_replaces_its_namesake() {
        let mut k = Kustomization {
            namespace: Some("file".into()),
            name_prefix: Some("file-".into()),
            components: vec!["a".into()],
            images: vec![image("web", "1"), image("db", "1")],
            ..Kustomization::default()
        };
        let overrides = FluxOverrides {
            namespace: Some("flux".into()),
            patches: vec![("- op: remove\n  path: /x".into(), None)],
            images: vec![image("web", "2"), image("cache", "2")],
            components: vec!["b".into()],
            ..FluxOverrides::default()
        };
        overrides.merge_into(&mut k);
        assert_eq!(k.namespace.as_deref(), Some("flux"));
        assert_eq!(
            k.name_prefix.as_deref(),
            Some("file-"),
            "unset: the file's stays"
        );
        assert_eq!(k.components, vec!["a", "b"]);
        assert_eq!(k.patches.len(), 1);
        let tags: Vec<(&str, &str)> = k
            .images
            .iter()
            .map(|i| (i.name.as_str(), i.new_tag.as_str()))
            .collect();
        assert_eq!(tags, vec![("web", "2"), ("db", "1"), ("cache", "2")]);
    }
}
