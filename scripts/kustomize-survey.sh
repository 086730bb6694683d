#!/usr/bin/env bash
# Compares `kedge build` with `kubectl kustomize` on real trees: finds every
# kustomization directory under the given trees, builds each with both
# tools (with a timeout) and prints, per directory that does not match, the
# first differing lines or the error, then the totals:
#   N matched, N differ, N kedge-only error, N kubectl-only error, N both fail
# and the time each tool took in all.
#
# Usage: scripts/kustomize-survey.sh TREE...
#   KEDGE=path/to/kedge (default: target/debug/kedge, built if missing)
#   SURVEY_TIMEOUT=seconds per build (default 60)
#   SURVEY_LINES=differing lines shown per directory (default 6)
#   SURVEY_CACHE=dir: keep kubectl's results (and time) there and reuse
#     them on later runs
set -uo pipefail

if [ "$#" -eq 0 ]; then
  echo "usage: $0 TREE..." >&2
  exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
kedge=${KEDGE:-$root/target/debug/kedge}
timeout_s=${SURVEY_TIMEOUT:-60}
lines=${SURVEY_LINES:-6}
if [ ! -x "$kedge" ]; then
  (cd "$root" && cargo build --quiet --bin kedge) || exit 1
fi
command -v kubectl >/dev/null || { echo "kubectl is not on PATH" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now_ns() { date +%s%N; }

matched=0 differ=0 kedge_only=0 kubectl_only=0 both=0
kedge_ns=0 kubectl_ns=0

while IFS= read -r dir; do
  start=$(now_ns)
  cached=${SURVEY_CACHE:+$SURVEY_CACHE/$(realpath "$dir" | sha256sum | cut -c1-32)}
  if [ -n "$cached" ] && [ -f "$cached.rc" ]; then
    cp "$cached.out" "$work/kubectl.out"
    cp "$cached.err" "$work/kubectl.err"
    kubectl_rc=$(cat "$cached.rc")
    kubectl_elapsed=$(cat "$cached.ns")
  else
    timeout "$timeout_s" kubectl kustomize "$dir" >"$work/kubectl.out" 2>"$work/kubectl.err" </dev/null
    kubectl_rc=$?
    kubectl_elapsed=$(($(now_ns) - start))
    if [ -n "$cached" ]; then
      mkdir -p "$SURVEY_CACHE"
      cp "$work/kubectl.out" "$cached.out"
      cp "$work/kubectl.err" "$cached.err"
      echo "$kubectl_rc" >"$cached.rc"
      echo "$kubectl_elapsed" >"$cached.ns"
    fi
  fi
  mid=$(now_ns)
  timeout "$timeout_s" "$kedge" build "$dir" >"$work/kedge.out" 2>"$work/kedge.err" </dev/null
  kedge_rc=$?
  end=$(now_ns)
  kubectl_ns=$((kubectl_ns + kubectl_elapsed))
  kedge_ns=$((kedge_ns + end - mid))
  if [ "$kubectl_rc" -eq 0 ] && [ "$kedge_rc" -eq 0 ]; then
    if cmp -s "$work/kubectl.out" "$work/kedge.out"; then
      matched=$((matched + 1))
      continue
    fi
    differ=$((differ + 1))
    echo "DIFFER $dir"
    diff "$work/kubectl.out" "$work/kedge.out" | head -n "$lines" | sed 's/^/    /'
  elif [ "$kubectl_rc" -eq 0 ]; then
    kedge_only=$((kedge_only + 1))
    echo "KEDGE-ONLY ERROR $dir"
    head -c 400 "$work/kedge.err" | head -n 3 | sed 's/^/    /'
  elif [ "$kedge_rc" -eq 0 ]; then
    kubectl_only=$((kubectl_only + 1))
    echo "KUBECTL-ONLY ERROR $dir"
    grep -v '^#' "$work/kubectl.err" | head -c 400 | head -n 3 | sed 's/^/    /'
  else
    both=$((both + 1))
  fi
done < <(find "$@" -type f \( -name kustomization.yaml -o -name kustomization.yml -o -name Kustomization \) \
  -not -path '*/.git/*' -printf '%h\n' | sort -u)

built=$((matched + differ + kedge_only))
echo "$matched matched, $differ differ, $kedge_only kedge-only error, $kubectl_only kubectl-only error, $both both fail"
if [ "$built" -gt 0 ]; then
  echo "of the $built directories kubectl builds, $((matched * 1000 / built / 10)).$((matched * 1000 / built % 10)) % match byte for byte"
fi
echo "total build time: kedge $((kedge_ns / 1000000)) ms, kubectl kustomize $((kubectl_ns / 1000000)) ms"
