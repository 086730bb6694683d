//! Strategic merge patch, the way kustomize (kyaml's merge2) applies it:
//! maps merge field by field, `null` deletes a field, `$patch: delete` /
//! `$patch: replace` act on the map or list they sit in, and lists merge
//! element by element only where the OpenAPI schema gives them the `merge`
//! strategy (containers by `name`, ports by `containerPort`+`protocol`, …).
//! Merged lists put the patch's elements first, in patch order, then the
//! remaining original elements, as kustomize does. Other lists, and every
//! list of a kind without schema (custom resources), are replaced.

use serde_json::{Map, Value};

use super::schema::{self, FieldInfo};
use super::yaml::Step;

/// Where in the schema a value sits.
#[derive(Clone)]
enum At {
    Object(Option<String>),
    /// A map whose values all have one definition (`additionalProperties`).
    MapOf(Option<String>),
    List(Option<FieldInfo>),
}

/// Applies a strategic merge patch to an object. Returns `None` when the
/// patch deletes the whole object (`$patch: delete` at the top).
pub fn apply(target: &Value, patch: &Value) -> Option<Value> {
    let id = super::resource::ResId::of(target);
    let root = schema::root(&id.group, &id.version, &id.kind);
    merge(Some(target), patch, At::Object(root))
}

/// Removes the keys a manifest wrote without a value (`key:`) from where
/// kyaml's merge walks: kyaml visits every field of the object, not only
/// the patched ones, and replaces a null it finds with the (absent) patch
/// value unless the null was written out (`~`, `null`). Lists are entered
/// only where they merge by key.
pub fn drop_empty_nulls(target: &mut Value, paths: &[Vec<Step>]) {
    let id = super::resource::ResId::of(target);
    let root = At::Object(schema::root(&id.group, &id.version, &id.kind));
    for path in paths {
        let Some((Step::Key(last), parents)) = path.split_last() else {
            continue;
        };
        if let Some(Value::Object(map)) = walked_to(target, root.clone(), parents) {
            if map.get(last).is_some_and(Value::is_null) {
                map.remove(last);
            }
        }
    }
}

/// The value at `path` if kyaml's merge walk reaches it.
fn walked_to<'v>(mut value: &'v mut Value, mut at: At, path: &[Step]) -> Option<&'v mut Value> {
    for step in path {
        value = match (step, value) {
            (Step::Key(key), Value::Object(map)) => {
                at = child(&at, key);
                map.get_mut(key)?
            }
            (Step::Index(i), Value::Array(items)) => match &at {
                At::List(Some(info)) if info.merges() => {
                    at = At::Object(info.items.clone());
                    items.get_mut(*i)?
                }
                _ => return None,
            },
            _ => return None,
        };
    }
    Some(value)
}

fn child(at: &At, key: &str) -> At {
    match at {
        At::Object(Some(def)) => match schema::field(def, key) {
            Some(info) if info.list => At::List(Some(info)),
            Some(info) if info.values.is_some() => At::MapOf(info.values),
            Some(info) => At::Object(info.reference),
            None => At::Object(None),
        },
        At::MapOf(def) => At::Object(def.clone()),
        _ => At::Object(None),
    }
}

fn merge(dest: Option<&Value>, patch: &Value, at: At) -> Option<Value> {
    match patch {
        Value::Null => None,
        Value::Object(p) => merge_map(dest, p, at),
        Value::Array(items) => match at {
            At::List(Some(info)) if info.merges() => merge_list(dest, items, &info),
            _ => Some(patch.clone()),
        },
        scalar => Some(scalar.clone()),
    }
}

fn merge_map(dest: Option<&Value>, patch: &Map<String, Value>, at: At) -> Option<Value> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("delete") => return None,
        Some("replace") => {
            let mut replaced = patch.clone();
            replaced.remove("$patch");
            return Some(Value::Object(replaced));
        }
        _ => {}
    }
    let mut result = match dest {
        Some(Value::Object(d)) => d.clone(),
        _ => Map::new(),
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match merge(result.get(key), value, child(&at, key)) {
            Some(merged) => {
                result.insert(key.clone(), merged);
            }
            None => {
                result.remove(key);
            }
        }
    }
    Some(Value::Object(result))
}

fn directive(item: &Value) -> Option<&str> {
    let map = item.as_object()?;
    if map.len() == 1 {
        map.get("$patch")?.as_str()
    } else {
        None
    }
}

fn merge_list(dest: Option<&Value>, patch: &[Value], info: &FieldInfo) -> Option<Value> {
    let dest_items: &[Value] = match dest {
        Some(Value::Array(d)) => d,
        _ => &[],
    };
    match patch.iter().find_map(directive) {
        Some("delete") => return None,
        Some("replace") => {
            let kept = patch.iter().filter(|i| directive(i).is_none()).cloned();
            return Some(Value::Array(kept.collect()));
        }
        _ => {}
    }
    let keys = info.merge_keys();
    if keys.is_empty() {
        return Some(Value::Array(merge_primitive(dest_items, patch)));
    }
    let items_at = At::Object(info.items.clone());
    if keys.len() > 1 {
        let merge_one = |d: Option<&Value>, p: &Value| merge(d, p, items_at.clone());
        // kyaml merges a list the original lacks with itself.
        let original = if matches!(dest, Some(Value::Array(_))) {
            dest_items
        } else {
            patch
        };
        return Some(Value::Array(super::smp_multikey::merge_by_keys(
            original, patch, &keys, &merge_one,
        )));
    }
    let mut tuples: Vec<Vec<String>> = Vec::new();
    for item in patch.iter().chain(dest_items) {
        let tuple = key_tuple(item, &keys);
        if tuple.iter().all(String::is_empty) {
            continue;
        }
        if !tuples.iter().any(|t| tuples_match(t, &tuple)) {
            tuples.push(tuple);
        }
    }
    let mut result = Vec::new();
    for tuple in &tuples {
        let find = |items: &[Value]| {
            items
                .iter()
                .find(|i| tuples_match(&key_tuple(i, &keys), tuple))
                .cloned()
        };
        let d = find(dest_items);
        match find(patch) {
            None => result.extend(d),
            Some(p) => match merge(d.as_ref(), &p, items_at.clone()) {
                Some(Value::Object(m)) if m.is_empty() => {}
                Some(merged) => result.push(merged),
                None => {}
            },
        }
    }
    let keyless = |i: &&Value| key_tuple(i, &keys).iter().all(String::is_empty);
    result.extend(dest_items.iter().filter(keyless).cloned());
    result.extend(
        patch
            .iter()
            .filter(keyless)
            .filter(|i| directive(i).is_none())
            .cloned(),
    );
    Some(Value::Array(result))
}

fn merge_primitive(dest: &[Value], patch: &[Value]) -> Vec<Value> {
    let mut result: Vec<Value> = Vec::new();
    for item in patch.iter().chain(dest) {
        if !result.contains(item) {
            result.push(item.clone());
        }
    }
    result
}

fn key_tuple(item: &Value, keys: &[String]) -> Vec<String> {
    keys.iter()
        .map(|k| match item.get(k) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        })
        .collect()
}

/// kyaml's rule: every key equal or missing on one side, one key equal.
fn tuples_match(a: &[String], b: &[String]) -> bool {
    let mut common = false;
    for (x, y) in a.iter().zip(b) {
        if x == y {
            common = true;
        } else if !x.is_empty() && !y.is_empty() {
            return false;
        }
    }
    common
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(containers: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"containers": containers}}}})
    }

    #[test]
    fn containers_merge_by_name_with_patch_elements_first() {
        let target = deployment(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let patch = deployment(json!([{"name": "b", "image": "b2"}, {"name": "c", "image": "c"}]));
        let merged = apply(&target, &patch).unwrap();
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b", "image": "b2"}, {"name": "c", "image": "c"}, {"name": "a", "image": "a"}])
        );
    }

    #[test]
    fn patch_delete_removes_one_element_and_null_removes_a_field() {
        let target = deployment(json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b"}]));
        let mut patch = deployment(json!([{"name": "a", "$patch": "delete"}]));
        patch["metadata"]["labels"] = json!(null);
        patch["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "b", "image": null}));
        let merged = apply(&target, &patch).unwrap();
        assert_eq!(
            merged["spec"]["template"]["spec"]["containers"],
            json!([{"name": "b"}])
        );
    }

    #[test]
    fn lists_of_unknown_kinds_are_replaced() {
        let target = json!({"apiVersion": "x.io/v1", "kind": "Foo", "spec": {"items": [{"name": "a"}, {"name": "b"}]}});
        let patch = json!({"apiVersion": "x.io/v1", "kind": "Foo", "spec": {"items": [{"name": "b", "y": 2}]}});
        let merged = apply(&target, &patch).unwrap();
        assert_eq!(merged["spec"]["items"], json!([{"name": "b", "y": 2}]));
    }

    #[test]
    fn patch_delete_at_the_top_deletes_the_object() {
        let target = deployment(json!([]));
        let patch = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "$patch": "delete"});
        assert!(apply(&target, &patch).is_none());
    }
}
