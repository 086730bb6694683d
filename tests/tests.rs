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
// Git sources over file://, a local path and git daemon: refs, artifacts, ignore rules, hostile trees.
mod git_fetch;
// Helm repositories, charts from them, from Git and from files, against a chart server on loopback and the real helm CLI.
mod helm_sources;
// [helm_release] under `kedge run`: install, upgrade, manual rollback undone, remediation, removal.
mod helm_release;
// Bucket sources against versitygw (SigV4) on loopback: polls, changes, prefix, ignore, faults, limits, end to end.
mod bucket_source;
// OCI artifact sources against docker-registry on loopback: push, pull, polls, refs, auth, cosign signatures, end to end.
mod oci_source;
// Git sources over smart HTTP (git http-backend) with Basic auth.
mod git_http;
// Git sources over SSH (Debian's sshd on loopback) with strict host key checking.
mod git_ssh;
// `kedge run` and `kedge status` end to end against git daemon.
mod git_run;
// Signed commits and tags (`verify`): SSH and OpenPGP signatures by the real git, ssh-keygen and gpg.
mod git_verify;
// `kedge bootstrap git` against sshd and git http-backend on loopback, and end to end with `kedge run`.
mod bootstrap;
// The config file: located validation errors, defaults, config.example.toml, check-config.
mod config;
// `[agent] config_from`: kustomizations declared in Git, refused commits, restart while Git is down.
mod config_from_git;
// `kedge run` with kustomizations against the test control plane: apply, prune, drift, dependsOn, restart.
mod kustomization_run;
// Drift under `kedge run`: what is drift, the modes correct/detect/off, ignore rules.
mod kustomization_drift;
// Flux's Kustomization fields under `kedge run`: target namespace, prefix, suffix, patches, images, components, common metadata.
mod kustomization_flux_fields;
// A fleet repository written for Flux, under its Flux Kustomization's fields as a kedge table.
mod flux_fleet;
// SOPS decryption against files encrypted by the real sops CLI, and under `kedge run`.
mod postbuild_sops;
// Post-build variable substitution under `kedge run`: config, ConfigMap, Secret and file variables, strict.
mod postbuild_substitute;
// The reconciler's guarantees under `kedge run`, several with a fault injected by the API server.
mod kustomization_guarantees;
// `kedge run` with a damaged state directory: unpacked trees and artifacts verified, repaired, never a prune.
mod state_damage;
// The source scheduler: triggers, broadcast of new artifacts, shutdown.
mod git_scheduler;
// Helpers of the daemon and CLI tests: a temporary config, state and control socket.
mod daemon_common;
// systemd's notify protocol: READY, STATUS, WATCHDOG from the scheduler loop, RELOADING, STOPPING.
mod daemon_notify;
// Config reload: a valid change applied, an invalid one refused with its position, rename picked up.
mod daemon_reload;
// The CLI through the control socket and without a daemon: reconcile, suspend/resume, events, diff, build.
mod cli_control;
// Native kustomize builds compared with `kubectl kustomize` on fixtures.
mod kustomize_conformance;
// `kedge build`, Flux-style plain directories and build errors.
mod kustomize_build;
// Faults of the API server: a frozen one (through a freezable proxy) bounds every run and start-up.
mod fault_api;
// Hostile Git servers over HTTP: frozen, slow loris, endless body.
mod fault_git;
// Hostile clients on the control socket: memory and fds stay where they were.
mod fault_socket;
// Credentials never show in logs, status, events, the database or the state directory.
mod fault_secrets;
// Data safety under faults: kill -9, config edits, damaged or lost state never orphan or wrongly delete.
mod data_safety;
// kedge-helm, the Helm SDK helper: install, upgrade, rollback, test, uninstall, unlock on the test control plane.
mod helm_helper;
// [agent] metrics: /metrics over HTTP parsed as Prometheus text, kedge metrics, the loopback rule.
mod observe_metrics;
// [receiver.NAME]: signed GitHub, GitLab and generic webhooks fetch at once; bad, oversized and flooding ones do nothing.
mod observe_receiver;
// [alert.NAME]: each provider's payload captured on 127.0.0.1, changes only, retries, a restart while down.
mod observe_alerts;
// provider = "github" | "gitlab" | "gitea": commit statuses, captured on 127.0.0.1 and in a real Gitea.
mod observe_forge;
// Signed offline bundles: create, import, bundle_dir, bad bundles, downgrades, an air-gapped node in a network namespace.
mod bundle;
