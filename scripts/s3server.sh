#!/usr/bin/env bash
# Builds the S3 server the bucket tests and benchmark run against: versitygw
# (posix backend), a real S3 gateway that checks every request's SigV4
# signature, from its pinned Go module (a few minutes the first time).
#
#   scripts/s3server.sh build    build once into target/s3server/ (cached by version)
#   scripts/s3server.sh path     print the binary's path (building it if needed)
#
# The tests start it themselves (tests/support/s3.rs), each on its own port
# and directory. Go's build cache lives under target/ too (unless GOCACHE is
# set): see scripts/lib/go-build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/s3server"
MODULE=github.com/versity/versitygw/cmd/versitygw
VERSION=v1.8.0

. "$root/scripts/lib/go-build.sh"
build() { go_install_cached versitygw "$MODULE" "$VERSION" "$out"; }

go_tool_main "$@"
