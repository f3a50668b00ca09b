#!/usr/bin/env bash
# Local-cluster workflow behind `make dev`, `make load-<job>`, `make status`, `make grafana`, `make undeploy`.
#
# Every kubectl call names its context: the kind cluster this script creates (kind-surge), never whatever context
# happens to be current. Another cluster only with SURGE_CONTEXT=<context> SURGE_ALLOW_CONTEXT=yes (KEDA and
# metrics-server are installed cluster-wide, and `make undeploy` deletes the namespace).
set -euo pipefail

readonly NAMESPACE=surge
readonly MANIFESTS=kubernetes-manifests
readonly KIND_CLUSTER=surge
readonly KIND_CONTEXT=kind-$KIND_CLUSTER
readonly KEDA_VERSION=2.20.2
readonly METRICS_SERVER_VERSION=0.7.2
readonly NODEPORT_HOST_PORT=8000
readonly CONTEXT=${SURGE_CONTEXT:-$KIND_CONTEXT}
IMAGE_TAG=${IMAGE_TAG:?IMAGE_TAG is set by the Makefile}

die() { echo "error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (${2:-needed for this target})"; }
say() { echo "==> $*"; }
k() { kubectl --context "$CONTEXT" "$@"; }

# Refuses any context but the kind cluster's unless the user opted in by name.
guard_context() {
  if [ "$CONTEXT" != "$KIND_CONTEXT" ] && [ "${SURGE_ALLOW_CONTEXT:-}" != yes ]; then
    die "refusing context '$CONTEXT': this target installs cluster-wide components and deletes namespaces.
       Use the kind cluster (unset SURGE_CONTEXT), or confirm with SURGE_ALLOW_CONTEXT=yes SURGE_CONTEXT=$CONTEXT"
  fi
}

kind_cluster_exists() {
  command -v kind >/dev/null 2>&1 && kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"
}

# The kind cluster, created when missing; an existing one must map the NodePort the final message promises.
ensure_cluster() {
  if [ "$CONTEXT" != "$KIND_CONTEXT" ]; then
    k cluster-info >/dev/null 2>&1 || die "context '$CONTEXT' does not answer"
    return
  fi
  need kind "make dev creates a kind cluster"
  if kind_cluster_exists; then
    docker port "$KIND_CLUSTER-control-plane" 30800/tcp 2>/dev/null | grep -q ":$NODEPORT_HOST_PORT\$" ||
      die "kind cluster '$KIND_CLUSTER' exists without the localhost:$NODEPORT_HOST_PORT mapping; delete it:
       kind delete cluster --name $KIND_CLUSTER"
    return
  fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$NODEPORT_HOST_PORT") 2>/dev/null; then
    die "port $NODEPORT_HOST_PORT is in use (make run?): the cluster maps the consumer's NodePort there; stop it first"
  fi
  say "creating kind cluster '$KIND_CLUSTER' (node image pinned in $MANIFESTS/kind/cluster.yaml)"
  kind create cluster --name "$KIND_CLUSTER" --config "$MANIFESTS/kind/cluster.yaml"
}

load_images() {
  local archive
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    # Through an archive: `kind load docker-image` fails with Docker's containerd image store (kind issue 3795).
    archive=$(mktemp)
    if ! { docker save -o "$archive" "surge-consumer:$IMAGE_TAG" "surge-generator:$IMAGE_TAG" &&
      kind load image-archive "$archive" --name "$KIND_CLUSTER"; }; then
      rm -f "$archive"
      die "loading the images into kind failed"
    fi
    rm -f "$archive"
  elif [ "$CONTEXT" = minikube ]; then
    minikube image load "surge-consumer:$IMAGE_TAG"
    minikube image load "surge-generator:$IMAGE_TAG"
  else
    say "context '$CONTEXT' is neither kind nor minikube: push surge-consumer:$IMAGE_TAG and surge-generator:$IMAGE_TAG to a registry it pulls from"
  fi
}

# True when version $1 is older than $2 (dotted numbers).
older_than() {
  [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

install_keda() {
  local installed
  installed=$(k -n keda get deployment keda-operator \
    -o jsonpath='{.metadata.labels.app\.kubernetes\.io/version}' 2>/dev/null || true)
  if [ -n "$installed" ] && ! older_than "$installed" "$KEDA_VERSION"; then
    say "KEDA $installed already installed"
    return
  fi
  if [ -n "$installed" ]; then
    # An older KEDA rejects or silently prunes fields the ScaledObject uses (fallback.behavior).
    say "KEDA $installed is older than $KEDA_VERSION: upgrading"
  elif k get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    die "the ScaledObject CRD exists but no keda-operator Deployment in namespace keda: install KEDA $KEDA_VERSION yourself"
  else
    say "installing KEDA $KEDA_VERSION"
  fi
  k apply --server-side --force-conflicts -f \
    "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"
  k -n keda rollout status deployment/keda-operator --timeout=300s
  k -n keda rollout status deployment/keda-operator-metrics-apiserver --timeout=300s
}

install_metrics_server() {
  if k -n kube-system get deployment metrics-server >/dev/null 2>&1; then
    say "metrics-server already installed"
    return
  fi
  say "installing metrics-server $METRICS_SERVER_VERSION"
  k apply -f \
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml"
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    # kind's kubelets serve self-signed certificates.
    k -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
  fi
}

grafana_secret() {
  k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
  if ! k -n "$NAMESPACE" get secret grafana-admin >/dev/null 2>&1; then
    say "creating Secret grafana-admin with a random password"
    k -n "$NAMESPACE" create secret generic grafana-admin \
      --from-literal=password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  fi
}

dev() {
  guard_context
  need kubectl
  need docker
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not running"
  ensure_cluster
  say "building images"
  make --no-print-directory images
  say "loading images into $CONTEXT"
  load_images
  install_keda
  install_metrics_server
  grafana_secret
  # The load Jobs are left out: re-applying them would suspend a running one and kill its pods.
  say "applying $MANIFESTS/overlays/development (all but the load Jobs)"
  k apply -k "$MANIFESTS/overlays/development" -l 'app.kubernetes.io/component!=load-generator'
  for deployment in consumer prometheus grafana loki tempo kube-state-metrics; do
    k -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout=300s
  done
  cat <<MSG

Surge is running in namespace $NAMESPACE (context $CONTEXT).
  Grafana:   make grafana, then http://localhost:3000 (user admin, password: make grafana prints it)
  Load:      kubectl apply -f $MANIFESTS/components/load-generator/job-heavy.yaml   (or: make load-heavy)
  Consumer:  http://localhost:$NODEPORT_HOST_PORT on kind (NodePort 30800); port-forward would reach one pod only
  Status:    make status
  Check:     make e2e (the heavy profile, shortened, against the trajectory the load-generator README promises)
MSG
}

load() {
  guard_context
  need kubectl
  local file="$MANIFESTS/components/load-generator/job-$1.yaml" name
  [ -f "$file" ] || die "no Job file $file (see $MANIFESTS/components/load-generator/)"
  name=$(sed -n 's/^  name: //p' "$file" | head -n 1)
  # A finished Job cannot be re-run in place: delete it and its pods first (foreground), then create it anew.
  k -n "$NAMESPACE" delete job "$name" --ignore-not-found --cascade=foreground --wait=true
  k apply -f "$file"
  say "waiting for $name's generator to start"
  # The Job's own status, not a pod label an old pod may still carry.
  k -n "$NAMESPACE" wait "job/$name" --for=jsonpath='{.status.ready}'=1 --timeout=300s >/dev/null ||
    die "job/$name has no ready pod after 5 minutes: kubectl -n $NAMESPACE describe job/$name"
  k -n "$NAMESPACE" logs -f "job/$name" -c generator
}

status() {
  guard_context
  need kubectl
  k -n "$NAMESPACE" get scaledobject,hpa,deployment,pods,jobs -o wide
}

grafana() {
  guard_context
  need kubectl
  echo "Grafana on http://localhost:3000  user: admin  password: $(k -n "$NAMESPACE" get secret grafana-admin \
    -o jsonpath='{.data.password}' | base64 -d)"
  k -n "$NAMESPACE" port-forward service/grafana 3000:3000
}

# Removes what `make dev` applied: the namespace's objects, the Secret, and what it installed cluster-wide (KEDA,
# metrics-server); then the kind cluster itself when it is the one `make dev` created.
undeploy() {
  guard_context
  need kubectl
  k delete -k "$MANIFESTS/overlays/development" --ignore-not-found
  k -n "$NAMESPACE" delete secret grafana-admin --ignore-not-found
  if [ "$CONTEXT" = "$KIND_CONTEXT" ] && kind_cluster_exists; then
    say "deleting kind cluster '$KIND_CLUSTER' (KEDA and metrics-server go with it)"
    kind delete cluster --name "$KIND_CLUSTER"
    return
  fi
  k delete --ignore-not-found -f \
    "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"
  k delete --ignore-not-found -f \
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml"
}

case "${1:-}" in
  dev) dev ;;
  load) load "${2:?usage: dev.sh load <job>}" ;;
  status) status ;;
  grafana) grafana ;;
  undeploy) undeploy ;;
  *) die "usage: dev.sh dev|load <job>|status|grafana|undeploy" ;;
esac
