//! Name references: once prefixes, suffixes, hashes and namespaces are in
//! place, every field that names another object of the build (a ConfigMap
//! in a volume, a ServiceAccount in a RoleBinding, …) is rewritten to the
//! object's final name. Which fields refer to which kinds is kustomize's
//! default table, kept in `name_references.txt`.

use std::collections::HashSet;

use serde_json::Value;

use super::config::Reference;
use super::fieldspec::visit;
use super::resource::{ResId, Resource};
use super::schema::is_cluster_scoped;

/// kustomize's default name references.
pub fn default_references() -> Vec<Reference> {
    include_str!("name_references.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("<-"))
        .filter_map(|line| {
            let (referral, referrer) = line.split_once(" <- ")?;
            let a: Vec<&str> = referral.split('|').collect();
            let b: Vec<&str> = referrer.split('|').collect();
            if a.len() != 3 || b.len() != 4 {
                return None;
            }
            Some(Reference {
                referral: (a[0].into(), a[1].into(), a[2].into()),
                referrer: (b[0].into(), b[1].into(), b[2].into()),
                path: b[3].into(),
            })
        })
        .collect()
}

fn selects(gvk: &(String, String, String), id: &ResId) -> bool {
    (gvk.0.is_empty() || gvk.0 == id.group)
        && (gvk.1.is_empty() || gvk.1 == id.version)
        && (gvk.2.is_empty() || gvk.2 == id.kind)
}

fn effective_ns(id: &ResId) -> &str {
    if id.namespace.is_empty() {
        "default"
    } else {
        &id.namespace
    }
}

fn ns_equal(a: &ResId, b: &ResId) -> bool {
    effective_ns(a) == effective_ns(b)
}

fn cluster_scoped(id: &ResId) -> bool {
    is_cluster_scoped(&id.group, &id.version, &id.kind)
}

/// A snapshot of one candidate referral.
struct Candidate {
    previous: Vec<ResId>,
    current: ResId,
    prefixes: Vec<String>,
    suffixes: Vec<String>,
}

/// Rewrites every name reference; an error names the referrer when a name
/// is ambiguous.
pub fn fix(resources: &mut [Resource], references: &[Reference]) -> Result<(), String> {
    let candidates: Vec<Candidate> = resources
        .iter()
        .map(|r| Candidate {
            previous: r.previous_ids.clone(),
            current: r.id(),
            prefixes: r.prefixes.clone(),
            suffixes: r.suffixes.clone(),
        })
        .collect();
    for r in resources.iter_mut() {
        let original = r.original_id();
        let referrer_id = r.id();
        let subset = referable_by(&candidates, r);
        let ctx = (r.prefixes.clone(), r.suffixes.clone());
        for reference in references
            .iter()
            .filter(|t| selects(&t.referrer, &original))
        {
            let chosen: Vec<&Candidate> = subset
                .iter()
                .map(|&i| &candidates[i])
                .filter(|c| c.previous.iter().any(|id| selects(&reference.referral, id)))
                .collect();
            if reference.path == "subjects" && has_blank_subject_namespace(&r.value) {
                return Err(format!(
                    "Invalid Input: namespace is blank for resource {referrer_id}"
                ));
            }
            if chosen.is_empty() {
                continue;
            }
            let role_ref = role_ref_kind(&r.value, &reference.path);
            let finder = Finder {
                candidates: &chosen,
                referrer: &referrer_id,
                ctx: &ctx,
                role_ref,
            };
            visit(&mut r.value, &reference.path, false, &mut |node| {
                finder.set(node)
            })
            .map_err(|e| {
                format!(
                    "updating name reference in '{}' field of '{}': {e}",
                    reference.path, referrer_id
                )
            })?;
        }
    }
    Ok(())
}

/// A subject with `namespace:` and no value, which kustomize refuses.
fn has_blank_subject_namespace(value: &Value) -> bool {
    value
        .get("subjects")
        .and_then(Value::as_array)
        .is_some_and(|subjects| {
            subjects
                .iter()
                .any(|s| s.get("namespace").is_some_and(Value::is_null))
        })
}

/// The kinds a RoleBinding's `roleRef` may name.
fn role_ref_kind(value: &Value, path: &str) -> Option<(String, String)> {
    if !path.ends_with("roleRef/name") {
        return None;
    }
    let role_ref = value.get("roleRef")?;
    Some((
        role_ref.get("apiGroup")?.as_str()?.to_string(),
        role_ref.get("kind")?.as_str()?.to_string(),
    ))
}

fn referable_by(candidates: &[Candidate], referrer: &Resource) -> Vec<usize> {
    let id = referrer.id();
    if cluster_scoped(&id) {
        return (0..candidates.len()).collect();
    }
    let subject_namespaces: HashSet<String> = if id.kind == "RoleBinding"
        || id.kind == "ClusterRoleBinding"
    {
        referrer
            .value
            .get("subjects")
            .and_then(Value::as_array)
            .map(|s| {
                s.iter()
                    .filter(|s| s.get("kind").and_then(Value::as_str) == Some("ServiceAccount"))
                    .filter_map(|s| s.get("namespace").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        HashSet::new()
    };
    candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| {
            cluster_scoped(&c.current)
                || ns_equal(&c.current, &id)
                || subject_namespaces.contains(&c.current.namespace)
        })
        .map(|(i, _)| i)
        .collect()
}

struct Finder<'a> {
    candidates: &'a [&'a Candidate],
    referrer: &'a ResId,
    ctx: &'a (Vec<String>, Vec<String>),
    role_ref: Option<(String, String)>,
}

impl Finder<'_> {
    fn set(&self, node: &mut Value) -> Result<(), String> {
        match node {
            Value::String(name) => {
                if let Some(c) = self.select(name, None, false)? {
                    *name = c.current.name.clone();
                }
                Ok(())
            }
            Value::Object(map) => {
                let Some(name) = map.get("name").and_then(Value::as_str).map(String::from) else {
                    return Ok(());
                };
                let namespace = map
                    .get("namespace")
                    .and_then(Value::as_str)
                    .map(String::from);
                if let Some(c) = self.select(&name, namespace.as_deref(), true)? {
                    if c.current.name == name && c.current.namespace.is_empty() {
                        return Ok(());
                    }
                    map.insert("name".into(), Value::String(c.current.name.clone()));
                    if !c.current.namespace.is_empty() {
                        map.insert(
                            "namespace".into(),
                            Value::String(c.current.namespace.clone()),
                        );
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                for item in items {
                    self.set(item)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// `in_map`: the reference is a map with `name` (and maybe
    /// `namespace`), so candidates must agree on both.
    fn select(
        &self,
        old: &str,
        namespace: Option<&str>,
        in_map: bool,
    ) -> Result<Option<&Candidate>, String> {
        let mut list: Vec<&Candidate> = self
            .candidates
            .iter()
            .copied()
            .filter(|c| match namespace {
                None => true,
                Some(ns) => {
                    c.previous
                        .first()
                        .is_some_and(|o| effective_ns(o) == ns || o.namespace == ns)
                        || c.current.namespace == ns
                }
            })
            .filter(|c| c.previous.iter().any(|id| id.name == old))
            .filter(|c| match &self.role_ref {
                Some((group, kind)) => c
                    .previous
                    .iter()
                    .any(|id| &id.group == group && &id.kind == kind),
                None => true,
            })
            .filter(|c| {
                cluster_scoped(self.referrer)
                    || cluster_scoped(&c.current)
                    || c.current.kind == "ServiceAccount"
                    || ns_equal(self.referrer, &c.current)
            })
            .collect();
        if list.len() == 1 {
            return Ok(Some(list[0]));
        }
        list.retain(|c| affixes_equal(c, self.ctx, true));
        if list.len() > 1 {
            list.retain(|c| affixes_equal(c, self.ctx, false));
        }
        match list.len() {
            0 => Ok(None),
            1 => Ok(Some(list[0])),
            _ => {
                let first = &list[0].current;
                let identical = list.iter().all(|c| {
                    c.current.name == first.name
                        && (!in_map || c.current.namespace == first.namespace)
                });
                if identical {
                    Ok(Some(list[0]))
                } else {
                    let ids: Vec<String> = list.iter().map(|c| c.current.to_string()).collect();
                    Err(format!(
                        "found multiple possible referrals: {}",
                        ids.join(", ")
                    ))
                }
            }
        }
    }
}

fn affixes_equal(c: &Candidate, ctx: &(Vec<String>, Vec<String>), allow_empty: bool) -> bool {
    let (prefixes, suffixes) = ctx;
    if allow_empty {
        (c.prefixes.is_empty() || prefixes.is_empty() || same_ending(&c.prefixes, prefixes))
            && (c.suffixes.is_empty() || suffixes.is_empty() || same_ending(&c.suffixes, suffixes))
    } else {
        same_ending(&c.prefixes, prefixes) && same_ending(&c.suffixes, suffixes)
    }
}

fn same_ending(a: &[String], b: &[String]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.is_empty() {
        return long.is_empty();
    }
    long.ends_with(short)
}
