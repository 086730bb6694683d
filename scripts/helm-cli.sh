#!/usr/bin/env bash
# Builds the real helm CLI, the Helm source tests' chart packager, indexer
# and OCI client and the reference of benches/helm_index.rs: helm.sh/helm/v4
# at a pinned version, from the Go module proxy into target/helm/, cached by
# version.
#
#   scripts/helm-cli.sh build     build once
#   scripts/helm-cli.sh path      print the binary's path (building it if needed)
#
# Go's build cache is shared with the Helm helper (scripts/kedge-helm.sh),
# which uses most of the same packages: see scripts/lib/go-build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/helm"
PACKAGE=helm.sh/helm/v4/cmd/helm
VERSION=v4.3.1

. "$root/scripts/lib/go-build.sh"
build() { go_install_cached helm "$PACKAGE" "$VERSION" "$out"; }

go_tool_main "$@"
