#!/usr/bin/env bash
# Scale: N kustomizations of one Git source (each a Namespace + 20
# ConfigMaps) under `kedge run` on the test control plane. Prints the time
# until every kustomization applied, idle and peak RSS, and the number of
# TCP connections kedge holds to the API server after 15 s idle.
#
#   bench/scale.sh [N] [KEDGE_BINARY [REFERENCE_BINARY]]
#
# With a reference binary (an older kedge), both run against the same
# control plane, one after the other, and the ratios are printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-200}
binary=${2:-$root/target/release/kedge}
reference=${3:-}
work=$(mktemp -d)
trap 'scripts_stop; rm -rf "$work"' EXIT
scripts_stop() { "$root/scripts/testcluster.sh" stop "$work/cluster" >/dev/null 2>&1 || true; }
"$root/scripts/testcluster.sh" start "$work/cluster" >/dev/null
kubeconfig=$work/cluster/kubeconfig
port=$(sed -n 's/.*server: https:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$kubeconfig")

# A repository of its own per run (namespaces named after the run), so a
# second run does not find the first one's objects.
make_repo() { # name
  local repo=$work/repo-$1
  git init -q -b main "$repo"
  for k in $(seq 1 "$count"); do
    mkdir -p "$repo/k$k"
    {
      printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s-%s\n' "$1" "$k"
      for i in $(seq 1 20); do
        printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c%s\n  namespace: %s-%s\ndata:\n  a: b\n' "$i" "$1" "$k"
      done
    } >"$repo/k$k/all.yaml"
  done
  git -C "$repo" add -A && git -C "$repo" -c user.name=b -c user.email=b@b commit -qm scale
}

measure() { # name binary
  local name=$1 bin=$2 state=$work/state-$1
  make_repo "$name"
  {
    printf '[agent]\nstate_dir = "%s"\nsocket = "%s/%s.sock"\nkubeconfig = "%s"\n' "$state" "$work" "$name" "$kubeconfig"
    printf '[git.fleet]\nurl = "%s/repo-%s"\ninterval = "1h"\n' "$work" "$name"
    for k in $(seq 1 "$count"); do
      printf '[kustomization.%s-k%s]\nsource = "git/fleet"\npath = "./k%s"\ninterval = "1h"\nprune = true\n' "$name" "$k" "$k"
    done
  } >"$work/$name.toml"
  KEDGE_LOG=info "$bin" run --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  local pid=$! started=$SECONDS
  local t0; t0=$(date +%s.%N)
  until [ "$(grep -c 'Applied revision' "$work/$name.log")" -ge "$count" ]; do
    [ $((SECONDS - started)) -lt 600 ] || { echo "$name: not all applied within 600 s" >&2; break; }
    sleep 0.1
  done
  local ready; ready=$(echo "$(date +%s.%N) - $t0" | bc)
  sleep 15
  local rss hwm conns
  rss=$(awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status")
  hwm=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status")
  conns=$(ss -tnp | grep "pid=$pid," | grep -c ":$port" || true)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  printf '%-10s %s kustomizations: all applied %.1f s · idle RSS %s MiB · peak %s MiB · %s connections to the API server\n' \
    "$name" "$count" "$ready" "$rss" "$hwm" "$conns"
}
measure kedge "$binary"
[ -z "$reference" ] || measure reference "$reference"
