//! [`ObjRef`]: which object, by group, version, kind, namespace and name.

use std::fmt;

use serde_json::Value;

/// A manifest that cannot name the object it describes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ObjRefError {
    /// The manifest lacks `apiVersion`, `kind` or `metadata.name`.
    #[error("manifest #{index} ({kind}/{name}): missing or empty {field}")]
    MissingField {
        index: usize,
        kind: String,
        name: String,
        field: &'static str,
    },
    /// A stored inventory id that [`ObjRef::from_id`] cannot read.
    #[error("inventory id {id:?} is not group_version_kind_namespace_name")]
    BadId { id: String },
}

/// One Kubernetes object. `group` is empty for the core group, `namespace`
/// is `None` for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjRef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjRef {
    /// Reads `apiVersion`, `kind`, `metadata.namespace` and `metadata.name`.
    /// `index` is the manifest's position in its set, for the error.
    pub fn from_manifest(index: usize, manifest: &Value) -> Result<ObjRef, ObjRefError> {
        let text = |pointer: &str| {
            manifest
                .pointer(pointer)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let missing = |field| ObjRefError::MissingField {
            index,
            kind: text("/kind").unwrap_or("?").to_string(),
            name: text("/metadata/name").unwrap_or("?").to_string(),
            field,
        };
        let api_version = text("/apiVersion").ok_or_else(|| missing("apiVersion"))?;
        let kind = text("/kind").ok_or_else(|| missing("kind"))?;
        let name = text("/metadata/name").ok_or_else(|| missing("metadata.name"))?;
        let (group, version) = split_api_version(api_version);
        Ok(ObjRef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: text("/metadata/namespace").map(str::to_string),
            name: name.to_string(),
        })
    }

    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The same object whatever its version: group, kind, namespace, name.
    /// Two refs with the same identity name one object in the cluster (an
    /// `apps/v1beta1` and an `apps/v1` Deployment of the same name are one).
    pub fn identity(&self) -> (&str, &str, Option<&str>, &str) {
        (
            &self.group,
            &self.kind,
            self.namespace.as_deref(),
            &self.name,
        )
    }

    /// A stable one-line form for storage: `group_version_kind_namespace_name`,
    /// empty fields for the core group and cluster-scoped objects. The name
    /// comes last because only it may contain `_` (RBAC names may).
    pub fn to_id(&self) -> String {
        format!(
            "{}_{}_{}_{}_{}",
            self.group,
            self.version,
            self.kind,
            self.namespace.as_deref().unwrap_or(""),
            self.name
        )
    }

    /// Reads what [`ObjRef::to_id`] wrote.
    pub fn from_id(id: &str) -> Result<ObjRef, ObjRefError> {
        let bad = || ObjRefError::BadId { id: id.to_string() };
        let mut parts = id.splitn(5, '_');
        let mut next = || parts.next().ok_or_else(bad);
        let (group, version, kind, namespace, name) = (next()?, next()?, next()?, next()?, next()?);
        if version.is_empty() || kind.is_empty() || name.is_empty() {
            return Err(bad());
        }
        Ok(ObjRef {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
            namespace: (!namespace.is_empty()).then(|| namespace.to_string()),
            name: name.to_string(),
        })
    }

    pub(crate) fn is_kind(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }

    pub(crate) fn is_namespace(&self) -> bool {
        self.is_kind("", "Namespace")
    }

    pub(crate) fn is_crd(&self) -> bool {
        self.is_kind("apiextensions.k8s.io", "CustomResourceDefinition")
    }
}

/// Flux's form: `Kind/namespace/name`, or `Kind/name` when cluster-scoped.
impl fmt::Display for ObjRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub(crate) fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> ObjRef {
        ObjRef {
            group: "apps".into(),
            version: "v1".into(),
            kind: "Deployment".into(),
            namespace: Some("apps".into()),
            name: "web".into(),
        }
    }

    #[test]
    fn display_is_kind_namespace_name_like_flux() {
        assert_eq!(deployment().to_string(), "Deployment/apps/web");
        let ns = ObjRef {
            group: String::new(),
            version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "apps".into(),
        };
        assert_eq!(ns.to_string(), "Namespace/apps");
    }

    #[test]
    fn ids_round_trip_for_core_cluster_scoped_and_underscored_names() {
        let role = ObjRef {
            group: "rbac.authorization.k8s.io".into(),
            version: "v1".into(),
            kind: "ClusterRole".into(),
            namespace: None,
            name: "system:odd_name_with_underscores".into(),
        };
        let cm = ObjRef {
            group: String::new(),
            version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("default".into()),
            name: "settings".into(),
        };
        for r in [deployment(), role, cm] {
            assert_eq!(ObjRef::from_id(&r.to_id()), Ok(r.clone()), "{}", r.to_id());
        }
        assert_eq!(deployment().to_id(), "apps_v1_Deployment_apps_web");
    }

    #[test]
    fn from_id_rejects_text_that_is_not_an_id() {
        for id in [
            "",
            "apps_v1_Deployment",
            "apps__Deployment_ns_web",
            "a_v1_K_ns_",
        ] {
            assert!(ObjRef::from_id(id).is_err(), "{id}");
        }
    }

    #[test]
    fn from_manifest_reads_the_core_group_and_the_namespace() {
        let r = ObjRef::from_manifest(
            0,
            &json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "c", "namespace": "n"}}),
        )
        .unwrap();
        assert_eq!(r.group, "");
        assert_eq!(r.api_version(), "v1");
        assert_eq!(r.namespace.as_deref(), Some("n"));
    }

    #[test]
    fn from_manifest_names_the_missing_field_and_the_position() {
        let err = ObjRef::from_manifest(3, &json!({"apiVersion": "v1", "kind": "ConfigMap"}))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest #3 (ConfigMap/?): missing or empty metadata.name"
        );
    }
}
