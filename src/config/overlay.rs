//! Flux's Kustomization fields that change the build: `name_prefix`,
//! `name_suffix`, `patches`, `images`, `components` (merged into the
//! kustomization at the path, as Flux's generator does) and
//! `common_metadata` (set on every object after the build).

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;

use super::drift::ObjectSelector;
use super::raw::{RawImage, RawKustomization, RawPatch};
use super::validate::Checker;

/// A patch (strategic merge or JSON 6902, told apart as kustomize does)
/// and the objects it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub patch: String,
    pub target: Option<ObjectSelector>,
}

/// kustomize's `images` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub name: String,
    pub new_name: Option<String>,
    pub new_tag: Option<String>,
    pub digest: Option<String>,
}

/// Everything Flux adds to the build, all empty by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overlay {
    pub name_prefix: Option<String>,
    pub name_suffix: Option<String>,
    pub patches: Vec<Patch>,
    pub images: Vec<Image>,
    /// Relative to the kustomization's path, as written (`../components/x`);
    /// the build keeps them inside the artifact.
    pub components: Vec<PathBuf>,
    pub common_labels: BTreeMap<String, String>,
    pub common_annotations: BTreeMap<String, String>,
}

impl Checker<'_> {
    /// `None` on a problem.
    pub(super) fn overlay(&mut self, raw: &RawKustomization, key: &str) -> Option<Overlay> {
        let before = self.problems.len();
        let patches = self.patches(raw.patches.as_deref(), key);
        let images = self.images(raw.images.as_deref(), key);
        let mut components = Vec::new();
        for (index, component) in raw.components.iter().flatten().enumerate() {
            let path = PathBuf::from(component.get_ref());
            if path.is_absolute()
                || component.get_ref().contains("://")
                || path.as_os_str().is_empty()
            {
                self.problem(
                    component.span(),
                    &format!("{key}.components[{index}]"),
                    format!(
                        "{:?} is not a relative path to a component",
                        component.get_ref()
                    ),
                );
            }
            components.push(path);
        }
        let (common_labels, common_annotations) = raw
            .common_metadata
            .as_ref()
            .map(|m| (m.get_ref().labels.clone(), m.get_ref().annotations.clone()))
            .unwrap_or_default();
        let text = |v: &Option<toml::Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
        (self.problems.len() == before).then(|| Overlay {
            name_prefix: text(&raw.name_prefix),
            name_suffix: text(&raw.name_suffix),
            patches,
            images,
            components,
            common_labels,
            common_annotations,
        })
    }

    /// `patches = [{ patch, target }]` under `key`; problems are recorded.
    pub(super) fn patches(&mut self, raw: Option<&[Spanned<RawPatch>]>, key: &str) -> Vec<Patch> {
        let mut patches = Vec::new();
        for (index, patch) in raw.into_iter().flatten().enumerate() {
            let patch_key = format!("{key}.patches[{index}]");
            if patch.get_ref().patch.trim().is_empty() {
                self.problem(
                    patch.span(),
                    &format!("{patch_key}.patch"),
                    "the patch is empty",
                );
            }
            let target = patch.get_ref().target.as_ref().map(|t| {
                self.object_selector(Some(t), &format!("{patch_key}.target"), patch.span())
            });
            patches.push(Patch {
                patch: patch.get_ref().patch.clone(),
                target,
            });
        }
        patches
    }

    /// `images = [{ name, new_name, new_tag, digest }]` under `key`.
    pub(super) fn images(&mut self, raw: Option<&[Spanned<RawImage>]>, key: &str) -> Vec<Image> {
        let mut images = Vec::new();
        for (index, image) in raw.into_iter().flatten().enumerate() {
            let value = image.get_ref();
            if value.name.is_empty() {
                self.problem(
                    image.span(),
                    &format!("{key}.images[{index}].name"),
                    "name the image to change",
                );
            }
            images.push(Image {
                name: value.name.clone(),
                new_name: value.new_name.clone(),
                new_tag: value.new_tag.clone(),
                digest: value.digest.clone(),
            });
        }
        images
    }
}
