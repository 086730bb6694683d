#!/usr/bin/env bash
# kedge's main job, end to end, on this machine alone: the bundled test
# control plane (unless KUBECONFIG names a real cluster), an empty local Git
# repository that `kedge bootstrap git` connects the node to (one commit of
# the node's directory, the node's config pointing at it), `kedge run`, an
# app added by a commit, a drift that kedge reverts, and a new commit that
# kedge applies.
#
#   scripts/demo.sh            run the demo, then stop everything it started
#   KEEP=1 scripts/demo.sh     leave kedge and the control plane running
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
demo="$root/target/demo"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

scripts/install-deps.sh
say "building kedge"
cargo build --quiet --bin kedge
kedge="$root/target/debug/kedge"

rm -rf "$demo" && mkdir -p "$demo"
started_cluster=""
if [ -z "${KUBECONFIG:-}" ]; then
  say "starting the bundled test control plane (etcd + kube-apiserver + controller-manager on 127.0.0.1)"
  scripts/testcluster.sh start "$demo/cluster"
  export KUBECONFIG="$demo/cluster/kubeconfig"
  started_cluster=1
fi

say "an empty fleet repository, and a work clone of it (the operator's laptop)"
repo="$demo/fleet.git"
work="$demo/work"
git init -q --bare -b main "$repo"
commit() { git -C "$work" -c user.name=demo -c user.email=demo@example.org commit -q "$@"; }

# Like the packaged /etc/kedge/kedge.toml: an [agent] table, nothing to do.
cat > "$demo/kedge.toml" <<TOML
[agent]
state_dir = "$demo/state"
kubeconfig = "$KUBECONFIG"
socket = "$demo/kedge.sock"
TOML
bootstrap=("$kedge" bootstrap git --url "file://$repo" --branch main --path clusters/edge-1
  --config "$demo/kedge.toml" --keys-dir "$demo/keys" --timeout 2m)
say "kedge bootstrap git --url file://$repo --branch main --path clusters/edge-1"
"${bootstrap[@]}" --no-wait
say "the node's config ($demo/kedge.toml); the rest comes from Git"
cat "$demo/kedge.toml"

say "starting kedge run (log: $demo/kedge.log)"
"$kedge" run --config "$demo/kedge.toml" 2>"$demo/kedge.log" &
kedge_pid=$!
cleanup() {
  if [ -z "${KEEP:-}" ]; then
    kill "$kedge_pid" 2>/dev/null || true
    wait "$kedge_pid" 2>/dev/null || true
    [ -n "$started_cluster" ] && scripts/testcluster.sh stop "$demo/cluster" >/dev/null
  else
    echo "kedge (pid $kedge_pid) and the control plane keep running; KUBECONFIG=$KUBECONFIG"
  fi
}
trap cleanup EXIT

say "bootstrap again: nothing changes; it waits until the node is Ready"
"${bootstrap[@]}"

say "adding an app to the node is a commit: its manifests in apps/web, a kustomization in clusters/edge-1/kedge.toml"
git clone -q "$repo" "$work"
mkdir -p "$work/apps/web"
cat >> "$work/clusters/edge-1/kedge.toml" <<'TOML'

[kustomization.web]
source = "git/fleet"
path = "apps/web"
interval = "5m"
prune = true
TOML
cat "$work/clusters/edge-1/kedge.toml"
cat > "$work/apps/web/kustomization.yaml" <<'YAML'
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: demo
labels:
- pairs:
    app.kubernetes.io/part-of: demo
  includeSelectors: true
resources:
- namespace.yaml
- web.yaml
configMapGenerator:
- name: web-settings
  literals:
  - GREETING=hello from kedge
images:
- name: nginx
  newTag: "1.27"
YAML
cat > "$work/apps/web/namespace.yaml" <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: demo
YAML
cat > "$work/apps/web/web.yaml" <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: nginx
        envFrom:
        - configMapRef:
            name: web-settings
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
YAML
git -C "$work" add -A && commit -m "web app" && git -C "$work" push -q origin main
say "kedge reconcile source git/fleet: the new kedge.toml declares kustomization/web"
"$kedge" reconcile source git/fleet --config "$demo/kedge.toml"

wait_ready() {
  for _ in $(seq 150); do
    if "$kedge" status --config "$demo/kedge.toml" 2>/dev/null | grep -q '^kustomization/web .* True'; then return 0; fi
    sleep 0.2
  done
  "$kedge" status --config "$demo/kedge.toml" || true
  echo "kedge did not get ready; its log:" >&2; tail -20 "$demo/kedge.log" >&2; exit 1
}
wait_ready
say "kedge status"
"$kedge" status --config "$demo/kedge.toml"

if command -v kubectl >/dev/null; then
  say "what kedge applied"
  kubectl get -n demo deployment,service,configmap -l kedge.dev/name=web
  say "drift: someone edits the Deployment's image by hand"
  kubectl -n demo set image deployment/web web=nginx:hacked >/dev/null
  kubectl -n demo get deployment web -o jsonpath='{.spec.template.spec.containers[0].image}{"\n"}'
  sleep 1
  printf 'one second later: '
  kubectl -n demo get deployment web -o jsonpath='{.spec.template.spec.containers[0].image}{"\n"}'
fi

say "a new commit: two replicas, and the Service is removed (pruned)"
sed -i 's/replicas: 1/replicas: 2/' "$work/apps/web/web.yaml"
python3 - "$work/apps/web/web.yaml" <<'PY'
import sys; p = sys.argv[1]; docs = open(p).read().split("---\n"); open(p, "w").write(docs[0])
PY
commit -am "scale web, drop its Service" && git -C "$work" push -q origin main
commit=$(git -C "$work" rev-parse HEAD)
say "kedge reconcile kustomization web --with-source (through the control socket)"
"$kedge" reconcile kustomization web --with-source --config "$demo/kedge.toml" || true
for _ in $(seq 100); do
  "$kedge" status --config "$demo/kedge.toml" 2>/dev/null | grep -q "kustomization/web.*$commit" && break
  sleep 0.2
done
"$kedge" status --config "$demo/kedge.toml"
if command -v kubectl >/dev/null; then
  kubectl get -n demo deployment,service -l kedge.dev/name=web
fi
say "done: kedge keeps the cluster equal to Git, and its own configuration comes from Git"
