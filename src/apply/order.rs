//! The order objects are applied in: one table, [`APPLY_ORDER`], and the
//! stages the apply proceeds through.

use super::objref::ObjRef;

/// Kinds applied first, in this order; every other kind comes after them,
/// except [`APPLY_LAST`]. Definitions the others depend on lead (a CR needs
/// its CRD, a namespaced object its Namespace, a RoleBinding its Role), and
/// admission webhooks close, so a webhook whose Service is not ready yet
/// cannot reject the rest of the set.
pub const APPLY_ORDER: &[&str] = &[
    "CustomResourceDefinition",
    "Namespace",
    "ResourceQuota",
    "LimitRange",
    "StorageClass",
    "PriorityClass",
    "ServiceAccount",
    "PodSecurityPolicy",
    "Role",
    "ClusterRole",
    "RoleBinding",
    "ClusterRoleBinding",
    "ConfigMap",
    "Secret",
    "Service",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
    "PodDisruptionBudget",
];

/// Kinds applied after everything else, in this order.
pub const APPLY_LAST: &[&str] = &[
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
];

/// A group of objects applied together (concurrently) before the next
/// group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// CRDs and Namespaces: what other objects' kinds and namespaces need.
    /// CRDs are waited for until Established before the next stage.
    Definitions,
    /// Everything else.
    Resources,
    /// Webhooks and API services, once what they point at exists.
    Admission,
}

impl Stage {
    pub fn of(object: &ObjRef) -> Stage {
        if object.is_crd() || object.is_namespace() {
            Stage::Definitions
        } else if APPLY_LAST.contains(&object.kind.as_str()) {
            Stage::Admission
        } else {
            Stage::Resources
        }
    }
}

/// Where `kind` sorts: its place in [`APPLY_ORDER`], then all other kinds,
/// then [`APPLY_LAST`].
fn rank(kind: &str) -> usize {
    if let Some(i) = APPLY_ORDER.iter().position(|k| *k == kind) {
        return i;
    }
    match APPLY_LAST.iter().position(|k| *k == kind) {
        Some(i) => APPLY_ORDER.len() + 1 + i,
        None => APPLY_ORDER.len(),
    }
}

/// Sorts objects into apply order: by [`APPLY_ORDER`] rank, then kind,
/// namespace and name, so the same set always applies in the same order.
pub fn order<T>(mut objects: Vec<T>, object_ref: impl Fn(&T) -> &ObjRef) -> Vec<T> {
    objects.sort_by(|a, b| {
        let (a, b) = (object_ref(a), object_ref(b));
        (rank(&a.kind), &a.kind, &a.namespace, &a.name).cmp(&(
            rank(&b.kind),
            &b.kind,
            &b.namespace,
            &b.name,
        ))
    });
    objects
}

/// Splits ordered objects into their stages, keeping order inside each.
/// Empty stages are left out.
pub fn stages<T>(objects: Vec<T>, object_ref: impl Fn(&T) -> &ObjRef) -> Vec<(Stage, Vec<T>)> {
    let mut out: Vec<(Stage, Vec<T>)> = Vec::new();
    for object in order(objects, &object_ref) {
        let stage = Stage::of(object_ref(&object));
        match out.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, group)) => group.push(object),
            None => out.push((stage, vec![object])),
        }
    }
    out.sort_by_key(|(s, _)| *s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjRef {
        ObjRef {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    fn kinds(objects: &[ObjRef]) -> Vec<&str> {
        objects.iter().map(|o| o.kind.as_str()).collect()
    }

    #[test]
    fn crds_and_namespaces_come_first_and_webhooks_last() {
        let objects = vec![
            obj(
                "admissionregistration.k8s.io",
                "ValidatingWebhookConfiguration",
                None,
                "v",
            ),
            obj("example.com", "Widget", Some("a"), "w"),
            obj("apps", "Deployment", Some("a"), "web"),
            obj("", "ConfigMap", Some("a"), "c"),
            obj("", "Namespace", None, "a"),
            obj(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                None,
                "widgets.example.com",
            ),
            obj("rbac.authorization.k8s.io", "ClusterRole", None, "r"),
        ];
        let ordered = order(objects, |o| o);
        assert_eq!(
            kinds(&ordered),
            vec![
                "CustomResourceDefinition",
                "Namespace",
                "ClusterRole",
                "ConfigMap",
                "Deployment",
                "Widget",
                "ValidatingWebhookConfiguration"
            ]
        );
    }

    #[test]
    fn objects_of_one_kind_sort_by_namespace_then_name() {
        let objects = vec![
            obj("", "ConfigMap", Some("b"), "a"),
            obj("", "ConfigMap", Some("a"), "z"),
            obj("", "ConfigMap", Some("a"), "b"),
        ];
        let names: Vec<_> = order(objects, |o| o)
            .into_iter()
            .map(|o| format!("{}", o))
            .collect();
        assert_eq!(names, ["ConfigMap/a/b", "ConfigMap/a/z", "ConfigMap/b/a"]);
    }

    #[test]
    fn stages_group_definitions_resources_and_admission_in_that_order() {
        let objects = vec![
            obj(
                "admissionregistration.k8s.io",
                "MutatingWebhookConfiguration",
                None,
                "m",
            ),
            obj("", "ConfigMap", Some("a"), "c"),
            obj("", "Namespace", None, "a"),
        ];
        let stages = stages(objects, |o| o);
        let summary: Vec<_> = stages.iter().map(|(s, o)| (*s, kinds(o))).collect();
        assert_eq!(
            summary,
            vec![
                (Stage::Definitions, vec!["Namespace"]),
                (Stage::Resources, vec!["ConfigMap"]),
                (Stage::Admission, vec!["MutatingWebhookConfiguration"]),
            ]
        );
    }

    #[test]
    fn a_set_without_definitions_has_no_empty_stage() {
        let stages = stages(vec![obj("", "ConfigMap", Some("a"), "c")], |o| o);
        assert_eq!(stages.len(), 1);
        assert_eq!(stages[0].0, Stage::Resources);
    }
}
