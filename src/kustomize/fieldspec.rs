//! Field specs: which field of which kinds a transformer touches. The
//! tables are kustomize's built-in defaults (its `builtinpluginconsts`),
//! written here one spec per line as `group|version|kind|path|create`;
//! an empty group, version or kind matches any.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::kustomization::FieldSpecArgs;
use super::resource::ResId;

/// Deserialized as plugin configurations write it: leniently, unknown
/// fields ignored, as kustomize does (a kustomization's `configurations`
/// are strict: [`FieldSpecArgs`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize)]
pub struct FieldSpec {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub kind: String,
    pub path: String,
    #[serde(default)]
    pub create: bool,
}

/// The field specs `args` declare.
pub fn specs(args: &[FieldSpecArgs]) -> Vec<FieldSpec> {
    args.iter()
        .map(|a| FieldSpec {
            group: a.group.clone(),
            version: a.version.clone(),
            kind: a.kind.clone(),
            path: a.path.clone(),
            create: a.create,
        })
        .collect()
}

impl FieldSpec {
    pub fn matches(&self, id: &ResId) -> bool {
        (self.group.is_empty() || self.group == id.group)
            && (self.version.is_empty() || self.version == id.version)
            && (self.kind.is_empty() || self.kind == id.kind)
    }
}

pub fn parse_table(table: &str) -> Vec<FieldSpec> {
    table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter_map(|line| {
            let parts: Vec<&str> = line.split('|').collect();
            if parts.len() != 5 {
                return None;
            }
            Some(FieldSpec {
                group: parts[0].into(),
                version: parts[1].into(),
                kind: parts[2].into(),
                path: parts[3].into(),
                create: parts[4] == "true",
            })
        })
        .collect()
}

/// `metadata/labels` and the pod template labels of workloads.
pub const METADATA_LABELS: &str = "
|||metadata/labels|true
|v1|ReplicationController|spec/template/metadata/labels|true
||Deployment|spec/template/metadata/labels|true
||ReplicaSet|spec/template/metadata/labels|true
||DaemonSet|spec/template/metadata/labels|true
apps||StatefulSet|spec/template/metadata/labels|true
batch||Job|spec/template/metadata/labels|true
batch||CronJob|spec/jobTemplate/metadata/labels|true
batch||CronJob|spec/jobTemplate/spec/template/metadata/labels|true
";

/// Labels of a StatefulSet's volume claim templates (`commonLabels` only).
pub const VOLUME_CLAIM_TEMPLATE_LABELS: &str = "
apps||StatefulSet|spec/volumeClaimTemplates[]/metadata/labels|true
";

/// Label selectors, in addition to [`METADATA_LABELS`], for `commonLabels`.
pub const SELECTOR_LABELS: &str = "
|v1|Service|spec/selector|true
|v1|ReplicationController|spec/selector|true
||Deployment|spec/selector/matchLabels|true
apps||Deployment|spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels|false
apps||Deployment|spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels|false
apps||Deployment|spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels|false
apps||Deployment|spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels|false
apps||Deployment|spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels|false
||ReplicaSet|spec/selector/matchLabels|true
||DaemonSet|spec/selector/matchLabels|true
apps||StatefulSet|spec/selector/matchLabels|true
apps||StatefulSet|spec/template/spec/affinity/podAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels|false
apps||StatefulSet|spec/template/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels|false
apps||StatefulSet|spec/template/spec/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/podAffinityTerm/labelSelector/matchLabels|false
apps||StatefulSet|spec/template/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution/labelSelector/matchLabels|false
apps||StatefulSet|spec/template/spec/topologySpreadConstraints/labelSelector/matchLabels|false
batch||Job|spec/selector/matchLabels|false
batch||CronJob|spec/jobTemplate/spec/selector/matchLabels|false
policy||PodDisruptionBudget|spec/selector/matchLabels|false
networking.k8s.io||NetworkPolicy|spec/podSelector/matchLabels|false
networking.k8s.io||NetworkPolicy|spec/ingress/from/podSelector/matchLabels|false
networking.k8s.io||NetworkPolicy|spec/egress/to/podSelector/matchLabels|false
";

pub const ANNOTATIONS: &str = "
|||metadata/annotations|true
|v1|ReplicationController|spec/template/metadata/annotations|true
||Deployment|spec/template/metadata/annotations|true
||ReplicaSet|spec/template/metadata/annotations|true
||DaemonSet|spec/template/metadata/annotations|true
||StatefulSet|spec/template/metadata/annotations|true
batch||Job|spec/template/metadata/annotations|true
batch||CronJob|spec/jobTemplate/metadata/annotations|true
batch||CronJob|spec/jobTemplate/spec/template/metadata/annotations|true
";

pub const IMAGES: &str = "
|||spec/containers[]/image|true
|||spec/initContainers[]/image|true
|||spec/volumes[]/image/reference|true
|||spec/template/spec/containers[]/image|true
|||spec/template/spec/initContainers[]/image|true
|||spec/template/spec/volumes[]/image/reference|true
";

pub const REPLICAS: &str = "
||Deployment|spec/replicas|true
||ReplicationController|spec/replicas|true
||ReplicaSet|spec/replicas|true
||StatefulSet|spec/replicas|true
";

/// Visits the field at `path` (segments separated by `/`, `name[]` for a
/// list, lists crossed implicitly). With `create`, missing maps on the way
/// and the field itself (as `null`) are created first.
pub fn visit(
    node: &mut Value,
    path: &str,
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let segments: Vec<String> = split_path(path, '/')
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    visit_segments(node, &segments, create, f)
}

/// kyaml's PathSplitter: splits at `delimiter` except where a backslash
/// escapes it (`a\.b` is one key); a leading delimiter is ignored
/// (`.metadata.name`, `/spec`).
pub fn split_path(path: &str, delimiter: char) -> Vec<String> {
    let mut parts: Vec<&str> = path.split(delimiter).collect();
    if parts.len() > 1 && parts[0].is_empty() {
        parts.remove(0);
    }
    let mut segments: Vec<String> = Vec::new();
    for part in parts {
        match segments.last_mut() {
            Some(last) if last.ends_with('\\') => {
                last.pop();
                last.push(delimiter);
                last.push_str(part);
            }
            _ => segments.push(part.to_string()),
        }
    }
    segments
}

/// kyaml's SmarterPathSplitter: like [`split_path`], and a bracketed part
/// holding the delimiter stays whole: `[name=a.b]` (a list element
/// selector) keeps its brackets, `[cert-manager.io/inject-ca-from]` (a
/// map key) loses them.
pub fn split_path_bracketed(path: &str, delimiter: char) -> Vec<String> {
    let parts = split_path(path, delimiter);
    let mut segments = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = &parts[i];
        if part.starts_with('[') && !part.ends_with(']') {
            let mut bracketed = vec![part.as_str()];
            while i + 1 < parts.len() {
                i += 1;
                bracketed.push(&parts[i]);
                if parts[i].ends_with(']') {
                    break;
                }
            }
            let joined = bracketed.join(&delimiter.to_string());
            if joined.contains('=') {
                segments.push(joined);
            } else {
                segments.push(joined.trim_matches(['[', ']']).to_string());
            }
        } else {
            segments.push(part.clone());
        }
        i += 1;
    }
    segments
}

fn visit_segments(
    node: &mut Value,
    segments: &[&str],
    create: bool,
    f: &mut dyn FnMut(&mut Value) -> Result<(), String>,
) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        return f(node);
    };
    if let Value::Array(items) = node {
        for item in items {
            visit_segments(item, segments, create, f)?;
        }
        return Ok(());
    }
    let (name, is_list) = match first.strip_suffix("[]") {
        Some(name) => (name, true),
        None => (*first, false),
    };
    let Value::Object(map) = node else {
        return Ok(());
    };
    let missing = map.get(name).is_none_or(Value::is_null);
    if missing {
        if !create || is_list {
            return Ok(());
        }
        let placeholder = if rest.is_empty() {
            Value::Null
        } else {
            Value::Object(Map::new())
        };
        map.insert(name.to_string(), placeholder);
    }
    let Some(child) = map.get_mut(name) else {
        return Ok(());
    };
    if is_list {
        if let Value::Array(items) = child {
            for item in items {
                visit_segments(item, rest, create, f)?;
            }
        }
        return Ok(());
    }
    visit_segments(child, rest, create, f)
}

/// Adds `pairs` to the map at each matching spec's path.
pub fn set_map_entries(
    value: &mut Value,
    specs: &[FieldSpec],
    pairs: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let id = ResId::of(value);
    for spec in specs.iter().filter(|s| s.matches(&id)) {
        visit(value, &spec.path, spec.create, &mut |node| {
            if node.is_null() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else {
                return Err(format!("{} is not a map", spec.path));
            };
            for (k, v) in pairs {
                map.insert(k.clone(), Value::String(v.clone()));
            }
            Ok(())
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn visiting_crosses_lists_and_creates_when_asked() {
        let mut v = json!({"spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
        let mut seen = Vec::new();
        visit(&mut v, "spec/containers[]/image", false, &mut |n| {
            seen.push(n.as_str().unwrap_or_default().to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec!["a", "b"]);
        visit(&mut v, "metadata/labels", true, &mut |n| {
            *n = json!({"x": "y"});
            Ok(())
        })
        .unwrap();
        assert_eq!(v["metadata"]["labels"]["x"], "y");
    }

    #[test]
    fn paths_split_like_kyaml() {
        assert_eq!(split_path(".metadata.name", '.'), ["metadata", "name"]);
        assert_eq!(split_path(r"labels.a\.b/c", '.'), ["labels", "a.b/c"]);
        assert_eq!(
            split_path_bracketed("metadata.annotations.[cert-manager.io/x]", '.'),
            ["metadata", "annotations", "cert-manager.io/x"]
        );
        assert_eq!(
            split_path_bracketed("spec.containers.[name=a.b].image", '.'),
            ["spec", "containers", "[name=a.b]", "image"]
        );
    }

    #[test]
    fn the_tables_parse() {
        assert_eq!(parse_table(METADATA_LABELS).len(), 9);
        assert!(parse_table(SELECTOR_LABELS)
            .iter()
            .all(|s| !s.path.is_empty()));
    }
}
