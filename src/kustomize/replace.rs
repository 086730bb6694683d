//! `replacements`: copy a field of one object into fields of others.
//! Field paths are dot-separated (`\.` escapes a dot, a leading dot is
//! ignored, `[a.b/c]` names a map key), with `[key=value]` to pick a list
//! element by a field, a number to pick by index, and `*` for every element.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::kustomization::Selector;
use super::resource::Resource;
use super::select::Compiled;
use super::{yaml, Error};

const FIELD: &str = "replacements";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Replacement {
    source: Option<Source>,
    #[serde(default)]
    targets: Vec<Target>,
    path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Source {
    #[serde(flatten)]
    selector: Selector,
    field_path: Option<String>,
    options: Option<Options>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Target {
    select: Selector,
    #[serde(default)]
    reject: Vec<Selector>,
    #[serde(default)]
    field_paths: Vec<String>,
    options: Option<Options>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    delimiter: String,
    #[serde(default)]
    index: i64,
    #[serde(default)]
    create: bool,
}

pub fn replacements(
    resources: &mut [Resource],
    entries: &[Value],
    dir: &Path,
    file: &Path,
) -> Result<(), Error> {
    let err = |m: String| Error::field(file, FIELD, m);
    for entry in entries {
        let replacement: Replacement =
            serde_json::from_value(entry.clone()).map_err(|e| err(e.to_string()))?;
        let list = match &replacement.path {
            Some(path) => {
                let full = dir.join(path);
                let text = std::fs::read_to_string(&full).map_err(|source| Error::Read {
                    file: file.to_path_buf(),
                    field: FIELD.into(),
                    path: full.clone(),
                    source,
                })?;
                let mut list = Vec::new();
                for doc in yaml::parse_documents(&full, &text)? {
                    let items = if let Value::Array(items) = doc {
                        items
                    } else {
                        vec![doc]
                    };
                    for item in items {
                        list.push(
                            serde_json::from_value::<Replacement>(item)
                                .map_err(|e| err(e.to_string()))?,
                        );
                    }
                }
                list
            }
            None => vec![replacement],
        };
        for r in list {
            apply(resources, &r).map_err(err)?;
        }
    }
    Ok(())
}

fn apply(resources: &mut [Resource], r: &Replacement) -> Result<(), String> {
    let source = r.source.as_ref().ok_or("a replacement needs a 'source'")?;
    let value = source_value(resources, source)?;
    for target in &r.targets {
        let mut select = Compiled::new(&target.select)?;
        select.any_id = true;
        let rejects = target
            .reject
            .iter()
            .map(Compiled::new)
            .collect::<Result<Vec<_>, _>>()?;
        let options = target.options.clone().unwrap_or_default();
        for res in resources.iter_mut() {
            if !select.matches(res)? || rejects.iter().any(|rj| rj.matches(res).unwrap_or(false)) {
                continue;
            }
            for path in &target.field_paths {
                let segments = split_path(path);
                let found = set_path(&mut res.value, &segments, &value, &options)?;
                if super::yaml::depth(&res.value) > super::yaml::MAX_DEPTH {
                    return Err(format!(
                        "{}: the result nests deeper than {} levels",
                        res.id(),
                        super::yaml::MAX_DEPTH
                    ));
                }
                if !found && !options.create {
                    return Err(format!(
                        "unable to find field \"{path}\" in replacement target {}",
                        res.id()
                    ));
                }
            }
        }
    }
    Ok(())
}

fn source_value(resources: &[Resource], source: &Source) -> Result<Value, String> {
    let mut select = Compiled::new(&source.selector)?;
    select.any_id = true;
    let matching: Vec<&Resource> = resources
        .iter()
        .filter(|r| select.matches(r).unwrap_or(false))
        .collect();
    let r = match matching.as_slice() {
        [r] => r,
        [] => {
            return Err(format!(
                "nothing selected by source {:?}",
                source.selector.name
            ))
        }
        _ => {
            return Err(format!(
                "more than one object selected by source {:?}",
                source.selector.name
            ))
        }
    };
    let path = source
        .field_path
        .clone()
        .unwrap_or_else(|| "metadata.name".into());
    let mut found = Vec::new();
    find(&r.value, &split_path(&path), &mut found);
    let value = found
        .first()
        .cloned()
        .ok_or_else(|| format!("fieldPath '{path}' is missing in source {}", r.id()))?;
    match &source.options {
        Some(o) if !o.delimiter.is_empty() => {
            let text = scalar_text(&value);
            let parts: Vec<&str> = text.split(o.delimiter.as_str()).collect();
            let index = usize::try_from(o.index)
                .map_err(|_| "options.index must not be negative".to_string())?;
            parts
                .get(index)
                .map(|p| Value::String(p.to_string()))
                .ok_or_else(|| format!("options.index {index} is out of range"))
        }
        _ => Ok(value),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn split_path(path: &str) -> Vec<String> {
    super::fieldspec::split_path_bracketed(path, '.')
}

fn element_matches(item: &Value, selector: &str) -> bool {
    let Some((key, want)) = selector.split_once('=') else {
        return false;
    };
    item.get(key).is_some_and(|v| scalar_text(v) == want)
}

fn find(node: &Value, segments: &[String], out: &mut Vec<Value>) {
    let Some((first, rest)) = segments.split_first() else {
        out.push(node.clone());
        return;
    };
    match node {
        Value::Array(items) => {
            if let Some(sel) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                for item in items.iter().filter(|i| element_matches(i, sel)) {
                    find(item, rest, out);
                }
            } else if first == "*" {
                items.iter().for_each(|i| find(i, rest, out));
            } else if let Ok(index) = first.parse::<usize>() {
                if let Some(item) = items.get(index) {
                    find(item, rest, out);
                }
            }
        }
        Value::Object(map) => {
            if let Some(child) = map.get(first.as_str()) {
                find(child, rest, out);
            }
        }
        _ => {}
    }
}

/// Sets every node at the path; returns whether one was found (or made).
fn set_path(
    node: &mut Value,
    segments: &[String],
    value: &Value,
    options: &Options,
) -> Result<bool, String> {
    let Some((first, rest)) = segments.split_first() else {
        *node = with_delimiter(node, value, options)?;
        return Ok(true);
    };
    match node {
        Value::Array(items) => {
            let mut found = false;
            if let Some(sel) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                for item in items.iter_mut().filter(|i| element_matches(i, sel)) {
                    found |= set_path(item, rest, value, options)?;
                }
            } else if first == "*" {
                for item in items.iter_mut() {
                    found |= set_path(item, rest, value, options)?;
                }
            } else if let Ok(index) = first.parse::<usize>() {
                if let Some(item) = items.get_mut(index) {
                    found |= set_path(item, rest, value, options)?;
                }
            }
            Ok(found)
        }
        Value::Object(map) => {
            if !map.contains_key(first.as_str()) {
                if !options.create || first.starts_with('[') {
                    return Ok(false);
                }
                let empty = if rest.is_empty() {
                    Value::Null
                } else {
                    Value::Object(Map::new())
                };
                map.insert(first.clone(), empty);
            }
            match map.get_mut(first.as_str()) {
                Some(child) => set_path(child, rest, value, options),
                None => Ok(false),
            }
        }
        Value::Null if options.create => {
            *node = Value::Object(Map::new());
            set_path(node, segments, value, options)
        }
        _ => Ok(false),
    }
}

fn with_delimiter(current: &Value, value: &Value, options: &Options) -> Result<Value, String> {
    if options.delimiter.is_empty() {
        return Ok(value.clone());
    }
    let text = scalar_text(current);
    let mut parts: Vec<String> = if current.is_null() {
        Vec::new()
    } else {
        text.split(options.delimiter.as_str())
            .map(String::from)
            .collect()
    };
    let replacement = scalar_text(value);
    if options.index < 0 {
        parts.insert(0, replacement);
    } else if (options.index as usize) < parts.len() {
        parts[options.index as usize] = replacement;
    } else {
        parts.push(replacement);
    }
    Ok(Value::String(parts.join(&options.delimiter)))
}
