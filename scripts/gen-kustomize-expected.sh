#!/usr/bin/env bash
# Writes expected.yaml (or expected-error.txt) for every fixture under
# tests/fixtures/kustomize/ by running the oracle, `kubectl kustomize`
# (kubectl v1.32 embeds kustomize v5.5.0). Run after adding or changing a
# fixture; commit the results.
# (Error texts are kept for reading; the test compares only that both fail.)
set -euo pipefail
cd "$(dirname "$0")/../tests/fixtures/kustomize"
for case in */; do
  case=${case%/}
  dir="$case/input/$(cat "$case/build-dir.txt")"
  rm -f "$case/expected.yaml" "$case/expected-error.txt"
  if kubectl kustomize "$dir" >"$case/expected.yaml" 2>"$case/stderr.tmp"; then
    rm -f "$case/stderr.tmp"
  else
    rm -f "$case/expected.yaml"
    # Drop klog's time/pid prefix and the absolute input path, so reruns
    # give the same text.
    sed -e "s|$(cd "$case/input" && pwd)|<INPUT>|g" -e 's/^E[0-9]* [0-9:.]* *[0-9]* run.go:[0-9]*\] //' \
      "$case/stderr.tmp" >"$case/expected-error.txt"
    rm -f "$case/stderr.tmp"
  fi
done
echo "regenerated $(ls -d */ | wc -l) fixtures"
