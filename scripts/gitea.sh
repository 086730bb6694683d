#!/usr/bin/env bash
# Builds the Gitea server the commit status tests post to (tests/observe_forge.rs):
# Gitea from its pinned Go module, through the wrapper module in
# scripts/gitea/ (Gitea's go.mod has replace directives, which `go install`
# refuses), with its C SQLite driver.
#
#   scripts/gitea.sh build    build once into target/gitea/ (cached by the wrapper's go.mod and go.sum)
#   scripts/gitea.sh path     print the binary's path (building it if needed)
#
# Its assets (locales, templates) are in the directory BINARY.assets.
#
# The tests start it themselves (tests/support/gitea.rs), each on its own
# port and directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/gitea"
VERSION=v1.26.0 # keep equal to the require in scripts/gitea/go.mod

. "$root/scripts/lib/go-build.sh"
build() {
  # One build at a time: scripts/test.sh starts one in the background, and
  # a test asking for the path meanwhile waits for it rather than building too.
  mkdir -p "$out"
  exec 9>"$out/.lock"
  flock 9
  local bin; bin=$(GO_BUILD_CGO=1 go_build_cached "gitea-$VERSION" "$root/scripts/gitea" "$out" \
    "-X main.Version=${VERSION#v}" "sqlite sqlite_unlock_notify")
  assets "$bin.assets"
  echo "$bin"
}

# Without the `bindata` tag (its files are generated, not in the module)
# Gitea reads its locales and templates from STATIC_ROOT_PATH: the
# module's options/, templates/ and public/, copied beside the binary.
assets() { # DIR
  [ -d "$1" ] && return
  go_env "$out"
  local module; module=$(cd "$root/scripts/gitea" && go list -m -f '{{.Dir}}' code.gitea.io/gitea)
  rm -rf "$1.partial"; mkdir -p "$1.partial"
  cp -r "$module/options" "$module/templates" "$module/public" "$1.partial/"
  chmod -R u+w "$1.partial"
  mv "$1.partial" "$1"
}

go_tool_main "$@"
