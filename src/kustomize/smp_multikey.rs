//! Lists merged by more than one key (ports by `containerPort` and
//! `protocol`, say). kustomize's kyaml treats a missing key specially and
//! moves original elements after the patch's new ones; the steps below
//! follow its algorithm (`walk/associative_sequence.go`) so results match,
//! quirks included (a patch element that leaves out a key the original
//! element has does not merge into it).

use serde_json::Value;

type Tuple = Vec<String>;

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn tuple(item: &Value, keys: &[String]) -> Tuple {
    keys.iter()
        .map(|k| item.get(k).map(text).unwrap_or_default())
        .collect()
}

/// Unifies tuples that agree where both have a value (kyaml `mergeValues`).
fn merge_values(values: &mut [Tuple]) {
    for i in 0..values.len() {
        for j in 0..values.len() {
            let (a, b) = (&values[i], &values[j]);
            let mut common = false;
            let mut merged = Vec::new();
            let mut matched = true;
            for (x, y) in a.iter().zip(b) {
                if x == y {
                    common = true;
                    merged.push(x.clone());
                } else if !x.is_empty() && !y.is_empty() {
                    matched = false;
                    break;
                } else {
                    merged.push(if x.is_empty() { y.clone() } else { x.clone() });
                }
            }
            if matched && common {
                values[i] = merged.clone();
                values[j] = merged;
            }
        }
    }
}

/// The keys (and their values) that identify elements: keys with a value
/// somewhere in `all`, or every key if none has one.
fn validate(all: &[Tuple], values: &Tuple, keys: &[String]) -> (Vec<String>, Tuple) {
    let valid: Vec<bool> = (0..keys.len())
        .map(|i| all.iter().any(|t| !t[i].is_empty()))
        .collect();
    if !valid.iter().any(|v| *v) {
        return (keys.to_vec(), values.clone());
    }
    let keys = keys
        .iter()
        .zip(&valid)
        .filter(|(_, v)| **v)
        .map(|(k, _)| k.clone())
        .collect();
    let values = values
        .iter()
        .zip(&valid)
        .filter(|(v, ok)| !v.is_empty() || **ok)
        .map(|(v, _)| v.clone())
        .collect();
    (keys, values)
}

/// A field that exists and, when `value` is not empty, has that value.
fn field_matches(elem: &Value, key: &str, value: &str) -> bool {
    match elem.get(key) {
        None | Some(Value::Null) => false,
        Some(v) => value.is_empty() || text(v) == value,
    }
}

fn find(list: &[Value], keys: &[String], values: &[String]) -> Option<usize> {
    list.iter().position(|elem| {
        elem.is_object()
            && keys.iter().enumerate().all(|(j, k)| {
                field_matches(elem, k, values.get(j).map(String::as_str).unwrap_or(""))
            })
    })
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_object().is_some_and(|m| m.is_empty())
}

/// kyaml's `ElementSetter`: replace (or, without `element`, remove) the
/// elements matching `values` on the first keys; add `element` if none did.
fn element_set(list: &mut Vec<Value>, element: Option<&Value>, keys: &[String], values: &[String]) {
    let mut kept = Vec::new();
    let mut found_any = false;
    for elem in list.drain(..) {
        if is_empty(&elem) {
            continue;
        }
        if !elem.is_object() {
            kept.push(elem);
            continue;
        }
        let mut found = !keys.is_empty();
        let mut last = false;
        for (j, key) in keys.iter().enumerate() {
            if j < values.len() {
                last = field_matches(&elem, key, &values[j]);
            }
            if !last {
                found = false;
                break;
            }
        }
        if !found {
            if !values.is_empty() {
                kept.push(elem);
            }
            continue;
        }
        found_any = true;
        if let Some(e) = element {
            kept.push(e.clone());
        }
    }
    *list = kept;
    if let Some(e) = element {
        if !found_any {
            list.push(e.clone());
        }
    }
}

/// Merges `patch` into `dest` by several keys; `merge` merges one element.
pub fn merge_by_keys(
    dest: &[Value],
    patch: &[Value],
    keys: &[String],
    merge: &dyn Fn(Option<&Value>, &Value) -> Option<Value>,
) -> Vec<Value> {
    let mut values: Vec<Tuple> = Vec::new();
    for item in patch.iter().chain(dest) {
        let t = tuple(item, keys);
        if !values.contains(&t) {
            values.push(t);
        }
    }
    merge_values(&mut values);
    let mut dest: Vec<Value> = dest.to_vec();
    let mut items: Vec<Value> = Vec::new();
    let mut last_keys = keys.to_vec();
    for t in values.clone() {
        let (valid_keys, valid_values) = validate(&values, &t, keys);
        last_keys = valid_keys.clone();
        let (match_keys, match_values) = validate(
            std::slice::from_ref(&valid_values),
            &valid_values,
            &valid_keys,
        );
        let d = find(&dest, &match_keys, &match_values);
        let p = find(patch, &match_keys, &match_values).map(|i| &patch[i]);
        let merged = match (d, p) {
            (Some(i), None) => Some(dest[i].clone()),
            (d, Some(p)) => merge(d.map(|i| &dest[i]), p),
            (None, None) => None,
        };
        let Some(mut val) = merged.filter(|v| !is_empty(v)) else {
            element_set(&mut dest, None, &valid_keys, &valid_values);
            continue;
        };
        for (key, value) in valid_keys.iter().zip(&valid_values) {
            if val.get(key).is_none() && !value.is_empty() {
                let scalar = value
                    .parse::<i64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(value.clone()));
                if let Value::Object(map) = &mut val {
                    map.insert(key.clone(), scalar);
                }
            }
        }
        if let Some(i) = d {
            dest[i] = val.clone();
        }
        element_set(&mut items, Some(&val), &valid_keys, &valid_values);
    }
    for elem in &dest {
        let mut v = Vec::new();
        for key in &last_keys {
            match elem.get(key).filter(|x| !x.is_null()) {
                Some(x) => v.push(text(x)),
                None => items.push(elem.clone()),
            }
        }
        element_set(&mut items, None, &last_keys, &v);
        element_set(&mut items, Some(elem), &last_keys, &v);
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn service_ports_merge_like_kustomize() {
        // kubectl kustomize output for this patch: the port without a
        // protocol does not merge into 443/TCP; originals move last.
        let dest = vec![
            json!({"port": 80, "name": "http"}),
            json!({"port": 443, "name": "https", "protocol": "TCP"}),
        ];
        let patch = vec![
            json!({"port": 443, "targetPort": 8443}),
            json!({"port": 53, "protocol": "UDP"}),
        ];
        let keys = vec!["port".to_string(), "protocol".to_string()];
        let merged = merge_by_keys(&dest, &patch, &keys, &|d, p| {
            let mut out = d.cloned().unwrap_or(json!({}));
            for (k, v) in p.as_object().unwrap() {
                out[k] = v.clone();
            }
            Some(out)
        });
        assert_eq!(
            merged,
            vec![
                json!({"port": 53, "protocol": "UDP"}),
                json!({"port": 80, "name": "http"}),
                json!({"port": 443, "name": "https", "protocol": "TCP"}),
            ]
        );
    }
}
