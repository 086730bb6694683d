//! The scheduler and one reconciler per kind; the only module that joins
//! sources, the kustomize engine and the cluster.

pub mod scheduler;

pub use scheduler::{scheduler, Scheduler, SourceUpdate, Trigger};
