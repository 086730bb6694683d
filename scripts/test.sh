#!/usr/bin/env bash
# kedge's whole test suite, as CI runs it: dependencies, the test control
# plane, formatting, lints, every test. Prints how long each phase took.
set -euo pipefail
cd "$(dirname "$0")/.."

timings=()
phase() {
  local name=$1; shift
  local started=$SECONDS
  echo "==> $name"
  "$@"
  timings+=("$(printf '%-56s %5ss' "$name" $((SECONDS - started)))")
}
report() {
  echo "==> phase timings"
  printf '    %s\n' "${timings[@]}"
}
trap report EXIT

phase "install dependencies" scripts/install-deps.sh
# Gitea (the commit status tests' forge) takes minutes to build cold: in the
# background from here, overlapping the other builds and most of the tests
# (the Gitea tests wait for it: scripts/gitea.sh builds one at a time).
mkdir -p target/gitea
scripts/gitea.sh build >target/gitea/build.log 2>&1 &
gitea_build=$!
wait_gitea() { wait "$gitea_build" || { cat target/gitea/build.log >&2; return 1; }; cat target/gitea/build.log; }
phase "build test control plane" scripts/testcluster.sh build
phase "build kustomize oracle" scripts/kustomize-oracle.sh build
phase "build Helm helper (kedge-helm)" scripts/kedge-helm.sh build
phase "build helm CLI" scripts/helm-cli.sh build
phase "build S3 server (versitygw)" scripts/s3server.sh build
phase "cargo fmt --check" cargo fmt --all -- --check
phase "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
phase "cargo test" cargo test --locked
phase "build Gitea (in the background since the dependencies)" wait_gitea
if [ "${CI:-}" = "true" ]; then
  phase "debian package (build, lintian, install, remove, purge)" scripts/check-deb.sh
  phase "under systemd (nspawn boot, apt install, systemctl, journald, watchdog)" scripts/check-systemd.sh
else
  echo "==> debian package: not checked here (it installs and removes the .deb: CI=true scripts/test.sh does it, as root)"
  echo "==> under systemd: not checked here (it boots a container: CI=true scripts/test.sh does it, as root)"
fi
