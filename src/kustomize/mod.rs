//! Native `kustomize build`: loader, generators, transformers, strategic
//! merge and JSON 6902 patches, output order. Knows nothing of Kubernetes
//! clients.
