#!/usr/bin/env bash
# Builds the real helm CLI (the tests' chart packager, indexer and OCI client,
# and the reference of bench/helm_index) from its pinned Go module into
# target/helm/, cached by version.
#
#   scripts/helm-cli.sh build     build once into target/helm/
#   scripts/helm-cli.sh path      print the binary's path (building it if needed)
#
# Go's module and build caches live under target/ too (unless GOMODCACHE /
# GOCACHE are set), as for scripts/testcluster.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/helm"
HELM_VERSION=v4.3.1

binary_path() { echo "$out/helm-$HELM_VERSION"; }

build() {
  local bin; bin=$(binary_path)
  if [ -x "$bin" ]; then echo "helm-cli: cached $bin" >&2; echo "$bin"; return; fi
  command -v go >/dev/null || { echo "helm-cli: Go is not installed (need go >= 1.24)" >&2; exit 1; }
  mkdir -p "$out"
  export GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
  export GOCACHE="${GOCACHE:-$out/go-build}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  local started=$SECONDS
  echo "helm-cli: building $bin from helm.sh/helm/v4@$HELM_VERSION" >&2
  local gobin="$out/gobin-$HELM_VERSION"
  rm -rf "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@$HELM_VERSION" >&2
  mv "$gobin/helm" "$bin"
  rm -rf "$gobin"
  echo "helm-cli: built in $((SECONDS - started))s" >&2
  echo "$bin"
}

case "${1:-}" in
  build) build >/dev/null ;;
  path) build ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
