#!/usr/bin/env bash
# Builds the kustomize oracle the conformance tests compare kedge with:
# sigs.k8s.io/kustomize/kustomize/v5 at a pinned version (the one kubectl
# v1.32 embeds), from the Go module proxy into target/kustomize/, cached by
# version.
#
#   scripts/kustomize-oracle.sh build    build once (about a minute on 2 cores)
#   scripts/kustomize-oracle.sh path     print the binary's path (building it if needed)
#
# Go's build cache lives under target/ too (unless GOCACHE is set): see
# scripts/lib/go-build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/kustomize"
MODULE=sigs.k8s.io/kustomize/kustomize/v5
VERSION=v5.5.0

. "$root/scripts/lib/go-build.sh"
build() { go_install_cached kustomize "$MODULE" "$VERSION" "$out"; }

go_tool_main "$@"
