#!/usr/bin/env bash
# Builds, starts and stops kedge's test control plane (tools/testcluster).
#
#   scripts/testcluster.sh build           build once into target/testcluster/ (cached by source hash)
#   scripts/testcluster.sh path            print the binary's path (building it if needed)
#   scripts/testcluster.sh start [DIR]     start in the background; kubeconfig at DIR/kubeconfig
#   scripts/testcluster.sh stop [DIR]      stop what `start` started
#
# Go's module and build caches live under target/ too (unless GOMODCACHE /
# GOCACHE are set), so `cargo clean` is the one way to drop everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src="$root/tools/testcluster"
out="$root/target/testcluster"
K8S_VERSION=v1.33.13

. "$root/scripts/lib/go-build.sh"

build() {
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  go_build_cached testcluster "$src" "$out" \
    "-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
}

start() {
  local dir=${1:-$root/target/testcluster/run}
  local bin; bin=$(build)
  mkdir -p "$dir"
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "testcluster: already running (pid $(cat "$dir/pid")), kubeconfig $dir/kubeconfig"; return
  fi
  rm -f "$dir/kubeconfig" "$dir/ready"
  local started=$SECONDS
  nohup "$bin" --kubeconfig "$dir/kubeconfig" >"$dir/ready" 2>"$dir/log" </dev/null &
  echo $! >"$dir/pid"
  while ! grep -q "testcluster ready" "$dir/ready" 2>/dev/null; do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "testcluster: failed to start; see $dir/log" >&2; tail -20 "$dir/log" >&2; exit 1
    fi
    if [ $((SECONDS - started)) -gt 180 ]; then echo "testcluster: not ready after 180s; see $dir/log" >&2; exit 1; fi
    sleep 0.2
  done
  echo "testcluster: ready in $((SECONDS - started))s, kubeconfig $dir/kubeconfig"
}

stop() {
  local dir=${1:-$root/target/testcluster/run}
  [ -f "$dir/pid" ] || { echo "testcluster: not running"; return; }
  local pid; pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
  echo "testcluster: stopped"
}

case "${1:-}" in
  build) build >/dev/null ;;
  path) build ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 build|path|start [DIR]|stop [DIR]" >&2; exit 2 ;;
esac
