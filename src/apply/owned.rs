//! [`Manager::owned`]: the objects in the cluster that carry kedge's
//! labels, found without any inventory: what rebuilds inventories when the
//! state database was lost.

use std::collections::BTreeMap;

use kube::api::{ListParams, ObjectMeta};
use kube::core::PartialObjectMeta;
use kube::Api;

use super::discovery::{DiscoveryError, Kind};
use super::objref::ObjRef;
use super::{Manager, KIND_LABEL, NAME_LABEL};

/// Lists in flight at once while scanning every kind.
const CONCURRENCY: usize = 8;

/// The owned objects of one owner kind, by owner name.
#[derive(Debug, Default)]
pub struct Owned {
    pub by_owner: BTreeMap<String, Vec<ObjRef>>,
    /// Kinds that could not be listed, with the error: objects of these
    /// kinds may be missing from `by_owner`.
    pub unlisted: Vec<(String, String)>,
}

impl Manager {
    /// Every object labelled [`KIND_LABEL`]` = owner_kind`, of every served
    /// kind that can be listed (metadata only), grouped by its
    /// [`NAME_LABEL`]. Objects being deleted are left out.
    pub async fn owned(&self, owner_kind: &str) -> Result<Owned, DiscoveryError> {
        let kinds = self.kinds.listable_kinds().await?;
        let params = ListParams::default().labels(&format!("{KIND_LABEL}={owner_kind}"));
        let lists = self
            .bounded(
                kinds
                    .iter()
                    .map(|kind| {
                        let api: Api<PartialObjectMeta<kube::api::DynamicObject>> =
                            Api::all_with(self.client.clone(), &kind.resource);
                        let params = params.clone();
                        async move { api.list_metadata(&params).await }
                    })
                    .collect(),
                CONCURRENCY,
            )
            .await;
        let mut owned = Owned::default();
        for (kind, list) in kinds.iter().zip(lists) {
            match list {
                Ok(list) => {
                    for object in list.items {
                        if let Some((owner, objref)) = owner_and_ref(kind, &object.metadata) {
                            owned.by_owner.entry(owner).or_default().push(objref);
                        }
                    }
                }
                Err(err) => owned
                    .unlisted
                    .push((kind.resource.kind.clone(), err.to_string())),
            }
        }
        for refs in owned.by_owner.values_mut() {
            refs.sort();
        }
        Ok(owned)
    }
}

fn owner_and_ref(kind: &Kind, metadata: &ObjectMeta) -> Option<(String, ObjRef)> {
    if metadata.deletion_timestamp.is_some() {
        return None;
    }
    let owner = metadata.labels.as_ref()?.get(NAME_LABEL)?.clone();
    let objref = ObjRef {
        group: kind.resource.group.clone(),
        version: kind.resource.version.clone(),
        kind: kind.resource.kind.clone(),
        namespace: metadata.namespace.clone().filter(|_| kind.namespaced),
        name: metadata.name.clone()?,
    };
    Some((owner, objref))
}
