#!/usr/bin/env bash
# Builds the real cosign CLI, which signs the OCI tests' artifacts:
# github.com/sigstore/cosign/v2 at a pinned version, from the Go module
# proxy into target/cosign/, cached by version. Only a test whose recorded
# signature (tests/fixtures/cosign/recorded/) is missing needs it: CI does
# not build it.
#
#   scripts/cosign-cli.sh build     build once
#   scripts/cosign-cli.sh path      print the binary's path (building it if needed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/cosign"
PACKAGE=github.com/sigstore/cosign/v2/cmd/cosign
VERSION=v2.6.5

. "$root/scripts/lib/go-build.sh"
build() { go_install_cached cosign "$PACKAGE" "$VERSION" "$out"; }

go_tool_main "$@"
