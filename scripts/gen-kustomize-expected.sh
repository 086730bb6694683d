#!/usr/bin/env bash
# Writes expected.yaml (or expected-error.txt) for every fixture under
# tests/fixtures/kustomize/ by running the oracle, kustomize v5.5.0 built
# from its pinned Go module by scripts/kustomize-oracle.sh (the version
# kubectl v1.32 embeds). Run after adding or changing a fixture; commit the
# results. Error texts are kept for reading; the test checks that kedge
# fails too, naming the case's key phrase from
# tests/fixtures/kustomize-error-phrases.txt (add one for a new error case).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
oracle=$("$root/scripts/kustomize-oracle.sh" path)
cd "$root/tests/fixtures/kustomize"
for case in */; do
  case=${case%/}
  dir="$case/input/$(cat "$case/build-dir.txt")"
  rm -f "$case/expected.yaml" "$case/expected-error.txt"
  if "$oracle" build "$dir" >"$case/expected.yaml" 2>"$case/stderr.tmp"; then
    rm -f "$case/stderr.tmp"
  else
    rm -f "$case/expected.yaml"
    # Drop the absolute input path (and kubectl's klog prefix, in texts
    # written before the oracle was built here), so reruns give the same text.
    sed -e "s|$(cd "$case/input" && pwd)|<INPUT>|g" -e 's/^E[0-9]* [0-9:.]* *[0-9]* run.go:[0-9]*\] //' \
      "$case/stderr.tmp" >"$case/expected-error.txt"
    rm -f "$case/stderr.tmp"
  fi
done
echo "regenerated $(ls -d */ | wc -l) fixtures"
