//! Turning input manifests into objects ready to apply: named, labelled
//! with their owner, checked for duplicates, and placed (namespace) once
//! their kind is known.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::discovery::Kind;
use super::objref::ObjRef;
use super::ssa::ApplyError;
use super::Owner;

/// A manifest with its [`ObjRef`] and owner labels.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub objref: ObjRef,
    pub body: Value,
}

/// A manifest whose kind is served: ready for dry-run and apply.
#[derive(Debug, Clone)]
pub(crate) struct Placed {
    pub objref: ObjRef,
    pub body: Value,
    pub kind: Kind,
}

/// Names every manifest, adds the owner's labels, and refuses a set that
/// names one object twice.
pub(crate) fn prepare(objects: Vec<Value>, owner: &Owner) -> Result<Vec<Manifest>, ApplyError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(objects.len());
    for (index, mut body) in objects.into_iter().enumerate() {
        let objref = ObjRef::from_manifest(index, &body)?;
        let identity = (
            objref.group.clone(),
            objref.kind.clone(),
            objref.namespace.clone(),
            objref.name.clone(),
        );
        if !seen.insert(identity) {
            return Err(ApplyError::Duplicate { object: objref });
        }
        add_labels(&mut body, owner).map_err(|field| ApplyError::InvalidManifest {
            object: objref.clone(),
            field,
        })?;
        out.push(Manifest { objref, body });
    }
    Ok(out)
}

/// Adds the owner's labels; `Err(field)` names the field that is not a map.
fn add_labels(body: &mut Value, owner: &Owner) -> Result<(), &'static str> {
    let metadata = body
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("metadata")?;
    let labels = metadata
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if labels.is_null() {
        *labels = Value::Object(Map::new());
    }
    let labels = labels.as_object_mut().ok_or("metadata.labels")?;
    for (key, value) in owner.labels() {
        labels.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(())
}

/// Fixes the namespace by the kind's scope: a namespaced object must name
/// one; a cluster-scoped one loses any it names.
pub(crate) fn place(manifest: Manifest, kind: Kind) -> Result<Placed, ApplyError> {
    let Manifest {
        mut objref,
        mut body,
    } = manifest;
    if kind.namespaced && objref.namespace.is_none() {
        return Err(ApplyError::MissingNamespace { object: objref });
    }
    if !kind.namespaced && objref.namespace.is_some() {
        objref.namespace = None;
        if let Some(metadata) = body.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("namespace");
        }
    }
    Ok(Placed { objref, body, kind })
}

/// A kind that a CRD of the set defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DefinedKind {
    pub group: String,
    pub kind: String,
    pub namespaced: bool,
}

impl DefinedKind {
    pub fn defines(&self, object: &ObjRef) -> bool {
        object.is_kind(&self.group, &self.kind)
    }
}

/// The kinds the set's CRDs define, so their custom resources may be
/// applied once the CRDs are in.
pub(crate) fn kinds_defined_by_crds<'a>(
    manifests: impl IntoIterator<Item = &'a Manifest>,
) -> Vec<DefinedKind> {
    manifests
        .into_iter()
        .filter(|m| m.objref.is_crd())
        .filter_map(|m| {
            let text = |pointer| m.body.pointer(pointer).and_then(Value::as_str);
            Some(DefinedKind {
                group: text("/spec/group")?.to_string(),
                kind: text("/spec/names/kind")?.to_string(),
                namespaced: text("/spec/scope") != Some("Cluster"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn owner() -> Owner {
        Owner::new("apps", "Kustomization")
    }

    #[test]
    fn prepare_adds_the_owner_labels_and_keeps_existing_ones() {
        let prepared = prepare(
            vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "namespace": "n", "labels": {"app": "x"}}})],
            &owner(),
        )
        .unwrap();
        assert_eq!(
            prepared[0].body["metadata"]["labels"],
            json!({"app": "x", "kedge.dev/name": "apps", "kedge.dev/kind": "Kustomization"})
        );
    }

    #[test]
    fn prepare_refuses_labels_that_are_not_a_map_naming_the_field() {
        let err = prepare(
            vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "namespace": "n", "labels": "oops"}})],
            &owner(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap/n/c: field metadata.labels must be a map"
        );
    }

    #[test]
    fn prepare_refuses_one_object_named_twice() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "c", "namespace": "n"}});
        let err = prepare(vec![cm.clone(), cm], &owner()).unwrap_err();
        assert!(matches!(err, ApplyError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn crds_in_the_set_define_their_group_kind_and_scope() {
        let crd = |kind: &str, scope: &str| {
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                    "metadata": {"name": format!("{}s.example.com", kind.to_lowercase())},
                    "spec": {"group": "example.com", "names": {"kind": kind}, "scope": scope}})
        };
        let prepared = prepare(
            vec![crd("Widget", "Namespaced"), crd("Fleet", "Cluster")],
            &owner(),
        )
        .unwrap();
        let defined = |kind: &str, namespaced| DefinedKind {
            group: "example.com".into(),
            kind: kind.into(),
            namespaced,
        };
        assert_eq!(
            kinds_defined_by_crds(&prepared),
            vec![defined("Widget", true), defined("Fleet", false)]
        );
    }
}
