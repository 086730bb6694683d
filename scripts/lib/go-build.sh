# Sourced by the scripts that build the project's Go programs (the test
# control plane, the Helm helper, test tools): one cached build per source
# hash, under target/, with Go's caches there too.
#
#   go_build_cached NAME SRC_DIR OUT_DIR [LDFLAGS] [TAGS]   prints the binary's path
#
# Builds are static (CGO_ENABLED=0) unless GO_BUILD_CGO=1 (Gitea's SQLite
# driver is C).
# NAME-<hash> is reused while go.mod, go.sum and the *.go files of SRC_DIR
# are unchanged; a failed or interrupted build leaves nothing under its name.

# Go's caches for a build into OUT_DIR. One build cache for every Go
# program: the Helm helper and the helm CLI share most packages.
go_env() { # OUT_DIR
  command -v go >/dev/null || { echo "Go is not installed (scripts/install-deps.sh installs it)" >&2; return 1; }
  mkdir -p "$1"
  export GOMODCACHE="${GOMODCACHE:-$(go env GOMODCACHE)}"
  export GOCACHE="${GOCACHE:-$(dirname "$1")/go-build}"
  export GOFLAGS="${GOFLAGS:--buildvcs=false}"
}

go_source_hash() { # SRC_DIR
  (cd "$1" && cat go.mod go.sum ./*.go) | sha256sum | cut -c1-16
}

go_build_cached() { # NAME SRC_DIR OUT_DIR [LDFLAGS] [TAGS]
  local name=$1 src=$2 out=$3 ldflags=${4:-} tags=${5:-}
  local bin; bin="$out/$name-$(go_source_hash "$src")"
  if [ -x "$bin" ]; then echo "$name: cached $bin" >&2; echo "$bin"; return; fi
  go_env "$out"
  local started=$SECONDS
  echo "$name: building $bin" >&2
  (cd "$src" && CGO_ENABLED="${GO_BUILD_CGO:-0}" go build -trimpath -tags "$tags" -o "$bin.partial" -ldflags "-s -w $ldflags" .) >&2
  mv "$bin.partial" "$bin"
  echo "$name: built in $((SECONDS - started))s" >&2
  echo "$bin"
}

# go_install_cached NAME PACKAGE VERSION OUT_DIR   prints the binary's path
#
# A pinned Go program from the module proxy (`go install PACKAGE@VERSION`),
# kept as OUT_DIR/NAME-VERSION.
go_install_cached() { # NAME PACKAGE VERSION OUT_DIR
  local name=$1 package=$2 version=$3 out=$4
  local bin="$out/$name-$version"
  if [ -x "$bin" ]; then echo "$name: cached $bin" >&2; echo "$bin"; return; fi
  go_env "$out"
  local started=$SECONDS gobin="$out/bin-$version.partial"
  echo "$name: building $package@$version" >&2
  rm -rf "$gobin"
  CGO_ENABLED=0 GOBIN="$gobin" go install -trimpath -ldflags "-s -w" "$package@$version" >&2
  # go install names the binary after the package path without a
  # major-version suffix (…/kustomize/v5 gives "kustomize"): take the one file.
  local built; built=$(find "$gobin" -type f | head -n 1)
  [ -n "$built" ] || { echo "$name: go install left no binary in $gobin" >&2; return 1; }
  mv "$built" "$bin"
  rm -rf "$gobin"
  echo "$name: built in $((SECONDS - started))s" >&2
  echo "$bin"
}

# The command line of a script whose only commands are `build` (once) and
# `path` (print the binary's path, building it if needed); the script
# defines `build` to print the path.
go_tool_main() { # "$@" of the script
  case "${1:-}" in
    build) build >/dev/null ;;
    path) build ;;
    *) echo "usage: $0 build|path" >&2; exit 2 ;;
  esac
}
