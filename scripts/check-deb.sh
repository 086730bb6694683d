#!/usr/bin/env bash
# Builds the .deb and checks it the way a user meets it: its contents,
# lintian, dpkg -i, the installed binary, then remove (only the conffile may
# stay) and purge (nothing may stay). Needs root: it installs the package.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "check-deb: $*" >&2; exit 1; }

deb=$(scripts/package-deb.sh)
echo "check-deb: $deb"

expected=(./usr/bin/kedge ./usr/lib/systemd/system/kedge.service ./etc/kedge/kedge.toml
          ./usr/share/man/man1/kedge.1.gz ./usr/share/doc/kedge/copyright ./usr/share/doc/kedge/changelog.gz)
contents=$(dpkg-deb --contents "$deb" | awk '{print $6}')
for f in "${expected[@]}"; do grep -qx "$f" <<<"$contents" || fail "missing $f in the package"; done
dpkg-deb --info "$deb" conffiles | grep -qx /etc/kedge/kedge.toml || fail "kedge.toml is not a conffile"

lintian --fail-on error --tag-display-limit 0 "$deb" || fail "lintian reported errors"

[ "$(id -u)" -eq 0 ] || fail "installing needs root"
if dpkg-query -W kedge >/dev/null 2>&1; then fail "kedge is already installed here: remove it first (dpkg --purge kedge)"; fi
dpkg -i "$deb"
/usr/bin/kedge --version
# Test hooks are compiled into test builds only (Cargo feature test-hooks).
if grep -qa KEDGE_TEST_STALL_LOOP_WHEN /usr/bin/kedge; then fail "the packaged binary honours a test hook"; fi
/usr/bin/kedge check-config /etc/kedge/kedge.toml
getent group kedge >/dev/null || fail "group kedge not created"
# --man=no: verify runs `man` for Documentation=man:, and a system without man-db is fine.
systemd-analyze verify --man=no /usr/lib/systemd/system/kedge.service

leftovers() { # files the package installed that still exist
  dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's/^\.//' | while read -r f; do
    if [ -n "$f" ] && [ ! -d "$f" ] && [ -e "$f" ]; then echo "$f"; fi
  done
}
dpkg --remove kedge
left=$(leftovers)
[ "$left" = "/etc/kedge/kedge.toml" ] || fail "after remove, expected only the conffile, found: $left"
dpkg --purge kedge
left=$(leftovers)
[ -z "$left" ] || fail "after purge, found: $left"
[ ! -e /etc/kedge ] && [ ! -e /var/lib/kedge ] || fail "after purge, /etc/kedge or /var/lib/kedge remains"
! getent group kedge >/dev/null || fail "after purge, group kedge remains"

# The Helm helper's own package: installed beside kedge, answering its protocol.
helm_deb=$(scripts/package-deb.sh kedge-helm)
echo "check-deb: $helm_deb ($(du -k "$helm_deb" | cut -f1) KiB)"
dpkg-deb --contents "$helm_deb" | awk '{print $6}' | grep -qx ./usr/lib/kedge/kedge-helm || fail "missing kedge-helm in its package"
lintian --fail-on error --tag-display-limit 0 "$helm_deb" || fail "lintian reported errors in kedge-helm"
if dpkg-query -W kedge-helm >/dev/null 2>&1; then fail "kedge-helm is already installed here"; fi
dpkg -i "$helm_deb"
echo '{"op":"version"}' | /usr/lib/kedge/kedge-helm | grep -q '"ok":true' || fail "the installed kedge-helm does not answer"
dpkg --purge kedge-helm
[ ! -e /usr/lib/kedge ] || fail "after purge, /usr/lib/kedge remains"
echo "check-deb: ok"
