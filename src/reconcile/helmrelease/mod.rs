//! Helm releases (`[helm_release.NAME]`): a planner of pure functions
//! decides ([`plan`]), `kedge-helm` acts ([`crate::helm`]).

pub mod plan;
