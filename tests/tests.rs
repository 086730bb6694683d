//! kedge's integration tests: one binary, one module per area. Tests that
//! need a cluster share the test control plane started by `support`.

mod support;

// The test control plane itself: SSA, conflicts, namespace deletion, garbage collection.
mod cluster_proof;
// The `kedge` binary's command line.
mod cli;
// Native kustomize builds compared with `kubectl kustomize` on fixtures.
mod kustomize_conformance;
// `kedge build`, Flux-style plain directories and build errors.
mod kustomize_build;
