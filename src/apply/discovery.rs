//! Which kinds the API server serves, and at which path: a cache of
//! discovery, refreshed when an object names a kind it does not hold.

use std::collections::HashMap;

use kube::discovery::{ApiResource, Discovery, Scope};
use kube::Client;
use tokio::sync::RwLock;

use super::objref::ObjRef;

/// Discovery could not be read from the API server.
#[derive(Debug, thiserror::Error)]
#[error("discovery of the kinds served by {server} failed: {}", crate::error_chain::describe(.source))]
pub struct DiscoveryError {
    /// The API server's URL, or "the API server" when unknown.
    pub server: String,
    #[source]
    pub source: kube::Error,
}

/// A served kind: where its objects live and whether they are namespaced.
#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
    /// Whether its objects can be listed (some kinds only take a create).
    pub listable: bool,
}

type Gvk = (String, String, String);

/// Cached discovery. Shared by every apply, prune and watch of one
/// [`super::Manager`].
pub struct KindCache {
    client: Client,
    /// How errors name the API server.
    server: String,
    kinds: RwLock<HashMap<Gvk, Kind>>,
}

impl KindCache {
    pub fn new(client: Client, server: &str) -> KindCache {
        KindCache {
            client,
            server: server.to_string(),
            kinds: RwLock::new(HashMap::new()),
        }
    }

    /// The kind of every object, `None` for kinds the server does not serve.
    /// Discovery is read again (once per call) when any kind is missing, so
    /// a CRD installed since the last call is found.
    pub async fn resolve_all(
        &self,
        objects: &[&ObjRef],
    ) -> Result<Vec<Option<Kind>>, DiscoveryError> {
        let found = self.lookup(objects).await;
        if found.iter().all(Option::is_some) {
            return Ok(found);
        }
        self.refresh().await?;
        Ok(self.lookup(objects).await)
    }

    /// The kind of one object; see [`KindCache::resolve_all`].
    pub async fn resolve(&self, object: &ObjRef) -> Result<Option<Kind>, DiscoveryError> {
        let mut found = self.resolve_all(&[object]).await?;
        Ok(found.pop().flatten())
    }

    /// The kind of an existing object named by an older inventory: its own
    /// version if still served, else any served version of its group and
    /// kind (the object lives on when `v1beta1` stops being served).
    pub async fn resolve_any_version(
        &self,
        object: &ObjRef,
    ) -> Result<Option<Kind>, DiscoveryError> {
        if let Some(kind) = self.resolve(object).await? {
            return Ok(Some(kind));
        }
        let kinds = self.kinds.read().await;
        let mut versions: Vec<&Kind> = kinds
            .iter()
            .filter(|((g, _, k), _)| *g == object.group && *k == object.kind)
            .map(|(_, kind)| kind)
            .collect();
        versions.sort_by(|a, b| a.resource.version.cmp(&b.resource.version));
        Ok(versions.first().map(|k| (*k).clone()))
    }

    /// One listable version of every served group and kind, fresh from
    /// the server.
    pub async fn listable_kinds(&self) -> Result<Vec<Kind>, DiscoveryError> {
        self.refresh().await?;
        let kinds = self.kinds.read().await;
        let mut one_per_kind: HashMap<(&str, &str), &Kind> = HashMap::new();
        for kind in kinds.values().filter(|k| k.listable) {
            let key = (kind.resource.group.as_str(), kind.resource.kind.as_str());
            one_per_kind
                .entry(key)
                .and_modify(|known| {
                    if kind.resource.version < known.resource.version {
                        *known = kind;
                    }
                })
                .or_insert(kind);
        }
        Ok(one_per_kind.into_values().cloned().collect())
    }

    async fn lookup(&self, objects: &[&ObjRef]) -> Vec<Option<Kind>> {
        let kinds = self.kinds.read().await;
        objects
            .iter()
            .map(|o| kinds.get(&gvk(o)).cloned())
            .collect()
    }

    /// Reads every served kind. Aggregated discovery is two requests; older
    /// servers without it get the per-group walk.
    pub async fn refresh(&self) -> Result<(), DiscoveryError> {
        let discovery = match Discovery::new(self.client.clone()).run_aggregated().await {
            Ok(discovery) => discovery,
            Err(_) => Discovery::new(self.client.clone())
                .run()
                .await
                .map_err(|source| DiscoveryError {
                    server: self.server.clone(),
                    source,
                })?,
        };
        let mut fresh = HashMap::new();
        for group in discovery.groups() {
            for version in group.versions() {
                for (resource, caps) in group.versioned_resources(version) {
                    let key = (
                        resource.group.clone(),
                        resource.version.clone(),
                        resource.kind.clone(),
                    );
                    let namespaced = caps.scope == Scope::Namespaced;
                    let listable = caps.supports_operation(kube::discovery::verbs::LIST);
                    fresh.insert(
                        key,
                        Kind {
                            resource,
                            namespaced,
                            listable,
                        },
                    );
                }
            }
        }
        *self.kinds.write().await = fresh;
        Ok(())
    }
}

fn gvk(object: &ObjRef) -> Gvk {
    (
        object.group.clone(),
        object.version.clone(),
        object.kind.clone(),
    )
}
