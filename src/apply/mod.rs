//! Talks to the cluster: discovery, server-side apply, dry-run diff,
//! inventory, prune and health. Knows nothing of Git or of kustomizations.
