#!/usr/bin/env bash
# Builds the kustomize oracle the conformance tests compare kedge with:
# sigs.k8s.io/kustomize/kustomize/v5 at a pinned version (the one kubectl
# v1.32 embeds), from the Go module proxy into target/kustomize/, cached by
# version.
#
#   scripts/kustomize-oracle.sh build    build once (about a minute on 2 cores)
#   scripts/kustomize-oracle.sh path     print the binary's path (building it if needed)
#
# Go's build cache lives under target/ too (unless GOCACHE is set).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/kustomize"
MODULE=sigs.k8s.io/kustomize/kustomize/v5
VERSION=v5.5.0

build() {
  local bin="$out/kustomize-$VERSION"
  if [ -x "$bin" ]; then echo "kustomize-oracle: cached $bin" >&2; echo "$bin"; return; fi
  command -v go >/dev/null || { echo "kustomize-oracle: Go is not installed (scripts/install-deps.sh installs it)" >&2; exit 1; }
  mkdir -p "$out"
  export GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
  export GOCACHE="${GOCACHE:-$out/go-build}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  local started=$SECONDS gobin="$out/bin-$VERSION.partial"
  echo "kustomize-oracle: building $MODULE@$VERSION" >&2
  rm -rf "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$MODULE@$VERSION" >&2
  mv "$gobin/kustomize" "$bin"
  rm -rf "$gobin"
  echo "kustomize-oracle: built in $((SECONDS - started))s" >&2
  echo "$bin"
}

case "${1:-}" in
  build) build >/dev/null ;;
  path) build ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
