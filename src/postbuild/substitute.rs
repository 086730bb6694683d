//! `${var}` substitution over built objects, as Flux does it: on each
//! object's YAML text, read back afterwards, so `replicas: ${count}`
//! becomes a number and a value may hold YAML — except strings the
//! manifest quoted, which stay strings (Flux's kyaml keeps their quotes).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{describe, disabled, envsubst, Error};
use crate::kustomize;

/// Substitutes `vars` in every object not marked `substitute: disabled`.
/// `quoted[i]` holds the strings object `i`'s manifest quoted (none when
/// shorter). Undefined variables expand to "" unless `strict`, where they
/// are an error naming the object and the variable.
pub fn substitute(
    objects: &mut [Value],
    quoted: &[BTreeSet<String>],
    vars: &BTreeMap<String, String>,
    strict: bool,
) -> Result<(), Error> {
    let lookup = |name: &str| vars.get(name).cloned();
    let none = BTreeSet::new();
    for (index, object) in objects.iter_mut().enumerate() {
        if disabled(object, "substitute", true) {
            continue;
        }
        let text = kustomize::value_to_yaml(object);
        if !text.contains("${") && !text.contains("$$") {
            continue;
        }
        let expanded =
            envsubst::expand(&text, &lookup, strict).map_err(|source| Error::Substitute {
                object: describe(object),
                source,
            })?;
        if expanded == text {
            continue;
        }
        let mut substituted =
            kustomize::parse_object(&expanded).map_err(|message| Error::SubstitutedYaml {
                object: describe(object),
                message,
            })?;
        let quoted = quoted.get(index).unwrap_or(&none);
        if !quoted.is_empty() {
            let mut keep = |text: &str| envsubst::expand(text, &lookup, strict).ok();
            keep_strings(object, &mut substituted, quoted, &mut keep);
        }
        *object = substituted;
    }
    Ok(())
}

/// Where `before` held one of the `quoted` strings, `after` gets that
/// string substituted, as a string.
fn keep_strings(
    before: &Value,
    after: &mut Value,
    quoted: &BTreeSet<String>,
    expand: &mut dyn FnMut(&str) -> Option<String>,
) {
    match (before, after) {
        (Value::String(text), after) if quoted.contains(text) => {
            if let Some(expanded) = expand(text) {
                *after = Value::String(expanded);
            }
        }
        (Value::Object(before), Value::Object(after)) => {
            for (key, value) in before {
                if let Some(target) = after.get_mut(key) {
                    keep_strings(value, target, quoted, expand);
                }
            }
        }
        (Value::Array(before), Value::Array(after)) if before.len() == after.len() => {
            for (value, target) in before.iter().zip(after.iter_mut()) {
                keep_strings(value, target, quoted, expand);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_are_read_back_as_yaml() {
        let mut objects = vec![json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web-${cluster}", "namespace": "apps"},
            "spec": {"replicas": "${replicas:=1}", "paused": "${paused}"}
        })];
        substitute(
            &mut objects,
            &[],
            &vars(&[("cluster", "edge-1"), ("paused", "false")]),
            false,
        )
        .expect("substitute");
        assert_eq!(objects[0]["metadata"]["name"], "web-edge-1");
        assert_eq!(objects[0]["spec"]["replicas"], 1);
        assert_eq!(objects[0]["spec"]["paused"], false);
    }

    #[test]
    fn strings_the_manifest_quoted_stay_strings() {
        let mut objects = vec![json!({
            "kind": "ConfigMap", "metadata": {"name": "a"},
            "data": {"quoted": "${port}", "plain": "${port}"}
        })];
        // Both read as the same string; only the manifest knew one was quoted.
        let quoted = [BTreeSet::from(["${port}".to_string()])];
        let mut plain = objects.clone();
        substitute(&mut objects, &quoted, &vars(&[("port", "8080")]), false).expect("substitute");
        assert_eq!(objects[0]["data"]["quoted"], "8080");
        substitute(&mut plain, &[], &vars(&[("port", "8080")]), false).expect("substitute");
        assert_eq!(plain[0]["data"]["plain"], 8080);
    }

    #[test]
    fn disabled_objects_and_escapes_are_left_alone() {
        let script = "echo $${HOME} $$ ${region}";
        let mut objects = vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}}, "data": {"x": "${region}"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "b", "labels": {"kedge.dev/substitute": "disabled"}}, "data": {"x": "${region}"}}),
            json!({"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"run.sh": script}}),
        ];
        substitute(&mut objects, &[], &vars(&[("region", "eu")]), false).expect("substitute");
        assert_eq!(objects[0]["data"]["x"], "${region}");
        assert_eq!(objects[1]["data"]["x"], "${region}");
        assert_eq!(objects[2]["data"]["run.sh"], "echo ${HOME} $ eu");
    }

    #[test]
    fn strict_names_the_object_and_the_variable() {
        let mut objects = vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "apps"}, "data": {"x": "${missing}"}}),
        ];
        let err = substitute(&mut objects, &[], &vars(&[]), true).expect_err("strict");
        let message = err.to_string();
        assert!(
            message.contains("ConfigMap/apps/c") && message.contains("\"missing\""),
            "{message}"
        );
        substitute(&mut objects, &[], &vars(&[]), false).expect("not strict");
        // The YAML line `x: ` reads back as null, as under Flux.
        assert_eq!(objects[0]["data"]["x"], Value::Null);
    }
}
