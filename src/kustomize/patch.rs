//! `patches`, `patchesStrategicMerge` and `patchesJson6902`: loading the
//! patch text (inline or from a file), choosing the objects it applies to,
//! and applying it.

use std::path::Path;

use serde_json::Value;

use super::kustomization::{Patch, Selector};
use super::resource::{ResId, Resource};
use super::select::Compiled;
use super::{json_patch, smp, yaml, Error};

/// Where a patch came from, for error messages.
struct Origin<'a> {
    file: &'a Path,
    field: &'a str,
}

impl Origin<'_> {
    fn error(&self, target: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Patch {
            file: self.file.to_path_buf(),
            field: self.field.to_string(),
            target: target.into(),
            message: message.into(),
        }
    }
}

fn read_patch_file(
    dir: &Path,
    path: &str,
    origin: &Origin,
) -> Result<(std::path::PathBuf, String), Error> {
    let full = dir.join(path);
    super::build::check_within(dir, &full, origin.file, origin.field)?;
    let text = std::fs::read_to_string(&full).map_err(|source| Error::Read {
        file: origin.file.to_path_buf(),
        field: origin.field.to_string(),
        path: full.clone(),
        source,
    })?;
    Ok((full, text))
}

/// `patchesStrategicMerge`: each entry a file or an inline patch.
pub fn strategic_merge(
    resources: &mut Vec<Resource>,
    entries: &[String],
    dir: &Path,
    file: &Path,
) -> Result<(), Error> {
    let origin = Origin {
        file,
        field: "patchesStrategicMerge",
    };
    for entry in entries {
        let (source, text) =
            if entry.contains('\n') || !dir.join(entry).is_file() && entry.contains(':') {
                (file.to_path_buf(), entry.clone())
            } else {
                read_patch_file(dir, entry, &origin)?
            };
        for patch in yaml::parse_documents(&source, &text)? {
            require_kind_and_name(&patch, &origin)?;
            apply_smp_by_id(resources, &patch, &origin, false)?;
        }
    }
    Ok(())
}

/// `patches` and `patchesJson6902` entries.
pub fn patches(
    resources: &mut Vec<Resource>,
    entries: &[Patch],
    dir: &Path,
    file: &Path,
    field: &str,
) -> Result<(), Error> {
    let origin = Origin { file, field };
    for entry in entries {
        let (source, text) = match (&entry.path, &entry.patch) {
            (Some(_), Some(_)) => {
                return Err(Error::field(
                    file,
                    field,
                    "a patch has both 'path' and 'patch'",
                ))
            }
            (Some(path), None) => read_patch_file(dir, path, &origin)?,
            (None, Some(text)) => (file.to_path_buf(), text.clone()),
            (None, None) => {
                return Err(Error::field(file, field, "a patch needs 'path' or 'patch'"))
            }
        };
        let docs = yaml::parse_documents(&source, &text)?;
        let allow_name_change = entry
            .options
            .as_ref()
            .is_some_and(|o| o.get("allowNameChange") == Some(&true));
        let allow_kind_change = entry
            .options
            .as_ref()
            .is_some_and(|o| o.get("allowKindChange") == Some(&true));
        let keep = Keep {
            name: !allow_name_change,
            kind: !allow_kind_change,
        };
        if docs.len() == 1 && docs[0].is_array() {
            let target = entry
                .target
                .as_ref()
                .ok_or_else(|| Error::field(file, field, "a JSON 6902 patch needs a 'target'"))?;
            apply_json6902(resources, target, &docs[0], &origin)?;
            continue;
        }
        for patch in docs {
            require_kind_and_name(&patch, &origin)?;
            match &entry.target {
                Some(target) => apply_smp_to_selected(resources, target, &patch, &origin, keep)?,
                None => apply_smp_by_id(resources, &patch, &origin, true)?,
            }
        }
    }
    Ok(())
}

/// kustomize reads a strategic merge patch as an object: it needs a kind
/// and a name even when a target selects what it patches.
fn require_kind_and_name(patch: &Value, origin: &Origin) -> Result<(), Error> {
    let has = |path: &str| {
        patch
            .pointer(path)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if has("/kind") && has("/metadata/name") {
        return Ok(());
    }
    Err(Error::field(
        origin.file,
        origin.field,
        "unable to parse a strategic merge or JSON patch: a strategic merge patch needs 'kind' and 'metadata.name'",
    ))
}

#[derive(Clone, Copy)]
struct Keep {
    name: bool,
    kind: bool,
}

fn selected(
    resources: &[Resource],
    target: &Selector,
    origin: &Origin,
) -> Result<Vec<usize>, Error> {
    let compiled = Compiled::new(target).map_err(|m| Error::field(origin.file, origin.field, m))?;
    let mut indexes = Vec::new();
    for (i, r) in resources.iter().enumerate() {
        if compiled
            .matches(r)
            .map_err(|m| Error::field(origin.file, origin.field, m))?
        {
            indexes.push(i);
        }
    }
    Ok(indexes)
}

fn describe(target: &Selector) -> String {
    serde_json::to_string(&serde_json::json!({
        "group": target.group, "version": target.version, "kind": target.kind,
        "name": target.name, "namespace": target.namespace,
        "labelSelector": target.label_selector, "annotationSelector": target.annotation_selector,
    }))
    .unwrap_or_default()
}

fn apply_json6902(
    resources: &mut [Resource],
    target: &Selector,
    ops: &Value,
    origin: &Origin,
) -> Result<(), Error> {
    for i in selected(resources, target, origin)? {
        let r = &mut resources[i];
        let id = r.id();
        let mut patched = r.value.clone();
        json_patch::apply(&mut patched, ops).map_err(|m| origin.error(id.to_string(), m))?;
        // kustomize patches the JSON form, which writes every null out.
        r.empty_nulls.clear();
        if yaml::depth(&patched) > yaml::MAX_DEPTH {
            return Err(origin.error(
                id.to_string(),
                format!("the result nests deeper than {} levels", yaml::MAX_DEPTH),
            ));
        }
        if super::resource::ResId::of(&patched) != id {
            r.remember_id();
        }
        r.value = patched;
    }
    Ok(())
}

fn apply_smp_to_selected(
    resources: &mut Vec<Resource>,
    target: &Selector,
    patch: &Value,
    origin: &Origin,
    keep: Keep,
) -> Result<(), Error> {
    let mut deleted = Vec::new();
    for i in selected(resources, target, origin)? {
        if !merge_into(&mut resources[i], patch, keep) {
            deleted.push(i);
        }
    }
    for i in deleted.into_iter().rev() {
        resources.remove(i);
    }
    let _ = describe;
    Ok(())
}

/// A patch without target names its object: it must match exactly one
/// object by its current or any earlier id.
fn apply_smp_by_id(
    resources: &mut Vec<Resource>,
    patch: &Value,
    origin: &Origin,
    _patches_field: bool,
) -> Result<(), Error> {
    let id = ResId::of(patch);
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.all_ids().iter().any(|known| known.same_object(&id)))
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [i] => {
            if !merge_into(
                &mut resources[*i],
                patch,
                Keep {
                    name: true,
                    kind: true,
                },
            ) {
                resources.remove(*i);
            }
            Ok(())
        }
        [] => Err(Error::TargetNotFound {
            file: origin.file.to_path_buf(),
            field: origin.field.to_string(),
            target: id.to_string(),
        }),
        _ => Err(origin.error(id.to_string(), "matches more than one object")),
    }
}

/// Returns false when the patch deletes the object.
fn merge_into(r: &mut Resource, patch: &Value, keep: Keep) -> bool {
    smp::drop_empty_nulls(&mut r.value, &std::mem::take(&mut r.empty_nulls));
    let before = r.value.clone();
    let Some(mut merged) = smp::apply(&r.value, patch) else {
        return false;
    };
    let restore = |merged: &mut Value, path: &[&str]| {
        if let Some(old) = path.iter().try_fold(&before, |v, k| v.get(k)) {
            super::resource::set_at(merged, path, old.clone());
        }
    };
    if keep.name {
        restore(&mut merged, &["metadata", "name"]);
        restore(&mut merged, &["metadata", "namespace"]);
    }
    if keep.kind {
        restore(&mut merged, &["kind"]);
        restore(&mut merged, &["apiVersion"]);
    }
    if r.value.pointer("/metadata/name") != merged.pointer("/metadata/name") {
        r.remember_id();
    }
    r.value = merged;
    true
}
