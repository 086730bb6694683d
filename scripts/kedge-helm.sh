#!/usr/bin/env bash
# Builds kedge-helm, the Helm SDK helper kedge runs for each Helm action
# (tools/kedge-helm), into target/kedge-helm/, cached by source hash.
#
#   scripts/kedge-helm.sh build    build once
#   scripts/kedge-helm.sh path     print the binary's path (building it if needed)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/scripts/lib/go-build.sh"
build() { go_build_cached kedge-helm "$root/tools/kedge-helm" "$root/target/kedge-helm"; }
go_tool_main "$@"
