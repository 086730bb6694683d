#!/bin/sh
# Latency of requests through kedge's control socket, against references
# measured in the same run on the same repository:
#   - `kedge status` (socket round trip) vs `kedge status --state-dir` (SQLite read, no daemon);
#   - `kedge reconcile source` (new commit fetched, artifact stored, outcome
#     recorded and reported) vs `git fetch` of the same commit into a clone.
# Usage: bench/control_latency.sh [path/to/kedge] [runs]
set -eu
KEDGE=${1:-target/debug/kedge}
RUNS=${2:-20}
KEDGE=$(realpath "$KEDGE")
DIR=$(mktemp -d)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$DIR"; }
trap cleanup EXIT INT TERM
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
git -C "$DIR" init -q -b main work
git -C "$DIR/work" -c user.name=b -c user.email=b@b.invalid commit -q --allow-empty -m start
git -C "$DIR" clone -q --bare work fleet.git
git -C "$DIR" clone -q fleet.git reference
mkdir -p "$DIR/etc"
cat > "$DIR/etc/kedge.toml" <<TOML
[agent]
state_dir = "$DIR/state"
socket = "$DIR/kedge.sock"

[git.fleet]
url = "file://$DIR/fleet.git"
interval = "1h"
TOML
KEDGE_LOG=warn "$KEDGE" run --config "$DIR/etc/kedge.toml" 2>"$DIR/kedge.log" &
PID=$!
until [ -S "$DIR/kedge.sock" ]; do sleep 0.05; done
until "$KEDGE" status --config "$DIR/etc/kedge.toml" >/dev/null 2>&1; do sleep 0.05; done

now_us() { echo $(( $(date +%s%N) / 1000 )); }
commit() {
    echo "$1" > "$DIR/work/file"
    git -C "$DIR/work" add file
    git -C "$DIR/work" -c user.name=b -c user.email=b@b.invalid commit -q -m "$1"
    git -C "$DIR/work" push -q "$DIR/fleet.git" main
}
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

: > "$DIR/socket_status"; : > "$DIR/sqlite_status"; : > "$DIR/reconcile"; : > "$DIR/fetch"
i=0
while [ $i -lt "$RUNS" ]; do
    i=$((i + 1))
    t=$(now_us); "$KEDGE" status --config "$DIR/etc/kedge.toml" >/dev/null; echo $(( $(now_us) - t )) >> "$DIR/socket_status"
    t=$(now_us); "$KEDGE" status --state-dir "$DIR/state" >/dev/null; echo $(( $(now_us) - t )) >> "$DIR/sqlite_status"
    commit "r$i"
    t=$(now_us); "$KEDGE" reconcile source git/fleet --config "$DIR/etc/kedge.toml" >/dev/null 2>&1; echo $(( $(now_us) - t )) >> "$DIR/reconcile"
    t=$(now_us); git -C "$DIR/reference" fetch -q origin; echo $(( $(now_us) - t )) >> "$DIR/fetch"
done
s=$(median < "$DIR/socket_status"); q=$(median < "$DIR/sqlite_status")
r=$(median < "$DIR/reconcile"); f=$(median < "$DIR/fetch")
echo "runs: $RUNS (medians, microseconds, process start of each command included)"
echo "kedge status via socket:            $s"
echo "kedge status from SQLite (ref):     $q   ratio $(awk "BEGIN { printf \"%.2f\", $s / $q }")"
echo "kedge reconcile source (new commit): $r"
echo "git fetch of the same commit (ref): $f   ratio $(awk "BEGIN { printf \"%.2f\", $r / $f }")"
