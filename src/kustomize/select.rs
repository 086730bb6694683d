//! Target selectors of patches and replacements: group, version, kind,
//! name and namespace (anchored regular expressions, matched against the
//! original and the current id), label and annotation selectors.

use regex::Regex;
use serde_json::{Map, Value};

use super::kustomization::Selector;
use super::resource::Resource;

pub struct Compiled {
    /// Match names and namespaces against every id the object had, not
    /// only the original and current one (replacements do).
    pub any_id: bool,
    selector: Selector,
    name: Option<Regex>,
    namespace: Option<Regex>,
}

fn anchored(pattern: &str) -> Result<Option<Regex>, String> {
    if pattern.is_empty() {
        return Ok(None);
    }
    Regex::new(&format!("^(?:{pattern})$"))
        .map(Some)
        .map_err(|e| format!("invalid pattern '{pattern}': {e}"))
}

impl Compiled {
    pub fn new(selector: &Selector) -> Result<Compiled, String> {
        Ok(Compiled {
            any_id: false,
            selector: selector.clone(),
            name: anchored(&selector.name)?,
            namespace: anchored(&selector.namespace)?,
        })
    }

    pub fn matches(&self, r: &Resource) -> Result<bool, String> {
        let s = &self.selector;
        let current = r.id();
        let original = r.original_id();
        let ids = if self.any_id {
            r.all_ids()
        } else {
            vec![original, current.clone()]
        };
        if !s.group.is_empty() && s.group != current.group
            || !s.version.is_empty() && s.version != current.version
            || !s.kind.is_empty() && s.kind != current.kind
        {
            return Ok(false);
        }
        if let Some(re) = &self.name {
            if !ids.iter().any(|id| re.is_match(&id.name)) {
                return Ok(false);
            }
        }
        if let Some(re) = &self.namespace {
            let ns = |n: &str| {
                if n.is_empty() {
                    "default".to_string()
                } else {
                    n.to_string()
                }
            };
            if !ids.iter().any(|id| re.is_match(&ns(&id.namespace))) {
                return Ok(false);
            }
        }
        let empty = Map::new();
        Ok(
            label_selector_matches(&s.label_selector, r.labels().unwrap_or(&empty))?
                && label_selector_matches(
                    &s.annotation_selector,
                    r.annotations().unwrap_or(&empty),
                )?,
        )
    }
}

/// Kubernetes label selector syntax: `a=b`, `a==b`, `a!=b`, `a in (x,y)`,
/// `a notin (x)`, `a`, `!a`, joined by commas.
pub fn label_selector_matches(selector: &str, labels: &Map<String, Value>) -> Result<bool, String> {
    for requirement in split_top_level(selector, ',', '(', ')') {
        let requirement = requirement.trim();
        if requirement.is_empty() {
            continue;
        }
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        let ok = if let Some((key, values)) = set_requirement(requirement, " notin ") {
            get(key).is_none_or(|v| !values.contains(&v.to_string()))
        } else if let Some((key, values)) = set_requirement(requirement, " in ") {
            get(key).is_some_and(|v| values.contains(&v.to_string()))
        } else if let Some((key, value)) = requirement.split_once("!=") {
            get(key) != Some(value.trim())
        } else if let Some((key, value)) =
            requirement.split_once("==").or(requirement.split_once('='))
        {
            get(key) == Some(value.trim())
        } else if let Some(key) = requirement.strip_prefix('!') {
            get(key).is_none()
        } else if requirement
            .chars()
            .all(|c| c.is_alphanumeric() || "-_./".contains(c))
        {
            get(requirement).is_some()
        } else {
            return Err(format!("invalid selector '{selector}'"));
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Splits `text` at each `separator` that is not inside `open`…`close`
/// (label selector requirements at commas outside `(…)`, field paths at dots
/// outside `[…]`).
pub(super) fn split_top_level(text: &str, separator: char, open: char, close: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut current = String::new();
    for c in text.chars() {
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
        } else if c == separator && depth == 0 {
            parts.push(std::mem::take(&mut current));
            continue;
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

fn set_requirement<'a>(requirement: &'a str, op: &str) -> Option<(&'a str, Vec<String>)> {
    let (key, rest) = requirement.split_once(op)?;
    let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
    Some((
        key.trim(),
        inner.split(',').map(|v| v.trim().to_string()).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_support_equality_and_sets() {
        let labels = json!({"app": "web", "tier": "front"});
        let labels = labels.as_object().unwrap();
        assert!(label_selector_matches("app=web", labels).unwrap());
        assert!(label_selector_matches("app in (web, api),tier!=back", labels).unwrap());
        assert!(!label_selector_matches("app notin (web)", labels).unwrap());
        assert!(label_selector_matches("!missing,tier", labels).unwrap());
    }
}
