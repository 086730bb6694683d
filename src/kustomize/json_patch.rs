//! JSON patch (RFC 6902): add, remove, replace, move, copy, test.

use serde_json::Value;

/// Applies the operations in order; the message of an error names the
/// failing operation and path.
pub fn apply(target: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("a JSON patch must be a list of operations")?;
    for (i, op) in ops.iter().enumerate() {
        apply_op(target, op).map_err(|e| format!("operation {i}: {e}"))?;
    }
    Ok(())
}

fn field<'a>(op: &'a Value, name: &str) -> Result<&'a str, String> {
    op.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing '{name}'"))
}

fn apply_op(target: &mut Value, op: &Value) -> Result<(), String> {
    let kind = field(op, "op")?;
    let path = field(op, "path")?;
    let value = || {
        op.get("value")
            .cloned()
            .ok_or_else(|| format!("{kind} {path}: missing 'value'"))
    };
    match kind {
        "add" => add(target, path, value()?),
        "remove" => remove(target, path).map(drop),
        "replace" => replace(target, path, value()?),
        "move" => {
            let from = field(op, "from")?;
            let moved = remove(target, from)?;
            add(target, path, moved)
        }
        "copy" => {
            let from = field(op, "from")?;
            let copied = target
                .pointer(from)
                .cloned()
                .ok_or_else(|| format!("copy from {from}: no such path"))?;
            add(target, path, copied)
        }
        "test" => match target.pointer(path) {
            Some(v) if *v == value()? => Ok(()),
            _ => Err(format!("test {path}: value differs")),
        },
        other => Err(format!("unknown operation '{other}'")),
    }
}

fn split(path: &str) -> Result<(&str, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("path '{path}' does not start with '/'"))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *target = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    let container = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("add {path}: no such parent"))?;
    match container {
        Value::Object(map) => {
            map.insert(last, value);
            Ok(())
        }
        Value::Array(list) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("add {path}: bad index"))?
            };
            if index > list.len() {
                return Err(format!("add {path}: index out of range"));
            }
            list.insert(index, value);
            Ok(())
        }
        _ => Err(format!("add {path}: parent is not a map or list")),
    }
}

/// Like evanphx/json-patch v5, which kustomize uses: replacing a missing
/// field of an existing object sets it.
fn replace(target: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if let Some(slot) = target.pointer_mut(path) {
        *slot = value;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match target.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        _ => Err(format!("replace {path}: no such path")),
    }
}

fn remove(target: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split(path)?;
    let container = target
        .pointer_mut(parent)
        .ok_or_else(|| format!("remove {path}: no such path"))?;
    match container {
        Value::Object(map) => map
            .remove(&last)
            .ok_or_else(|| format!("remove {path}: no such field")),
        Value::Array(list) => {
            let index = last
                .parse::<usize>()
                .map_err(|_| format!("remove {path}: bad index"))?;
            if index >= list.len() {
                return Err(format!("remove {path}: index out of range"));
            }
            Ok(list.remove(index))
        }
        _ => Err(format!("remove {path}: parent is not a map or list")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn operations_apply_in_order() {
        let mut doc = json!({"a": [1, 2], "b": {"c": 1}});
        let ops = json!([
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": 2},
            {"op": "copy", "from": "/b", "path": "/d"},
            {"op": "move", "from": "/a/0", "path": "/e"},
            {"op": "remove", "path": "/b"},
            {"op": "test", "path": "/e", "value": 1}
        ]);
        apply(&mut doc, &ops).unwrap();
        assert_eq!(doc, json!({"a": [2, 3], "d": {"c": 2}, "e": 1}));
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let mut doc = json!({});
        let err = apply(
            &mut doc,
            &json!([{"op": "replace", "path": "/x/y", "value": 1}]),
        )
        .unwrap_err();
        assert!(err.contains("/x/y"), "{err}");
    }
}
