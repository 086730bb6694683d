//! Reading YAML into the JSON data model kustomize's output is built from,
//! with limits so hostile input fails with an error instead of exhausting
//! memory: a size cap per file, serde_yaml's own nesting limit (128) and its
//! refusal of alias expansion bombs.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::Error;

/// Largest manifest or kustomization file kedge reads (64 MiB).
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// Deepest nesting an object may reach through patches and replacements
/// (YAML input is already limited to 128 levels by serde_yaml); deeper
/// values could overflow the stack when written out or dropped.
pub const MAX_DEPTH: usize = 512;

/// How deeply a value nests, counted without recursion.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 1)];
    while let Some((v, d)) = stack.pop() {
        deepest = deepest.max(d);
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|i| (i, d + 1))),
            Value::Object(map) => stack.extend(map.values().map(|i| (i, d + 1))),
            _ => {}
        }
    }
    deepest
}

/// Parses every document of a (multi-document) YAML text. Empty documents
/// are dropped, like kustomize does.
pub fn parse_documents(file: &Path, text: &str) -> Result<Vec<Value>, Error> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: format!("file is larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|err| yaml_error(file, &err))?;
        let value = to_json(value).map_err(|message| Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message,
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// YAML to JSON as kustomize's encoding does it: keys become strings,
/// tags are dropped.
fn to_json(value: serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("number {n} has no JSON form"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => {
            Value::Array(items.into_iter().map(to_json).collect::<Result<_, _>>()?)
        }
        Y::Mapping(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => return Err(format!("unsupported map key {other:?}")),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => to_json(tagged.value)?,
    })
}

/// Parses a single YAML document (an inline patch, a kustomization file).
pub fn parse_one(file: &Path, text: &str) -> Result<Value, Error> {
    let mut docs = parse_documents(file, text)?;
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

/// Parses a kustomization file. Unlike manifests, a key given twice is
/// not an error there: the last one wins, as in kustomize.
pub fn parse_kustomization(file: &Path, text: &str) -> Result<Value, Error> {
    if text.len() > MAX_FILE_BYTES {
        return parse_one(file, text);
    }
    let mut docs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|err| yaml_error(file, &err))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    match docs.len() {
        0 => Ok(Value::Null),
        1 => Ok(docs.remove(0)),
        n => Err(Error::Yaml {
            file: file.to_path_buf(),
            line: None,
            message: format!("expected one YAML document, found {n}"),
        }),
    }
}

fn yaml_error(file: &Path, err: &serde_yaml::Error) -> Error {
    Error::Yaml {
        file: file.to_path_buf(),
        line: err.location().map(|l| l.line()),
        message: err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Value>, Error> {
        parse_documents(Path::new("t.yaml"), text)
    }

    #[test]
    fn empty_documents_are_dropped() {
        let docs = parse("---\na: 1\n---\n---\nb: 2\n").unwrap();
        assert_eq!(docs.len(), 2);
    }

    #[test]
    fn bad_yaml_names_file_and_line() {
        let err = parse("a: 1\nb: [\n").unwrap_err().to_string();
        assert!(err.contains("t.yaml"), "{err}");
        assert!(err.contains("line"), "{err}");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse(&text).is_err());
        let text = (0..10_000)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect::<String>();
        assert!(parse(&text).is_err());
    }

    #[test]
    fn alias_bomb_is_an_error() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(parse(&text).is_err());
    }

    #[test]
    fn duplicate_keys_are_an_error() {
        assert!(parse("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn small_aliases_still_work() {
        let docs = parse("a: &x {b: 1}\nc: *x\n").unwrap();
        assert_eq!(docs[0]["c"]["b"], 1);
    }
}
