//! Generated objects joining a build: added, or merged into / replacing
//! the object of the same id, following their `behavior`.

use std::path::Path;

use serde_json::{Map, Value};

use super::resource::{set_at, Behavior, Resource};
use super::Error;

/// Adds a generated object, or merges it into / replaces the object of
/// the same id, following its `behavior`.
pub fn absorb(
    resources: &mut Vec<Resource>,
    mut r: Resource,
    file: &Path,
    field: &str,
) -> Result<(), Error> {
    let id = r.id();
    let matches: Vec<usize> = resources
        .iter()
        .enumerate()
        .filter(|(_, old)| old.all_ids().iter().any(|known| known.same_object(&id)))
        .map(|(i, _)| i)
        .collect();
    match (matches.as_slice(), r.behavior) {
        ([], Behavior::Create) => {
            resources.push(r);
            Ok(())
        }
        ([], _) => Err(Error::field(
            file,
            field,
            format!("id {id} does not exist; cannot merge or replace"),
        )),
        ([_], Behavior::Create) => Err(Error::DuplicateId {
            file: file.to_path_buf(),
            field: field.to_string(),
            id: format!("{id} (behavior must be merge or replace)"),
        }),
        ([i], behavior) => {
            let old = &resources[*i];
            merge_meta(&mut r, old);
            if behavior == Behavior::Merge {
                for key in ["data", "binaryData"] {
                    merge_map_field(&mut r.value, &old.value, key);
                }
            }
            r.behavior = Behavior::Create;
            resources[*i] = r;
            Ok(())
        }
        _ => Err(Error::field(
            file,
            field,
            format!("found multiple objects that could accept merge of {id}"),
        )),
    }
}

fn merge_meta(r: &mut Resource, old: &Resource) {
    for key in ["labels", "annotations"] {
        let mut merged = old
            .value
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if let Some(new) = r
            .value
            .pointer(&format!("/metadata/{key}"))
            .and_then(Value::as_object)
        {
            merged.extend(new.clone());
        }
        if !merged.is_empty() {
            set_at(&mut r.value, &["metadata", key], Value::Object(merged));
        }
    }
    let name = old.name().to_string();
    set_at(&mut r.value, &["metadata", "name"], Value::String(name));
    match old.namespace() {
        Some(ns) => set_at(
            &mut r.value,
            &["metadata", "namespace"],
            Value::String(ns.to_string()),
        ),
        None => {
            if let Some(Value::Object(meta)) = r.value.get_mut("metadata") {
                meta.remove("namespace");
            }
        }
    }
    if r.behavior == Behavior::Merge {
        r.origin = old.origin.clone();
    }
    // The hash flag survives only if both the old and the new object have it.
    r.needs_hash = old.needs_hash && r.needs_hash;
    r.previous_ids = old.previous_ids.clone();
    r.prefixes = old.prefixes.clone();
    r.suffixes = old.suffixes.clone();
}

fn merge_map_field(new: &mut Value, old: &Value, key: &str) {
    let mut merged: Map<String, Value> = old
        .get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(entries) = new.get(key).and_then(Value::as_object) {
        merged.extend(entries.clone());
    }
    if let Value::Object(map) = new {
        if !merged.is_empty() {
            map.insert(key.to_string(), Value::Object(merged));
        }
    }
}
