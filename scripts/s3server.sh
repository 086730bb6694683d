#!/usr/bin/env bash
# Builds the S3 server the bucket tests and benchmark run against: versitygw
# (posix backend), a real S3 gateway that checks every request's SigV4
# signature, from its pinned Go module.
#
#   scripts/s3server.sh build    build once into target/s3server/ (cached by version)
#   scripts/s3server.sh path     print the binary's path (building it if needed)
#
# The tests start it themselves (tests/support/s3.rs), each on its own port
# and directory. Go's build cache lives under target/ (unless GOCACHE is set).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/s3server"
VERSITYGW_VERSION=v1.8.0

binary_path() { echo "$out/versitygw-$VERSITYGW_VERSION"; }

build() {
  local bin; bin=$(binary_path)
  if [ -x "$bin" ]; then echo "s3server: cached $bin" >&2; echo "$bin"; return; fi
  command -v go >/dev/null || { echo "s3server: Go is not installed (need go >= 1.24)" >&2; exit 1; }
  mkdir -p "$out"
  export GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
  export GOCACHE="${GOCACHE:-$out/go-build}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
  local started=$SECONDS
  echo "s3server: building versitygw $VERSITYGW_VERSION (first build takes a few minutes)" >&2
  rm -rf "$out/gobin"
  GOBIN="$out/gobin" CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
    "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2
  mv "$out/gobin/versitygw" "$bin"
  rmdir "$out/gobin"
  echo "s3server: built in $((SECONDS - started))s" >&2
  echo "$bin"
}

case "${1:-}" in
  build) build >/dev/null ;;
  path) build ;;
  *) echo "usage: $0 build|path" >&2; exit 2 ;;
esac
