#!/usr/bin/env bash
# Regenerates src/kustomize/merge_keys.json from the OpenAPI served by the
# project's test control plane (KEDGE_TESTCLUSTER_BIN, see tools/testcluster).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
"$KEDGE_TESTCLUSTER_BIN" --kubeconfig "$work/kubeconfig" --data-dir "$work/data" >"$work/log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do
  kubectl --kubeconfig "$work/kubeconfig" get --raw /openapi/v2 >"$work/openapi.json" 2>/dev/null && break
  sleep 1
done
python3 scripts/gen-merge-keys.py "$work/openapi.json" >src/kustomize/merge_keys.json
echo "wrote src/kustomize/merge_keys.json"
