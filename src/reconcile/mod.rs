//! The scheduler and one reconciler per kind; the only module that joins
//! sources, the kustomize engine and the cluster.

pub mod bundle;
pub mod helmrelease;
pub mod kustomization;
pub mod overlay;
pub mod runner;
pub mod scheduler;
pub mod unpack;

pub use runner::{runner, Request, Runner};
pub use scheduler::{scheduler, Scheduler, SourceTriggers, SourceUpdate, Trigger};
