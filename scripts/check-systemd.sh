#!/usr/bin/env bash
# Runs kedge the way a user meets it, under a real systemd: a Debian
# bookworm root filesystem (debootstrap, cached under target/) booted with
# systemd-nspawn (systemd as PID 1), the .deb installed with apt, the test
# control plane on the host's loopback as the cluster, a local Git
# repository as the source. Then checks, each by polling with a deadline:
# enable --now, the STATUS= line, journald fields, socket access by group,
# good and bad reloads, a rewritten kubeconfig, drift, stop, the watchdog,
# systemd-analyze, kedge bootstrap git (systemctl restart, wait for Ready),
# remove and purge.
#
# Needs root (it boots a container). Without machined on the host, nspawn
# runs with --register=no --keep-unit inside its own mount namespace with a
# private /run/systemd/nspawn; commands run in the container through
# nsenter into its PID 1's namespaces. Its network is the host's, so the
# container reaches the control plane on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

packages=systemd,systemd-sysv,dbus,git
suite=bookworm
cache=$repo/target/systemd-root
run=$repo/target/systemd-check
fail() { echo "check-systemd: FAIL: $*" >&2; exit 1; }
say() { echo "check-systemd: $*"; }

[ "$(id -u)" -eq 0 ] || fail "needs root (it boots a container)"
for tool in debootstrap:debootstrap systemd-nspawn:systemd-container; do
  command -v "${tool%%:*}" >/dev/null || fail "${tool%%:*} missing: apt-get install ${tool#*:} (scripts/install-deps.sh does)"
done

# The Debian mirror apt on this host uses, else deb.debian.org.
mirror() {
  local uri
  uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -1 || true)
  [ -n "$uri" ] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v security | head -1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# The root filesystem, built once per package list.
rootfs() {
  local key dir
  key=$(echo "$suite minbase $packages" | sha256sum | cut -c1-16)
  dir=$cache/$suite-$key
  if [ ! -d "$dir" ]; then
    say "building the $suite root filesystem ($packages) into $dir" >&2
    rm -rf "$dir.partial"
    mkdir -p "$cache"
    debootstrap --variant=minbase --include="$packages" "$suite" "$dir.partial" "$(mirror)" >"$cache/debootstrap.log" 2>&1 \
      || { tail -20 "$cache/debootstrap.log" >&2; fail "debootstrap failed (log: $cache/debootstrap.log)"; }
    # No getty on the container's console: nothing types into it.
    rm -f "$dir.partial"/etc/systemd/system/getty.target.wants/*
    mv "$dir.partial" "$dir"
  fi
  echo "$dir"
}

# Polls `$@` until it succeeds, for at most $deadline seconds.
deadline=30
until_ok() {
  local what=$1; shift
  local started=$SECONDS
  until "$@" >/dev/null 2>&1; do
    [ $((SECONDS - started)) -lt "$deadline" ] || fail "$what: not true after ${deadline}s ($*)"
    sleep 0.2
  done
}

# A command inside the container, as root or (with `as USER`) as a user.
ct() { nsenter --target "$leader" --all env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
as() { local user=$1; shift; ct runuser -u "$user" -- "$@"; }
ct_file() { echo "/proc/$leader/root$1"; }

nspawn_pid=
cleanup() {
  set +e
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid" # nspawn asks the container's systemd to halt
    for _ in $(seq 100); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$nspawn_pid" 2>/dev/null
  fi
  scripts/testcluster.sh stop "$run/cluster" >/dev/null
}
trap cleanup EXIT

started=$SECONDS
deb=${KEDGE_DEB:-$(scripts/package-deb.sh)} # KEDGE_DEB: a .deb built before
root_dir=$(rootfs)
say "root filesystem ready after $((SECONDS - started))s"
rm -rf "$run"
mkdir -p "$run/deb"
cp "$deb" "$run/deb/kedge.deb"
scripts/testcluster.sh start "$run/cluster"
kubeconfig=$run/cluster/kubeconfig
# The API server as the host sees it: curl with the kubeconfig's CA and token.
server=$(sed -n 's/^ *server: *//p' "$kubeconfig")
token=$(sed -n 's/^ *token: *//p' "$kubeconfig")
sed -n 's/^ *certificate-authority-data: *//p' "$kubeconfig" | base64 -d >"$run/ca.crt"
api() { # METHOD PATH [MERGE-PATCH]
  local patch=()
  [ -z "${3:-}" ] || patch=(-H 'Content-Type: application/merge-patch+json' --data "$3")
  curl -fsS --cacert "$run/ca.crt" -H "Authorization: Bearer $token" -X "$1" "${patch[@]}" "$server$2"
}
web_config=/api/v1/namespaces/web/configmaps/web-config
edit_web_config() { api PATCH "$web_config?fieldManager=check-systemd" "$1" >/dev/null; }
greeting_is() { api GET "$web_config" | grep -q "\"greeting\": *\"$1\""; }

# The source: a plain directory of manifests in a local repository.
git init -q --bare "$run/fleet.git"
work=$run/fleet-work
git init -q -b main "$work"
mkdir -p "$work/apps"
cat >"$work/apps/web.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: web
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: web
data:
  greeting: hello
EOF
mkdir -p "$work/extras"
cat >"$work/extras/extras.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: extras-config
  namespace: web
data:
  more: "yes"
EOF
git -C "$work" add -A
git -C "$work" -c user.name=check -c user.email=check@localhost commit -q -m "web"
git -C "$work" push -q "$run/fleet.git" main

# The repository `kedge bootstrap git` connects the node to: a manifest in
# the node's directory, no kedge.toml yet (bootstrap pushes it).
git init -q --bare -b main "$run/node.git"
node_work=$run/node-work
git init -q -b main "$node_work"
mkdir -p "$node_work/clusters/check"
cat >"$node_work/clusters/check/bootstrapped.yaml" <<'EOF'
apiVersion: v1
kind: Namespace
metadata:
  name: bootstrap-check
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: bootstrapped
  namespace: bootstrap-check
data:
  from: git
EOF
git -C "$node_work" add -A
git -C "$node_work" -c user.name=check -c user.email=check@localhost commit -q -m "node"
git -C "$node_work" push -q "$run/node.git" main

# Boot. The overlay keeps the cached root filesystem untouched.
unshare --mount bash -c '
  mkdir -p /run/systemd/nspawn && mount -t tmpfs tmpfs /run/systemd/nspawn
  exec systemd-nspawn --quiet --boot --register=no --keep-unit --volatile=overlay \
    --directory="$0" --machine=kedge-check --console=read-only \
    --bind-ro="$1/fleet.git:/srv/fleet.git" --bind="$1/node.git:/srv/node.git" --bind-ro="$1/deb:/mnt/deb"' \
  "$root_dir" "$run" </dev/null >"$run/console.log" 2>&1 &
nspawn_pid=$!
leader_of_nspawn() { # the container's systemd, a child of nspawn
  local child
  for child in $(pgrep -P "$nspawn_pid"); do
    [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ] && leader=$child && return 0
  done
  return 1
}
until_ok "the container's PID 1" leader_of_nspawn
until_ok "boot (systemctl is-system-running)" \
  bash -c "nsenter --target $leader --all systemctl is-system-running | grep -Eqx 'running|degraded'"
say "booted after $((SECONDS - started))s: $(ct systemctl is-system-running || true)"

# Install as a user would.
# Without its recommends (openssh-client): this check has no SSH source, and no network for apt.
ct apt-get install -y -q --no-install-recommends /mnt/deb/kedge.deb >"$run/apt.log" 2>&1 || { cat "$run/apt.log"; fail "apt install"; }
ct systemctl is-enabled kedge >/dev/null || fail "the package does not enable kedge.service"
ct test -e /usr/bin/man && fail "man is installed in the container: the verify below would not show a missing man"
ct systemd-analyze verify --man=no /usr/lib/systemd/system/kedge.service || fail "systemd-analyze verify"

ct mkdir -p /etc/rancher/k3s
install -m 0600 "$kubeconfig" "$(ct_file /etc/rancher/k3s/k3s.yaml)"
config() { # writes /etc/kedge/kedge.toml: $1 is appended to the base
  cat >"$(ct_file /etc/kedge/kedge.toml)" <<EOF
[agent]
state_dir = "/var/lib/kedge"
kubeconfig = "/etc/rancher/k3s/k3s.yaml"

[git.fleet]
url = "/srv/fleet.git"
ref = { branch = "main" }
interval = "1h"

[kustomization.apps]
source = "git/fleet"
path = "./apps"
interval = "1h"
prune = true
$1
EOF
}
config ""
ct systemctl enable --now kedge
until_ok "kedge active" ct systemctl is-active kedge
until_ok "apps applied (kedge status)" ct kedge status
greeting_is hello || fail "web-config not applied"
deadline=5
until_ok "STATUS= line after the first apply" \
  bash -c "nsenter --target $leader --all systemctl show -p StatusText --value kedge | grep -q '^1/1 kustomizations ready'"
deadline=30
say "applied and STATUS= follows after $((SECONDS - started))s: $(ct systemctl show -p StatusText --value kedge)"

# journald: fields select, the source carries its kind, a clean start warns of nothing.
ct journalctl -u kedge KUSTOMIZATION=apps REASON=ReconciliationSucceeded -o cat | grep -q 'Applied revision' \
  || fail "journalctl KUSTOMIZATION=apps REASON=ReconciliationSucceeded selects nothing"
[ -n "$(ct journalctl -u kedge SOURCE=git/fleet -o cat)" ] || fail "journalctl SOURCE=git/fleet selects nothing"
warnings=$(ct journalctl _SYSTEMD_UNIT=kedge.service -p warning -o cat || true)
[ -z "$warnings" ] || fail "a clean start logged warnings: $warnings"

# The control socket: root, a member of group kedge, anybody else.
ct useradd --create-home --groups kedge member
ct useradd --create-home other
as member kedge status >/dev/null || fail "a member of group kedge cannot run kedge status"
if out=$(as other kedge status 2>&1); then fail "kedge status as a non-member exits 0: $out"; fi
grep -qi "permission denied" <<<"$out" || fail "kedge status as a non-member does not say why: $out"
if as other kedge reconcile kustomization apps >/dev/null 2>&1; then fail "a non-member can request a reconcile"; fi

# Reloads: a good one applies, a bad one is refused with the right key and line.
extras='
[kustomization.extras]
source = "git/fleet"
path = "./extras"
interval = "30m"
prune = true
depends_on = ["apps"]'
config "$extras"
ct systemctl reload kedge
until_ok "good reload" bash -c "nsenter --target $leader --all journalctl -u kedge -o cat | grep -q 'config reloaded'"
config "$extras

[kustomization.broken]
source = \"git/fleet\"
path = \"./apps\"
interval = \"5m\""
ct systemctl reload kedge
until_ok "bad reload refused" bash -c "nsenter --target $leader --all journalctl -u kedge -o cat | grep -q 'kustomization.broken: missing field .prune.'"
ct systemctl is-active kedge >/dev/null || fail "a bad reload stopped kedge"
{ ct kedge status || true; } | grep -q "kustomization.broken" || fail "kedge status does not show the refused config"
config ""
ct systemctl reload kedge
until_ok "config accepted again" bash -c "! nsenter --target $leader --all kedge status | grep -q refused"

# A kubeconfig rewritten in place (a k3s certificate rotation): picked up without a restart.
sed "s#$server#https://127.0.0.1:1#" "$kubeconfig" >"$(ct_file /etc/rancher/k3s/k3s.yaml)"
ct systemctl reload kedge
until_ok "reconcile fails with the broken kubeconfig" bash -c "! nsenter --target $leader --all kedge reconcile kustomization apps"
ct journalctl -u kedge KUSTOMIZATION=apps -p warning -o cat | grep -q '127.0.0.1:1' \
  || fail "an unreachable API server is logged without its URL: $(ct journalctl -u kedge -p warning -o cat | tail -3)"
cp "$kubeconfig" "$(ct_file /etc/rancher/k3s/k3s.yaml)"
until_ok "the fixed kubeconfig is picked up" ct kedge reconcile kustomization apps

# Drift: a field kedge set is reverted; a field it never set is not drift.
drift_lines() { ct journalctl -u kedge -o cat | grep -c 'drift on' || true; }
edit_web_config '{"data":{"greeting":"changed"}}'
until_ok "drift reverted" greeting_is hello
until_ok "the drift logged" bash -c "nsenter --target $leader --all journalctl -u kedge -o cat | grep -q 'drift on'"
drifts=$(drift_lines)
edit_web_config '{"data":{"extra":"x"}}'
# A reconcile, then a real drift: the watch reports in order, so a false
# drift of the extra key would be logged before the real one.
ct kedge reconcile kustomization apps >/dev/null
edit_web_config '{"data":{"greeting":"again"}}'
until_ok "second drift reverted" greeting_is hello
until_ok "the second drift logged" bash -c "[ \$(nsenter --target $leader --all journalctl -u kedge -o cat | grep -c 'drift on') -gt $drifts ]"
[ "$(drift_lines)" = $((drifts + 1)) ] || fail "a key kedge never set was reported as drift: $(ct journalctl -u kedge -o cat | grep 'drift on')"

# Stop: fast and clean.
stop_started=$(date +%s%N)
ct systemctl stop kedge
stop_ms=$((($(date +%s%N) - stop_started) / 1000000))
[ "$(ct systemctl show -p Result --value kedge)" = success ] || fail "stop was not clean"
say "systemctl stop took ${stop_ms}ms"

# The watchdog restarts a stopped process.
ct mkdir -p /etc/systemd/system/kedge.service.d
printf '[Service]\nWatchdogSec=2s\nTimeoutAbortSec=1s\nRestartSec=1s\n' >"$(ct_file /etc/systemd/system/kedge.service.d/watchdog.conf)"
ct systemctl daemon-reload
ct systemctl start kedge
until_ok "kedge active" ct systemctl is-active kedge
pid=$(ct systemctl show -p MainPID --value kedge)
ct systemctl kill --kill-whom=main --signal=SIGSTOP kedge
until_ok "the watchdog restarts a stopped kedge" \
  bash -c "p=\$(nsenter --target $leader --all systemctl show -p MainPID --value kedge); [ \"\$p\" != 0 ] && [ \"\$p\" != $pid ]"
ct journalctl -u kedge -o cat | grep -qi 'watchdog timeout' || fail "no watchdog timeout in the journal"
until_ok "kedge active after the watchdog restart" ct systemctl is-active kedge
rm -rf "$(ct_file /etc/systemd/system/kedge.service.d)"
ct systemctl daemon-reload

# kedge bootstrap git on the running node: one commit of the node's
# directory pushed, /etc/kedge/kedge.toml rewritten (the old one kept),
# kedge restarted by systemctl because [agent] changed, and bootstrap waits
# until the node's kustomization is Ready. A second run changes nothing;
# one while kedge is stopped starts it.
bootstrap() { ct kedge bootstrap git --url /srv/node.git --branch main --path clusters/check --timeout 60s; }
bootstrap >"$run/bootstrap.log" 2>&1 || { cat "$run/bootstrap.log"; fail "kedge bootstrap git"; }
grep -q "systemctl restart kedge" "$run/bootstrap.log" || fail "bootstrap did not restart kedge: $(cat "$run/bootstrap.log")"
grep -q "kustomization/check: Ready" "$run/bootstrap.log" || fail "bootstrap did not wait for Ready: $(cat "$run/bootstrap.log")"
api GET /api/v1/namespaces/bootstrap-check/configmaps/bootstrapped >/dev/null || fail "the node's directory was not applied"
ct test -e /etc/kedge/kedge.toml.bootstrap-old || fail "bootstrap did not keep the old config"
[ "$(git -C "$run/node.git" rev-list --count main)" = 2 ] || fail "bootstrap did not push exactly one commit"
bootstrap >"$run/bootstrap-again.log" 2>&1 || { cat "$run/bootstrap-again.log"; fail "kedge bootstrap git, run again"; }
grep -q "kedge runs this config already" "$run/bootstrap-again.log" || fail "a second bootstrap changed something: $(cat "$run/bootstrap-again.log")"
[ "$(git -C "$run/node.git" rev-list --count main)" = 2 ] || fail "a second bootstrap pushed a commit"
ct systemctl stop kedge
bootstrap >"$run/bootstrap-stopped.log" 2>&1 || { cat "$run/bootstrap-stopped.log"; fail "kedge bootstrap git, kedge stopped"; }
grep -q "systemctl start kedge" "$run/bootstrap-stopped.log" || fail "bootstrap did not start kedge: $(cat "$run/bootstrap-stopped.log")"
ct systemctl is-active kedge >/dev/null || fail "kedge is not active after bootstrap started it"
say "bootstrap: pushed, restarted by systemctl, Ready; a second run changed nothing; a stopped kedge is started"

# Remove keeps the conffile and state; purge leaves nothing.
ct apt-get remove -y -q kedge >>"$run/apt.log" 2>&1 || fail "apt remove"
ct systemctl is-active kedge >/dev/null && fail "kedge still runs after remove"
ct test -e /etc/kedge/kedge.toml || fail "remove deleted the conffile"
ct test -e /usr/bin/kedge && fail "remove left /usr/bin/kedge"
ct apt-get purge -y -q kedge >>"$run/apt.log" 2>&1 || fail "apt purge"
for path in /etc/kedge /var/lib/kedge /usr/lib/systemd/system/kedge.service; do
  ct test -e "$path" && fail "purge left $path"
done
ct getent group kedge >/dev/null && fail "purge left group kedge"

say "ok in $((SECONDS - started))s"
