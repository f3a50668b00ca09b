#!/usr/bin/env bash
# Local-cluster workflow behind `make dev`, `make load-<job>`, `make status`, `make grafana`, `make undeploy`.
set -euo pipefail

readonly NAMESPACE=surge
readonly MANIFESTS=kubernetes-manifests
readonly KIND_CLUSTER=surge
readonly KEDA_VERSION=2.20.2
readonly METRICS_SERVER_VERSION=0.7.2
IMAGE_TAG=${IMAGE_TAG:?IMAGE_TAG is set by the Makefile}

die() { echo "error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (${2:-needed for this target})"; }
say() { echo "==> $*"; }

# Prints kind, minikube or other for the reachable cluster; creates a kind cluster when none answers.
cluster() {
  if kubectl cluster-info >/dev/null 2>&1; then
    case "$(kubectl config current-context)" in
      kind-*) echo kind ;;
      minikube) echo minikube ;;
      *) echo other ;;
    esac
    return
  fi
  need kind "no cluster is reachable; install kind or start minikube"
  say "no cluster reachable: creating kind cluster '$KIND_CLUSTER'" >&2
  kind create cluster --config "$MANIFESTS/kind/cluster.yaml" >&2
  echo kind
}

load_images() {
  local kind_of=$1 image
  for image in "surge-consumer:$IMAGE_TAG" "surge-generator:$IMAGE_TAG"; do
    case "$kind_of" in
      kind) kind load docker-image "$image" --name "$(kubectl config current-context | sed 's/^kind-//')" ;;
      minikube) minikube image load "$image" ;;
      *) say "cluster is neither kind nor minikube: push $image to a registry it can pull from" ;;
    esac
  done
}

install_keda() {
  if kubectl get crd scaledobjects.keda.sh >/dev/null 2>&1; then
    say "KEDA already installed"
    return
  fi
  say "installing KEDA $KEDA_VERSION"
  kubectl apply --server-side -f \
    "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"
  kubectl -n keda rollout status deployment/keda-operator --timeout=300s
  kubectl -n keda rollout status deployment/keda-operator-metrics-apiserver --timeout=300s
}

install_metrics_server() {
  local kind_of=$1
  if kubectl -n kube-system get deployment metrics-server >/dev/null 2>&1; then
    say "metrics-server already installed"
    return
  fi
  say "installing metrics-server $METRICS_SERVER_VERSION"
  kubectl apply -f \
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml"
  if [ "$kind_of" = kind ]; then
    # kind's kubelets serve self-signed certificates.
    kubectl -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
  fi
}

grafana_secret() {
  kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  if ! kubectl -n "$NAMESPACE" get secret grafana-admin >/dev/null 2>&1; then
    say "creating Secret grafana-admin with a random password"
    kubectl -n "$NAMESPACE" create secret generic grafana-admin \
      --from-literal=password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  fi
}

dev() {
  need kubectl
  need docker
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not running"
  local kind_of
  kind_of=$(cluster)
  say "building images"
  make --no-print-directory images
  say "loading images into the $kind_of cluster"
  load_images "$kind_of"
  install_keda
  install_metrics_server "$kind_of"
  grafana_secret
  say "applying $MANIFESTS/overlays/development"
  kubectl apply -k "$MANIFESTS/overlays/development"
  for deployment in consumer prometheus grafana loki tempo kube-state-metrics; do
    kubectl -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout=300s
  done
  cat <<MSG

Surge is running in namespace $NAMESPACE.
  Grafana:   make grafana, then http://localhost:3000 (user admin, password: make grafana prints it)
  Load:      kubectl apply -f $MANIFESTS/components/load-generator/job-heavy.yaml   (or: make load-heavy)
  Consumer:  http://localhost:8000 on kind (NodePort 30800); port-forward would reach one pod only
  Status:    make status
MSG
}

load() {
  need kubectl
  local file="$MANIFESTS/components/load-generator/job-$1.yaml" name
  [ -f "$file" ] || die "no Job file $file (see $MANIFESTS/components/load-generator/)"
  name=$(sed -n 's/^  name: //p' "$file" | head -n 1)
  # A finished Job cannot be re-run in place: replace it.
  kubectl -n "$NAMESPACE" delete job "$name" --ignore-not-found
  kubectl apply -f "$file"
  say "waiting for $name to start"
  kubectl -n "$NAMESPACE" wait --for=condition=Ready pod -l "job-name=$name" --timeout=300s >/dev/null || true
  kubectl -n "$NAMESPACE" logs -f "job/$name" -c generator
}

status() {
  need kubectl
  kubectl -n "$NAMESPACE" get scaledobject,hpa,deployment,pods,jobs -o wide
}

grafana() {
  need kubectl
  echo "Grafana on http://localhost:3000  user: admin  password: $(kubectl -n "$NAMESPACE" get secret grafana-admin \
    -o jsonpath='{.data.password}' | base64 -d)"
  kubectl -n "$NAMESPACE" port-forward service/grafana 3000:3000
}

undeploy() {
  need kubectl
  kubectl delete -k "$MANIFESTS/overlays/development" --ignore-not-found
  kubectl -n "$NAMESPACE" delete secret grafana-admin --ignore-not-found
}

case "${1:-}" in
  dev) dev ;;
  load) load "${2:?usage: dev.sh load <job>}" ;;
  status) status ;;
  grafana) grafana ;;
  undeploy) undeploy ;;
  *) die "usage: dev.sh dev|load <job>|status|grafana|undeploy" ;;
esac
