//! kedge keeps a single-node Kubernetes cluster equal to what its sources
//! declare: Flux's model (sources → artifacts → kustomizations) as one
//! systemd daemon, configured by `/etc/kedge/kedge.toml`, with its state in
//! SQLite and no CRDs in the cluster.
//!
//! The modules are the parts list; `docs/ARCHITECTURE.md` shows how data
//! flows between them and what each one may touch.

pub mod apply;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error_chain;
pub mod helm;
pub mod kustomize;
pub mod observe;
pub mod postbuild;
pub mod protocol;
pub mod reconcile;
pub mod source;
pub mod state;
