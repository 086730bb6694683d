//! `vars` (deprecated in kustomize, still common): `$(NAME)` in the
//! fields kustomize's `varReference` table lists is replaced by a field of
//! the object the var names. Vars are declared in any layer, bound to the
//! object they name in that layer, and resolved once at the top, after
//! names are final.

use serde::Deserialize;
use serde_json::Value;

use super::fieldspec::{visit, FieldSpec};
use super::resource::{split_api_version, ResId, Resource};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Var {
    pub name: String,
    pub objref: ObjRef,
    #[serde(default)]
    pub fieldref: FieldRef,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRef {
    #[serde(default, alias = "fieldPath")]
    pub fieldpath: String,
}

impl Var {
    fn target(&self) -> ResId {
        let o = &self.objref;
        let (group, version) = if o.api_version.is_empty() {
            (o.group.as_str(), o.version.as_str())
        } else {
            split_api_version(&o.api_version)
        };
        ResId {
            group: group.to_string(),
            version: version.to_string(),
            kind: o.kind.clone(),
            namespace: o.namespace.clone(),
            name: o.name.clone(),
        }
    }

    fn field_path(&self) -> &str {
        if self.fieldref.fieldpath.is_empty() {
            "metadata.name"
        } else {
            &self.fieldref.fieldpath
        }
    }
}

fn names_object(target: &ResId, id: &ResId) -> bool {
    (target.group.is_empty() || target.group == id.group)
        && (target.version.is_empty() || target.version == id.version)
        && target.kind == id.kind
        && target.name == id.name
        && (target.namespace.is_empty() || target.same_namespace(id))
}

/// Binds each var of one layer to the object it names (by any id the
/// object had) and adds it to `known`.
pub fn declare(
    resources: &mut [Resource],
    vars: &[Var],
    known: &mut Vec<Var>,
) -> Result<(), String> {
    for var in vars {
        let target = var.target();
        let matching: Vec<usize> = resources
            .iter()
            .enumerate()
            .filter(|(_, r)| r.all_ids().iter().any(|id| names_object(&target, id)))
            .map(|(i, _)| i)
            .collect();
        match matching.as_slice() {
            [i] => resources[*i].var_names.push(var.name.clone()),
            [] => {}
            many => {
                return Err(format!(
                    "found {} resId matches for var {} (unable to disambiguate)",
                    many.len(),
                    var.name
                ))
            }
        }
        add(known, var)?;
    }
    Ok(())
}

pub fn add(known: &mut Vec<Var>, var: &Var) -> Result<(), String> {
    if known.iter().any(|v| v.name == var.name) {
        return Err(format!("var '{}' already encountered", var.name));
    }
    known.push(var.clone());
    Ok(())
}

/// Replaces `$(NAME)` in the var reference fields of every object.
pub fn resolve(
    resources: &mut [Resource],
    vars: &[Var],
    specs: &[FieldSpec],
) -> Result<(), String> {
    if vars.is_empty() {
        return Ok(());
    }
    let mut values = Vec::new();
    for var in vars {
        let holder = resources
            .iter()
            .find(|r| r.var_names.contains(&var.name))
            .ok_or_else(|| {
                format!(
                    "var '{}' cannot be mapped to a field in the set of known resources",
                    var.name
                )
            })?;
        let value = field_value(&holder.value, var.field_path()).ok_or_else(|| {
            format!(
                "field specified in var '{}' not found in corresponding resource",
                var.name
            )
        })?;
        values.push((var.name.clone(), value));
    }
    for r in resources.iter_mut() {
        let id = r.id();
        for spec in specs.iter().filter(|s| s.matches(&id)) {
            visit(&mut r.value, &spec.path, false, &mut |node| {
                expand_node(node, &values);
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn expand_node(node: &mut Value, values: &[(String, Value)]) {
    match node {
        Value::String(s) => *node = expand(s, values),
        Value::Array(items) => items.iter_mut().for_each(|i| {
            if i.is_string() {
                expand_node(i, values)
            }
        }),
        Value::Object(map) => map.values_mut().for_each(|v| {
            if v.is_string() {
                expand_node(v, values)
            }
        }),
        _ => {}
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`, unknown names
/// stay as written, and a string that is only `$(VAR)` takes the value's
/// type.
fn expand(input: &str, values: &[(String, Value)]) -> Value {
    let lookup = |name: &str| values.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if let Some(name) = input.strip_prefix("$(").and_then(|s| s.strip_suffix(')')) {
        if !name.contains(')') {
            if let Some(v) = lookup(name) {
                return v.clone();
            }
        }
    }
    let bytes = input.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push('$');
                    i += 2;
                }
                b'(' => match input[i + 2..].find(')') {
                    Some(end) => {
                        let name = &input[i + 2..i + 2 + end];
                        match lookup(name) {
                            Some(v) => out.push_str(&text(v)),
                            None => out.push_str(&format!("$({name})")),
                        }
                        i += end + 3;
                    }
                    None => {
                        out.push_str("$(");
                        i += 2;
                    }
                },
                _ => {
                    out.push('$');
                    i += 1;
                }
            }
        } else {
            let ch = input[i..].chars().next().unwrap_or_default();
            out.push(ch);
            i += ch.len_utf8().max(1);
        }
    }
    Value::String(out)
}

/// A field by a dotted path with `[N]` list indexes, e.g.
/// `spec.ports[0].port`.
fn field_value(value: &Value, path: &str) -> Option<Value> {
    let mut node = value;
    for segment in path.split('.') {
        let (name, indexes) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        if !name.is_empty() {
            node = node.get(name)?;
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            node = node.get(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(node.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion_follows_kubernetes_rules() {
        let values = vec![("A".to_string(), json!("x")), ("N".to_string(), json!(5))];
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &values), json!("x-$(B)-$(A)-$"));
        assert_eq!(expand("$(N)", &values), json!(5));
        assert_eq!(expand("port $(N)", &values), json!("port 5"));
    }

    #[test]
    fn field_paths_index_lists() {
        let v = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(field_value(&v, "spec.ports[0].port"), Some(json!(80)));
        assert_eq!(field_value(&v, "spec.missing"), None);
    }
}
