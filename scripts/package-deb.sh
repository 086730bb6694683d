#!/usr/bin/env bash
# Builds target/debian/<package>_<version>_<arch>.deb with plain dpkg-deb
# (see packaging/deb/README.md for why not cargo-deb or debhelper). Prints
# the .deb's path.
#
#   scripts/package-deb.sh              kedge, from a release build
#   scripts/package-deb.sh kedge-helm   the Helm helper (scripts/kedge-helm.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# md5sums, then the .deb of the staged tree $1 (its DEBIAN/control written).
build_deb() { # PKG_DIR NAME
  local pkg=$1 name=$2
  (cd "$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | sort | xargs md5sum) > "$pkg/DEBIAN/md5sums"
  chmod 0644 "$pkg/DEBIAN/md5sums"
  mkdir -p target/debian
  local out="target/debian/${name}_${version}_${arch}.deb"
  SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || echo 0) \
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$out" >&2
  echo "$out"
}

control() { # TEMPLATE PKG_DIR [DEPENDS]
  mkdir -p "$2/DEBIAN"
  sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/${3:-}/" \
      -e "s/@INSTALLED_SIZE@/$(du -sk --exclude=DEBIAN "$2" | cut -f1)/" \
      "$1" > "$2/DEBIAN/control"
}

if [ "${1:-kedge}" = kedge-helm ]; then
  helper=$(scripts/kedge-helm.sh path 2>/dev/null)
  pkg="$stage/kedge-helm"
  install -D -m 0755 "$helper" "$pkg/usr/lib/kedge/kedge-helm"
  install -D -m 0644 packaging/deb/kedge-helm/copyright "$pkg/usr/share/doc/kedge-helm/copyright"
  gzip -9n < packaging/deb/kedge-helm/changelog > "$pkg/usr/share/doc/kedge-helm/changelog.gz"
  chmod 0644 "$pkg/usr/share/doc/kedge-helm/changelog.gz"
  install -D -m 0644 packaging/deb/kedge-helm/lintian-overrides "$pkg/usr/share/lintian/overrides/kedge-helm"
  control packaging/deb/kedge-helm/control.in "$pkg"
  build_deb "$pkg" kedge-helm
  exit 0
fi

cargo build --release --locked --bin kedge >&2
bin=target/release/kedge
pkg="$stage/kedge"
install -D -m 0755 "$bin" "$pkg/usr/bin/kedge"
install -D -m 0644 packaging/systemd/kedge.service "$pkg/usr/lib/systemd/system/kedge.service"
install -D -m 0644 packaging/deb/kedge.toml "$pkg/etc/kedge/kedge.toml"
install -D -m 0644 config.example.toml "$pkg/usr/share/doc/kedge/examples/kedge.toml"
install -D -m 0644 README.md "$pkg/usr/share/doc/kedge/README.md"
install -D -m 0644 packaging/deb/copyright "$pkg/usr/share/doc/kedge/copyright"
install -D -m 0644 packaging/deb/lintian-overrides "$pkg/usr/share/lintian/overrides/kedge"
mkdir -p "$pkg/usr/share/man/man1"
"$bin" man | gzip -9n > "$pkg/usr/share/man/man1/kedge.1.gz"
gzip -9n < packaging/deb/changelog > "$pkg/usr/share/doc/kedge/changelog.gz"
chmod 0644 "$pkg/usr/share/man/man1/kedge.1.gz" "$pkg/usr/share/doc/kedge/changelog.gz"

# The highest glibc symbol version the binary needs is its libc6 dependency.
glibc=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)
control packaging/deb/control.in "$pkg" "libc6 (>= $glibc), libgcc-s1"
install -m 0644 packaging/deb/conffiles "$pkg/DEBIAN/conffiles"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$pkg/DEBIAN/"
build_deb "$pkg" kedge
