//! The legacy `crds` field: files of OpenAPI definitions (type name →
//! `{Schema, Dependencies}`, as Go's openapi-gen writes them) whose
//! vendor extensions tell kustomize which fields of a custom kind hold
//! annotations, label selectors, names to prefix and references to other
//! objects. Each definition that looks like a Kubernetes type (has `kind`,
//! `apiVersion` and `metadata` properties) gives the kind after the type
//! name's last dot; its properties are walked through `$ref`s to the other
//! definitions of the file.

use std::collections::HashSet;
use std::path::Path;

use serde_json::{Map, Value};

use super::config::{Config, Reference};
use super::fieldspec::FieldSpec;
use super::{yaml, Error};

const FIELD: &str = "crds";

const ANNOTATION: &str = "x-kubernetes-annotation";
const LABEL_SELECTOR: &str = "x-kubernetes-label-selector";
const IDENTITY: &str = "x-kubernetes-identity";
const REF_VERSION: &str = "x-kubernetes-object-ref-api-version";
const REF_KIND: &str = "x-kubernetes-object-ref-kind";
const REF_NAME_KEY: &str = "x-kubernetes-object-ref-name-key";

/// How many properties one file may make the walk visit: `$ref`s shared
/// by many properties are walked once per use, so a hostile file could
/// otherwise ask for exponential work.
const VISIT_BUDGET: usize = 100_000;

/// Reads one `crds` file into `config`.
pub fn load(
    config: &mut Config,
    dir: &Path,
    entry: &str,
    kustomization: &Path,
) -> Result<(), Error> {
    let path = dir.join(entry);
    super::build::check_within(dir, &path, kustomization, FIELD)?;
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Read {
        file: kustomization.to_path_buf(),
        field: FIELD.into(),
        path: path.clone(),
        source,
    })?;
    let fail = |message: String| {
        Error::field(
            kustomization,
            FIELD,
            format!("{}: {message}", path.display()),
        )
    };
    let definitions = match yaml::parse_one(&path, &text)? {
        Value::Null => return Ok(()),
        Value::Object(map) => map,
        _ => return Err(fail("expected a map of OpenAPI definitions".into())),
    };
    let mut walk = Walk {
        definitions: &definitions,
        config,
        budget: VISIT_BUDGET,
    };
    for (name, definition) in &definitions {
        let Some(properties) = schema_properties(name, definition).map_err(fail)? else {
            continue;
        };
        if !["kind", "apiVersion", "metadata"]
            .iter()
            .all(|k| properties.contains_key(*k))
        {
            continue;
        }
        let kind = name.rsplit('.').next().unwrap_or(name);
        let mut visiting = HashSet::from([name.as_str()]);
        walk.properties(kind, properties, &[], &mut visiting)
            .map_err(fail)?;
    }
    Ok(())
}

/// A definition's `Schema` (matched like Go's JSON decoding: exact name
/// first, then any case) and that schema's `properties`; wrong types are
/// errors, as when kustomize decodes the file, missing parts are none.
fn schema_properties<'v>(
    name: &str,
    definition: &'v Value,
) -> Result<Option<&'v Map<String, Value>>, String> {
    let wrong = |what: &str| format!("definition '{name}': {what}");
    let map = match definition {
        Value::Null => return Ok(None),
        Value::Object(map) => map,
        _ => return Err(wrong("expected an object with Schema and Dependencies")),
    };
    let schema = map.get("Schema").or_else(|| {
        map.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("schema"))
            .map(|(_, v)| v)
    });
    let schema = match schema {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(schema)) => schema,
        Some(_) => return Err(wrong("Schema is not an object")),
    };
    let properties = match schema.get("properties") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(properties)) => properties,
        Some(_) => return Err(wrong("properties is not an object")),
    };
    for (key, property) in properties {
        let reference = property.get("$ref");
        if !(property.is_object() || property.is_null())
            || !(reference.is_none_or(|r| r.is_string() || r.is_null()))
        {
            return Err(wrong(&format!("property '{key}' is not a schema")));
        }
    }
    Ok(Some(properties))
}

struct Walk<'a> {
    definitions: &'a Map<String, Value>,
    config: &'a mut Config,
    budget: usize,
}

impl<'a> Walk<'a> {
    fn properties(
        &mut self,
        kind: &str,
        properties: &'a Map<String, Value>,
        path: &[&'a str],
        visiting: &mut HashSet<&'a str>,
    ) -> Result<(), String> {
        for (name, property) in properties {
            self.budget = self
                .budget
                .checked_sub(1)
                .ok_or_else(|| format!("definitions expand to more than {VISIT_BUDGET} fields"))?;
            let mut here = path.to_vec();
            here.push(name.as_str());
            let text = |key: &str| property.get(key).and_then(Value::as_str);
            let spec = |path: &[&str]| FieldSpec {
                group: String::new(),
                version: String::new(),
                kind: kind.to_string(),
                path: path.join("/"),
                create: false,
            };
            if text(ANNOTATION).is_some() {
                push(&mut self.config.common_annotations, spec(&here));
            }
            if text(LABEL_SELECTOR).is_some() {
                push(&mut self.config.common_labels, spec(&here));
            }
            // Every object's metadata/name gets the prefix anyway.
            if text(IDENTITY).is_some() && here.join("/") != "metadata/name" {
                push(&mut self.config.name_prefix, spec(&here));
            }
            if let (Some(version), Some(referral)) = (text(REF_VERSION), text(REF_KIND)) {
                let mut field = here.clone();
                field.push(text(REF_NAME_KEY).unwrap_or("name"));
                let reference = Reference {
                    referral: (String::new(), version.to_string(), referral.to_string()),
                    referrer: (String::new(), String::new(), kind.to_string()),
                    path: field.join("/"),
                };
                push(&mut self.config.name_references, reference);
            }
            let target = property
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.definitions.get_key_value(r));
            if let Some((type_name, definition)) = target {
                // kustomize recurses forever on a cycle; stop instead.
                if let Some(nested) = schema_properties(type_name, definition)? {
                    if visiting.insert(type_name.as_str()) {
                        self.properties(kind, nested, &here, visiting)?;
                        visiting.remove(type_name.as_str());
                    }
                }
            }
        }
        Ok(())
    }
}

fn push<T: PartialEq>(into: &mut Vec<T>, item: T) {
    if !into.contains(&item) {
        into.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_from(text: &str) -> Result<Config, Error> {
        let dir = tempfile::tempdir().map_err(|source| Error::Read {
            file: "tempdir".into(),
            field: FIELD.into(),
            path: "tempdir".into(),
            source,
        })?;
        let file = dir.path().join("crd.json");
        std::fs::write(&file, text).map_err(|source| Error::Read {
            file: file.clone(),
            field: FIELD.into(),
            path: file.clone(),
            source,
        })?;
        let mut config = Config::default();
        load(
            &mut config,
            dir.path(),
            "crd.json",
            &dir.path().join("kustomization.yaml"),
        )?;
        Ok(config)
    }

    #[test]
    fn references_and_fields_come_from_extensions() {
        let config = config_from(
            r#"{
  "x.v1.Foo": {"Schema": {"properties": {
    "kind": {}, "apiVersion": {}, "metadata": {},
    "spec": {"$ref": "x.v1.FooSpec"}}}},
  "x.v1.FooSpec": {"Schema": {"properties": {
    "barRef": {"x-kubernetes-object-ref-api-version": "v1",
               "x-kubernetes-object-ref-kind": "Bar",
               "x-kubernetes-object-ref-name-key": "id"},
    "selector": {"x-kubernetes-label-selector": ""},
    "notes": {"x-kubernetes-annotation": ""},
    "alias": {"x-kubernetes-identity": ""}}}}
}"#,
        );
        let config = match config {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let reference = Reference {
            referral: ("".into(), "v1".into(), "Bar".into()),
            referrer: ("".into(), "".into(), "Foo".into()),
            path: "spec/barRef/id".into(),
        };
        assert!(config.name_references.contains(&reference));
        let has =
            |list: &[FieldSpec], path: &str| list.iter().any(|s| s.kind == "Foo" && s.path == path);
        assert!(has(&config.common_labels, "spec/selector"));
        assert!(has(&config.common_annotations, "spec/notes"));
        assert!(has(&config.name_prefix, "spec/alias"));
    }

    #[test]
    fn cyclic_and_exploding_definitions_end() {
        let cyclic = r#"{"a.A": {"Schema": {"properties": {
            "kind": {}, "apiVersion": {}, "metadata": {}, "self": {"$ref": "a.A"}}}}}"#;
        assert!(config_from(cyclic).is_ok());
        // Each type refers to the next twice: 2^40 paths.
        let mut defs = vec![r#""t.T0": {"Schema": {"properties": {"kind": {}, "apiVersion": {}, "metadata": {}, "a": {"$ref": "t.T1"}, "b": {"$ref": "t.T1"}}}}"#.to_string()];
        for i in 1..40 {
            defs.push(format!(
                r#""t.T{i}": {{"Schema": {{"properties": {{"a": {{"$ref": "t.T{n}"}}, "b": {{"$ref": "t.T{n}"}}}}}}}}"#,
                n = i + 1
            ));
        }
        let text = format!("{{{}}}", defs.join(","));
        let error = match config_from(&text) {
            Ok(_) => panic!("expected the budget to run out"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("more than"), "{error}");
    }

    #[test]
    fn wrong_types_are_refused() {
        assert!(config_from("[1, 2]").is_err());
        assert!(config_from(r#"{"a.B": 5}"#).is_err());
        assert!(config_from(r#"{"a.B": {"Schema": {"properties": 5}}}"#).is_err());
        assert!(config_from(r#"{"a.B": {"Schema": {"properties": {"x": {"$ref": 1}}}}}"#).is_err());
    }
}
