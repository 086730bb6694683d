#!/usr/bin/env bash
# Regenerates go.mod for the test control plane: k8s.io/kubernetes requires its
# staging modules at v0.0.0 and replaces them with ./staging paths that do not
# apply to a dependent, so each one is mapped to the matching v0.<minor>.<patch>.
set -euo pipefail
cd "$(dirname "$0")"
K8S_VERSION="${K8S_VERSION:-v1.33.13}"
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
[ -f "$gomod" ] || { echo "go.mod of k8s.io/kubernetes@${K8S_VERSION} not found" >&2; exit 1; }
{
  echo "module kedge.dev/testcluster"
  echo
  echo "go 1.24"
  echo
  grep -E '^\s*k8s.io/[a-z0-9-]+ => ./staging/src/k8s.io/' "$gomod" \
    | awk -v v="$STAGING_VERSION" '{print "replace " $1 " => " $1 " " v}'
} > go.mod
go get "k8s.io/kubernetes@${K8S_VERSION}"
go mod tidy
