#!/usr/bin/env bash
# Builds the real sops CLI, which encrypts the SOPS tests' fixtures and is
# the reference of benches/sops_decrypt.rs: github.com/getsops/sops/v3 at a
# pinned version, from the Go module proxy into target/sops/, cached by
# version.
#
#   scripts/sops-cli.sh build     build once
#   scripts/sops-cli.sh path      print the binary's path (building it if needed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/sops"
PACKAGE=github.com/getsops/sops/v3/cmd/sops
VERSION=v3.13.3

. "$root/scripts/lib/go-build.sh"
build() { go_install_cached sops "$PACKAGE" "$VERSION" "$out"; }

go_tool_main "$@"
