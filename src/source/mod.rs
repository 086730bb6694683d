//! Sources (one file per kind) that turn a remote into a content-addressed
//! artifact, and the artifact store.
