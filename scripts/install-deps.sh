#!/usr/bin/env bash
# Installs what kedge's build and tests need on a fresh Debian machine:
# Debian packages with apt-get, and a check that Go and Rust are present.
# Idempotent and quiet when everything is already there.
set -euo pipefail

# git: fixtures and loopback Git servers; openssh-server/client: the SSH Git
# tests; openssl: the test CA of the HTTPS Git tests; lintian, dpkg-dev,
# binutils (objdump): the .deb checks; systemd: systemd-analyze verify;
# debootstrap, systemd-container (systemd-nspawn), curl: the check under systemd;
# make, gcc, libc6-dev: jemalloc's build (tikv-jemalloc-sys) and Gitea's cgo SQLite driver;
# time (GNU time): helm's peak RSS in benches/helm_index.rs; docker-registry
# (the CNCF distribution registry) and apache2-utils (htpasswd): the OCI Helm
# tests, the OCI artifact tests and benches/oci_poll.rs; gnupg (gpg, gpg-agent,
# gpgconf): the OpenPGP-signed commits and tags of the Git verification tests
# (SSH signatures come from openssh-client's ssh-keygen) and the OpenPGP keys
# of the SOPS tests. strace, iproute2 (ip), util-linux (unshare) and procps
# (pgrep): the air-gapped bundle test in a network namespace, which traces
# every connect(2) of kedge.
packages=(make gcc libc6-dev git openssh-server openssh-client openssl lintian dpkg-dev binutils systemd ca-certificates debootstrap systemd-container curl time docker-registry apache2-utils gnupg strace iproute2 util-linux procps)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The tests start their own registries on 127.0.0.1; the package's service
  # would listen on :5000 on every interface.
  if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
    $sudo systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
fi

if ! command -v go >/dev/null; then
  # Debian's Go is older than go.mod asks for; GOTOOLCHAIN=auto then fetches
  # the right toolchain from the Go module proxy.
  echo "install-deps: apt-get install golang-go"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends golang-go >/dev/null
fi
command -v cargo >/dev/null || { echo "install-deps: Rust (cargo) is required: install it with rustup" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt 2>/dev/null || true
