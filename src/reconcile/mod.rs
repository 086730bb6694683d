//! The scheduler and one reconciler per kind; the only module that joins
//! sources, the kustomize engine and the cluster.
pub mod kustomization;
pub mod runner;
