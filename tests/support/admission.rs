//! Faults injected by the API server itself: a ValidatingAdmissionPolicy
//! that denies one kind of request on ConfigMaps of one namespace, removed
//! when dropped.

use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};
use serde_json::json;

use super::cluster::cluster;

/// The message every denial of these policies carries.
pub const DENIED: &str = "denied by the test's admission policy";

/// A policy and its binding, both named `name`, deleted on drop.
pub struct Denial {
    name: String,
}

impl Denial {
    /// Denies deleting the ConfigMaps whose name starts with `prefix` in
    /// `namespace`, and returns once the API server enforces it.
    pub async fn deletes(client: &Client, namespace: &str, prefix: &str) -> Denial {
        let denial = Denial::create(
            client,
            namespace,
            "DELETE",
            &format!("!oldObject.metadata.name.startsWith('{prefix}')"),
        )
        .await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let probe = format!("{prefix}-probe");
        create_configmap(&configmaps, &probe).await;
        let dry_run = DeleteParams {
            dry_run: true,
            ..DeleteParams::default()
        };
        let (configmaps, probe, dry_run) = (&configmaps, probe.as_str(), &dry_run);
        enforced(&denial.name, || async move {
            configmaps.delete(probe, dry_run).await.is_err()
        })
        .await;
        denial
    }

    /// Denies creating ConfigMaps whose name starts with `prefix` in
    /// `namespace`, but lets server-side dry-runs through: the dry-run of
    /// a whole set passes and the apply that follows fails part-way.
    pub async fn creates_but_not_dry_runs(
        client: &Client,
        namespace: &str,
        prefix: &str,
    ) -> Denial {
        let denial = Denial::create(
            client,
            namespace,
            "CREATE",
            &format!("request.dryRun == true || !object.metadata.name.startsWith('{prefix}')"),
        )
        .await;
        let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let probe = format!("{prefix}-probe");
        let (configmaps, probe) = (&configmaps, probe.as_str());
        enforced(&denial.name, || async move {
            match configmaps.create(&PostParams::default(), &cm(probe)).await {
                Err(_) => true,
                Ok(_) => {
                    let _ = configmaps.delete(probe, &DeleteParams::default()).await;
                    false
                }
            }
        })
        .await;
        denial
    }

    async fn create(client: &Client, namespace: &str, operation: &str, expression: &str) -> Denial {
        let name = namespace.to_string();
        let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": { "resourceRules": [{
                    "apiGroups": [""], "apiVersions": ["v1"],
                    "operations": [operation], "resources": ["configmaps"]
                }]},
                "validations": [{ "expression": expression, "message": DENIED }]
            }
        }))
        .expect("policy literal");
        let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
            "metadata": { "name": name },
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": { "namespaceSelector": {
                    "matchLabels": { "kubernetes.io/metadata.name": namespace }
                }}
            }
        }))
        .expect("binding literal");
        Api::<ValidatingAdmissionPolicy>::all(client.clone())
            .create(&PostParams::default(), &policy)
            .await
            .unwrap_or_else(|e| panic!("create policy {name}: {e}"));
        Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
            .create(&PostParams::default(), &binding)
            .await
            .unwrap_or_else(|e| panic!("create binding {name}: {e}"));
        Denial { name }
    }

    /// Removes the policy; returns once a request it denied goes through
    /// (`allowed` says whether one does).
    pub async fn lift<F, Fut>(self, client: &Client, allowed: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        delete_policy(client, &self.name).await;
        enforced(&format!("{} lifted", self.name), allowed).await;
    }
}

impl Drop for Denial {
    fn drop(&mut self) {
        // As TestNamespace: Drop cannot await, so a small runtime of its own.
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let client = cluster().client().await;
                delete_policy(&client, &name).await;
                Some(())
            })
        })
        .join();
    }
}

async fn delete_policy(client: &Client, name: &str) {
    let _ = Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
    let _ = Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .delete(name, &DeleteParams::default())
        .await;
}

/// Polls `check` until it holds (the policy informers take a moment).
async fn enforced<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "admission policy {what}: not in effect after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({ "metadata": { "name": name } })).expect("configmap literal")
}

async fn create_configmap(configmaps: &Api<ConfigMap>, name: &str) {
    configmaps
        .create(&PostParams::default(), &cm(name))
        .await
        .unwrap_or_else(|e| panic!("create {name}: {e}"));
}
