//! Drift ignore rules: fields of chosen objects that kedge leaves to
//! others (an autoscaler owns a Deployment's `/spec/replicas`). Pure
//! functions, unit-tested without a cluster; shared by every owner kind
//! that applies (kustomizations, Helm releases).
//!
//! # Design
//! A rule is a list of JSON pointers (RFC 6901) and the objects they apply
//! to. An ignored field is left out of drift in two places:
//! - applying: when the object exists, a declared field at an ignored
//!   pointer takes the live value (or is dropped when the live object has
//!   none), so an apply never changes it; a new object is created with
//!   the declared value;
//! - judging drift: kedge's `managedFields` paths under an ignored pointer
//!   are left out of the object's fingerprint, so another manager taking
//!   them is not drift.
//!
//! # Current limitations
//! `managedFields` names list items by key (`k:{"name":"web"}`), not by
//! index: a pointer through a list index (`/spec/containers/0/image`)
//! ignores that path in every item of the list when judging drift.
//! Targets select by group, version, kind, name and namespace; Flux's
//! label and annotation selectors are refused by the config.

use regex::Regex;
use serde_json::Value;

use super::objref::ObjRef;

/// Which objects a rule applies to: every field given must match; `name`
/// and `namespace` are anchored regular expressions, as in Flux's
/// selectors. An empty selector matches every object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectSelector {
    pub group: Option<String>,
    pub version: Option<String>,
    pub kind: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
}

/// One ignore rule as configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreRule {
    /// JSON pointers, each starting with `/`.
    pub paths: Vec<String>,
    pub target: ObjectSelector,
}

/// Why a rule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IgnoreError {
    /// A path is not a JSON pointer to a field.
    #[error("{path:?} is not a JSON pointer to a field (write it like \"/spec/replicas\")")]
    Pointer { path: String },
    /// A name or namespace pattern is not a regular expression.
    #[error("invalid pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
}

/// A JSON pointer as its unescaped segments.
type Pointer = Vec<String>;

struct Compiled {
    pointers: Vec<Pointer>,
    target: ObjectSelector,
    name: Option<Regex>,
    namespace: Option<Regex>,
}

/// Compiled ignore rules of one owner.
#[derive(Default)]
pub struct DriftIgnore {
    rules: Vec<Compiled>,
    /// The rules as given, to tell whether two sets are the same.
    source: Vec<IgnoreRule>,
}

impl PartialEq for DriftIgnore {
    fn eq(&self, other: &DriftIgnore) -> bool {
        self.source == other.source
    }
}

impl std::fmt::Debug for DriftIgnore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftIgnore")
            .field("rules", &self.rules.len())
            .finish()
    }
}

/// `path` as segments, or an error when it is not a pointer to a field.
pub fn parse_pointer(path: &str) -> Result<Vec<String>, IgnoreError> {
    let invalid = || IgnoreError::Pointer {
        path: path.to_string(),
    };
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    let segments: Vec<String> = rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    if segments.iter().any(String::is_empty) {
        return Err(invalid());
    }
    Ok(segments)
}

/// `pattern` anchored, as Flux anchors selector names.
pub fn anchored(pattern: &str) -> Result<Regex, IgnoreError> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| IgnoreError::Pattern {
        pattern: pattern.to_string(),
        message: e.to_string(),
    })
}

impl DriftIgnore {
    /// Compiles `rules`.
    ///
    /// # Errors
    /// The first path that is not a pointer, or pattern that is not a
    /// regular expression.
    pub fn new(rules: &[IgnoreRule]) -> Result<DriftIgnore, IgnoreError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for rule in rules {
            let pointers = rule
                .paths
                .iter()
                .map(|p| parse_pointer(p))
                .collect::<Result<_, _>>()?;
            let pattern = |p: &Option<String>| p.as_deref().map(anchored).transpose();
            compiled.push(Compiled {
                pointers,
                name: pattern(&rule.target.name)?,
                namespace: pattern(&rule.target.namespace)?,
                target: rule.target.clone(),
            });
        }
        Ok(DriftIgnore {
            rules: compiled,
            source: rules.to_vec(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The ignored pointers of `object`.
    pub(crate) fn pointers(&self, object: &ObjRef) -> Vec<&[String]> {
        self.rules
            .iter()
            .filter(|rule| rule.matches(object))
            .flat_map(|rule| rule.pointers.iter().map(Vec::as_slice))
            .collect()
    }

    /// Makes `body` (the manifest of `object`) leave its ignored fields as
    /// they are in `live`: a declared field takes the live value, or is
    /// dropped when the live object has none; a field the manifest does not
    /// declare stays undeclared. A new object (`live` is `None`) keeps the
    /// declared values.
    pub(crate) fn keep_live(&self, object: &ObjRef, body: &mut Value, live: Option<&Value>) {
        let Some(live) = live else {
            return;
        };
        for pointer in self.pointers(object) {
            let Some(declared) = value_at_mut(body, pointer) else {
                continue;
            };
            match value_at(live, pointer) {
                Some(value) => *declared = value.clone(),
                None => remove_at(body, pointer),
            }
        }
    }
}

impl Compiled {
    fn matches(&self, o: &ObjRef) -> bool {
        let t = &self.target;
        let equal = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        equal(&t.group, &o.group)
            && equal(&t.version, &o.version)
            && equal(&t.kind, &o.kind)
            && self.name.as_ref().is_none_or(|re| re.is_match(&o.name))
            && self
                .namespace
                .as_ref()
                .is_none_or(|re| re.is_match(o.namespace.as_deref().unwrap_or("")))
    }
}

fn value_at<'a>(value: &'a Value, pointer: &[String]) -> Option<&'a Value> {
    pointer.iter().try_fold(value, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

fn value_at_mut<'a>(value: &'a mut Value, pointer: &[String]) -> Option<&'a mut Value> {
    pointer.iter().try_fold(value, |node, segment| match node {
        Value::Object(map) => map.get_mut(segment),
        Value::Array(items) => items.get_mut(segment.parse::<usize>().ok()?),
        _ => None,
    })
}

fn remove_at(value: &mut Value, pointer: &[String]) {
    let Some((last, parents)) = pointer.split_last() else {
        return;
    };
    match value_at_mut(value, parents) {
        Some(Value::Object(map)) => {
            map.remove(last);
        }
        Some(Value::Array(items)) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|i| *i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}

/// Whether the `fieldsV1` entry `name` (`f:replicas`, `k:{…}`, `v:…`,
/// `i:3`) is what pointer segment `segment` names. A list index matches
/// every item named by key or value (see the module's limitations).
pub(crate) fn names_field(segment: &str, name: &str) -> bool {
    if let Some(field) = name.strip_prefix("f:") {
        return field == segment;
    }
    if !segment.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    match name.strip_prefix("i:") {
        Some(index) => index == segment,
        None => name.starts_with("k:") || name.starts_with("v:"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn web() -> ObjRef {
        ObjRef::from_id("apps_v1_Deployment_shop_web").unwrap()
    }

    fn replicas_of_web() -> DriftIgnore {
        DriftIgnore::new(&[IgnoreRule {
            paths: vec!["/spec/replicas".into()],
            target: ObjectSelector {
                kind: Some("Deployment".into()),
                name: Some("web".into()),
                ..ObjectSelector::default()
            },
        }])
        .unwrap()
    }

    #[test]
    fn pointers_are_unescaped_and_must_name_a_field() {
        assert_eq!(
            parse_pointer("/metadata/annotations/a~1b~0c").unwrap(),
            vec!["metadata", "annotations", "a/b~c"]
        );
        for bad in ["spec/replicas", "/", "/spec//x", ""] {
            assert!(parse_pointer(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_rule_applies_to_the_objects_its_target_names_with_anchored_patterns() {
        let ignore = replicas_of_web();
        assert_eq!(ignore.pointers(&web()).len(), 1);
        let other = ObjRef::from_id("apps_v1_Deployment_shop_web-2").unwrap();
        assert!(ignore.pointers(&other).is_empty(), "the name is anchored");
        let cm = ObjRef::from_id("_v1_ConfigMap_shop_web").unwrap();
        assert!(ignore.pointers(&cm).is_empty());
        let everything = DriftIgnore::new(&[IgnoreRule {
            paths: vec!["/metadata/labels".into()],
            target: ObjectSelector::default(),
        }])
        .unwrap();
        assert_eq!(everything.pointers(&cm).len(), 1);
        let bad = DriftIgnore::new(&[IgnoreRule {
            paths: vec!["/x".into()],
            target: ObjectSelector {
                name: Some("(".into()),
                ..ObjectSelector::default()
            },
        }]);
        assert!(matches!(bad, Err(IgnoreError::Pattern { .. })));
    }

    #[test]
    fn an_existing_object_keeps_its_live_value_and_a_new_one_the_declared() {
        let ignore = replicas_of_web();
        let declared = json!({"spec": {"replicas": 2, "paused": false}});
        let mut body = declared.clone();
        ignore.keep_live(&web(), &mut body, Some(&json!({"spec": {"replicas": 7}})));
        assert_eq!(body, json!({"spec": {"replicas": 7, "paused": false}}));

        let mut body = declared.clone();
        ignore.keep_live(&web(), &mut body, Some(&json!({"spec": {}})));
        assert_eq!(
            body,
            json!({"spec": {"paused": false}}),
            "no live value: none applied"
        );

        let mut body = declared.clone();
        ignore.keep_live(&web(), &mut body, None);
        assert_eq!(body, declared);

        let mut body = json!({"spec": {"paused": false}});
        ignore.keep_live(&web(), &mut body, Some(&json!({"spec": {"replicas": 7}})));
        assert_eq!(
            body,
            json!({"spec": {"paused": false}}),
            "an undeclared field is not claimed"
        );
    }

    #[test]
    fn field_names_of_managed_fields_match_pointer_segments() {
        assert!(names_field("replicas", "f:replicas"));
        assert!(!names_field("replicas", "f:replica"));
        assert!(names_field("0", r#"k:{"name":"web"}"#));
        assert!(names_field("2", "i:2"));
        assert!(!names_field("2", "i:3"));
        assert!(!names_field("name", r#"k:{"name":"web"}"#));
    }
}
