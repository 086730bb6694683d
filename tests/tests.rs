//! kedge's integration tests: one binary, one module per area. Tests that
//! need a cluster share the test control plane started by `support`.

mod support;

// The test control plane itself: SSA, conflicts, namespace deletion, garbage collection.
mod cluster_proof;
// The `kedge` binary's command line.
mod cli;
// apply::Manager against the test control plane: SSA apply, dry-run, conflicts, CRDs.
mod apply_ssa;
// apply::Manager::prune and the inventory diff: stale objects, annotation, owners, namespaces.
mod apply_prune;
// apply::Manager::wait: kstatus health of ConfigMaps and Deployments, bounded by a timeout.
mod apply_health;
// apply::Manager::drift_watch: edits by other field managers and deletions, undone by re-applying.
mod apply_drift;
