#!/usr/bin/env bash
# Local-cluster workflow behind `make dev`, `make load-<job>`, `make status`, `make grafana`, `make undeploy`, and
# `make deploy-production` (the production overlay on a cluster named by SURGE_CONTEXT).
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
readonly METRICS_SERVER_VERSION=0.9.0
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

# The installed KEDA's version, from its operator's label; empty when there is none.
keda_version() {
  k -n keda get deployment keda-operator -o jsonpath='{.metadata.labels.app\.kubernetes\.io/version}' 2>/dev/null || true
}

# Waits for every Deployment an overlay runs.
wait_rollouts() {
  local deployment
  for deployment in consumer prometheus grafana loki tempo kube-state-metrics; do
    k -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout=300s
  done
}

install_keda() {
  local installed
  installed=$(keda_version)
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
  wait_rollouts
  cat <<MSG

Surge is running in namespace $NAMESPACE (context $CONTEXT).
  Grafana:   make grafana, then http://localhost:3000 (user admin, password: make grafana prints it)
  Load:      kubectl apply -f $MANIFESTS/components/load-generator/job-heavy.yaml   (or: make load-heavy)
  Consumer:  http://localhost:$NODEPORT_HOST_PORT on kind (NodePort 30800); port-forward would reach one pod only
  Status:    make status
  Check:     make e2e (the heavy profile, shortened, against the trajectory the load-generator README promises)
MSG
}

# The production overlay on a cluster the user names: KEDA must already be there (a platform team owns cluster-wide
# components; this only checks its version), Grafana's admin Secret is created when missing, the load Jobs stay out.
production() {
  guard_context
  need kubectl
  local installed
  installed=$(keda_version)
  if [ -z "$installed" ] || older_than "$installed" "$KEDA_VERSION"; then
    die "the production overlay needs KEDA $KEDA_VERSION or newer in namespace keda (found: ${installed:-none}); install it:
       kubectl --context $CONTEXT apply --server-side -f https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml"
  fi
  grafana_secret
  say "applying $MANIFESTS/overlays/production to $CONTEXT"
  k apply -k "$MANIFESTS/overlays/production"
  wait_rollouts
  say "deployed; Grafana: SURGE_CONTEXT=$CONTEXT SURGE_ALLOW_CONTEXT=yes make grafana"
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

# ---- make e2e: the heavy profile against the trajectory the load-generator README promises, on a real cluster ----

# What e2e reads and creates; tests/deploy/devscript.rs checks each exists in the rendered development overlay.
readonly E2E_RESOURCES="deployment/consumer scaledobject/consumer service/prometheus service/grafana secret/grafana-admin"
readonly E2E_JOB_FILE=$MANIFESTS/components/load-generator/job-heavy.yaml
readonly E2E_TABLE=$MANIFESTS/components/load-generator/README.md
readonly E2E_PROFILE=heavy
readonly E2E_JOB=e2e-heavy
# KEDA names the HPA it creates keda-hpa-<ScaledObject name>.
readonly E2E_HPA=keda-hpa-consumer
# A real cluster adds image pulls and readiness to every step up, and pod termination to every step down.
readonly E2E_SLACK_SECONDS=180

# The profile's row of the README's table: "peak_low peak_high reached_by_min back_by_min".
e2e_expectations() {
  awk -F'|' -v profile="\`$E2E_PROFILE\`" '
    { gsub(/^ +| +$/, "", $2) }
    $2 == profile {
      split($4, peak, "-"); gsub(/[^0-9]/, "", peak[1]); gsub(/[^0-9]/, "", peak[2])
      reached = $5; gsub(/[^0-9]/, "", reached); back = $7; gsub(/[^0-9]/, "", back)
      print peak[1], peak[2], reached, back
    }' "$E2E_TABLE"
}

e2e_fail() {
  echo "e2e FAILED: $*" >&2
  k -n "$NAMESPACE" describe "scaledobject/consumer" "hpa/$E2E_HPA" "job/$E2E_JOB" >&2 || true
  k -n "$NAMESPACE" get events --sort-by=.lastTimestamp >&2 || true
  exit 1
}

# One Prometheus instant query through the port-forward; prints the first value or "-".
e2e_query() {
  curl -fsS --max-time 5 "http://127.0.0.1:$E2E_PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    jq -r '.data.result[0].value[1] // "-"' 2>/dev/null || echo "-"
}

e2e() {
  guard_context
  need kubectl
  need curl
  need jq
  local expectations peak_low peak_high reached_by back_by min_replicas
  expectations=$(e2e_expectations)
  [ -n "$expectations" ] || die "no row for $E2E_PROFILE in $E2E_TABLE"
  read -r peak_low peak_high reached_by back_by <<<"$expectations"
  local scale=${E2E_SCALE:-1}
  min_replicas=$(k -n "$NAMESPACE" get scaledobject consumer -o jsonpath='{.spec.minReplicaCount}')
  say "e2e: $E2E_PROFILE at --scale $scale; expect $peak_low-$peak_high ready replicas within $reached_by min" \
    "(+${E2E_SLACK_SECONDS}s start-up slack), back to $min_replicas within $back_by min of the last request"
  local resource
  for resource in $E2E_RESOURCES; do
    k -n "$NAMESPACE" get "$resource" >/dev/null 2>&1 || die "$resource is missing in namespace $NAMESPACE: run make dev first"
  done
  k -n "$NAMESPACE" wait scaledobject/consumer --for=condition=Ready --timeout=120s >/dev/null ||
    e2e_fail "the ScaledObject is not Ready"

  E2E_PROM_PORT=${E2E_PROM_PORT:-19090}
  k -n "$NAMESPACE" port-forward service/prometheus "$E2E_PROM_PORT:9090" >/dev/null 2>&1 &
  local forward=$!
  trap 'kill "$forward" 2>/dev/null || true' EXIT
  sleep 3
  local -a names queries
  mapfile -t names < <(k -n "$NAMESPACE" get scaledobject consumer -o json | jq -r '.spec.triggers[] | select(.type == "prometheus") | .name')
  mapfile -t queries < <(k -n "$NAMESPACE" get scaledobject consumer -o json | jq -r '.spec.triggers[] | select(.type == "prometheus") | .metadata.query | gsub("\n"; " ")')
  local restarts_before
  restarts_before=$(k -n "$NAMESPACE" get pods -l app.kubernetes.io/name=consumer -o json |
    jq '[.items[].status.containerStatuses[]?.restartCount] | add // 0')

  say "starting Job $E2E_JOB"
  k -n "$NAMESPACE" delete job "$E2E_JOB" --ignore-not-found --cascade=foreground --wait=true >/dev/null
  # Its own name, the shortened scale, and kept after it finishes (the load Jobs are removed at once) so the loop
  # below can read its status.
  sed -e "s/^  name: load-$E2E_PROFILE\$/  name: $E2E_JOB/" -e "s/- --test=$E2E_PROFILE\$/- --test=$E2E_PROFILE\n            - --scale=$scale/" \
    -e "s/^  ttlSecondsAfterFinished: 0\$/  ttlSecondsAfterFinished: 3600/" "$E2E_JOB_FILE" | k apply -f - >/dev/null

  local started=$SECONDS now desired ready peak=0 reached_at="" finished_at="" job_state row
  E2E_STARTED_AT=$(date +%s)
  printf '%6s %8s %6s' "t(s)" "desired" "ready"
  printf ' %s' "${names[@]}"
  echo
  while :; do
    now=$((SECONDS - started))
    desired=$(k -n "$NAMESPACE" get hpa "$E2E_HPA" -o jsonpath='{.status.desiredReplicas}' 2>/dev/null || echo "?")
    ready=$(k -n "$NAMESPACE" get deployment consumer -o jsonpath='{.status.readyReplicas}' 2>/dev/null)
    ready=${ready:-0}
    row=$(printf '%6d %8s %6s' "$now" "$desired" "$ready")
    for query in "${queries[@]}"; do row+=" $(e2e_query "$query")"; done
    echo "$row"
    [ "$ready" -gt "$peak" ] && peak=$ready
    if [ -z "$reached_at" ] && [ "$ready" -ge "$peak_low" ]; then reached_at=$now; fi
    if [ -z "$finished_at" ]; then
      job_state=$(k -n "$NAMESPACE" get job "$E2E_JOB" -o jsonpath='{.status.succeeded}/{.status.failed}')
      case "$job_state" in
        1/*) finished_at=$now ;;
        */[1-9]*) e2e_fail "Job $E2E_JOB failed: kubectl -n $NAMESPACE logs job/$E2E_JOB -c generator" ;;
      esac
    fi
    if [ -n "$finished_at" ] && [ "$ready" -le "$min_replicas" ] && [ "$desired" = "$min_replicas" ]; then
      break
    fi
    if [ -n "$finished_at" ] && [ $((now - finished_at)) -gt $((back_by * 60 + E2E_SLACK_SECONDS)) ]; then
      e2e_fail "still $ready ready replicas $((now - finished_at)) s after the load ended (promised: $min_replicas within $back_by min)"
    fi
    if [ "$now" -gt $((7200)) ]; then e2e_fail "no end after two hours"; fi
    sleep 15
  done

  local failures=0 restarts_after metric_failures
  if [ "$scale" = 1 ]; then
    if [ -z "$reached_at" ] || [ "$reached_at" -gt $((reached_by * 60 + E2E_SLACK_SECONDS)) ]; then
      echo "e2e: $peak_low ready replicas reached at ${reached_at:-never} s (promised by $reached_by min)" >&2
      failures=$((failures + 1))
    fi
    if [ "$peak" -gt "$peak_high" ]; then
      echo "e2e: peaked at $peak ready replicas, above the promised $peak_high" >&2
      failures=$((failures + 1))
    fi
  elif [ "$peak" -le "$min_replicas" ]; then
    echo "e2e: never scaled above $min_replicas at --scale $scale" >&2
    failures=$((failures + 1))
  fi
  metric_failures=$(k -n "$NAMESPACE" get events --field-selector reason=FailedGetExternalMetric -o json | jq '.items | length')
  if [ "$metric_failures" -gt 0 ]; then
    echo "e2e: $metric_failures FailedGetExternalMetric events: a trigger did not report" >&2
    failures=$((failures + 1))
  fi
  restarts_after=$(k -n "$NAMESPACE" get pods -l app.kubernetes.io/name=consumer -o json |
    jq '[.items[].status.containerStatuses[]?.restartCount] | add // 0')
  if [ "$restarts_after" -gt "$restarts_before" ]; then
    echo "e2e: consumer containers restarted $((restarts_after - restarts_before)) times" >&2
    failures=$((failures + 1))
  fi
  e2e_dashboards || failures=$((failures + 1))
  [ "$failures" -eq 0 ] || e2e_fail "$failures check(s) failed (above)"
  say "e2e passed: peak $peak ready replicas (reached $peak_low at ${reached_at:-n/a} s), Job succeeded, back to $min_replicas"
}

# Every Prometheus panel query of every provisioned dashboard, through Grafana's own HTTP API, returns data at some
# point of the run (a range query from its start: the load Jobs' own series end with them).
e2e_dashboards() {
  local port=${E2E_GRAFANA_PORT:-13000} password uid expr empty=0 total=0 forward
  password=$(k -n "$NAMESPACE" get secret grafana-admin -o jsonpath='{.data.password}' | base64 -d)
  k -n "$NAMESPACE" port-forward service/grafana "$port:3000" >/dev/null 2>&1 &
  forward=$!
  sleep 3
  local api="http://admin:$password@127.0.0.1:$port/api"
  for uid in $(curl -fsS "$api/search?type=dash-db" | jq -r '.[].uid'); do
    while IFS= read -r expr; do
      [ -n "$expr" ] || continue
      expr=${expr//\$namespace/$NAMESPACE}
      expr=${expr//\$deployment/consumer}
      expr=${expr//\$__rate_interval/1m}
      expr=${expr//\$pod/.*}
      total=$((total + 1))
      if [ "$(curl -fsS "$api/datasources/proxy/uid/prometheus/api/v1/query_range" --data-urlencode "query=$expr" \
        --data-urlencode "start=${E2E_STARTED_AT:-$(($(date +%s) - 3600))}" --data-urlencode "end=$(date +%s)" \
        --data-urlencode step=30 | jq '.data.result | length')" = 0 ]; then
        echo "e2e: dashboard $uid: no data for $expr" >&2
        empty=$((empty + 1))
      fi
    done < <(curl -fsS "$api/dashboards/uid/$uid" | jq -r '.dashboard.panels[]? | select(.datasource.uid == "prometheus") | .targets[]?.expr')
  done
  kill "$forward" 2>/dev/null || true
  say "dashboards: $((total - empty)) of $total Prometheus panel queries return data through Grafana"
  [ "$total" -gt 0 ] && [ "$empty" -eq 0 ]
}

case "${1:-}" in
  dev) dev ;;
  load) load "${2:?usage: dev.sh load <job>}" ;;
  status) status ;;
  grafana) grafana ;;
  undeploy) undeploy ;;
  e2e) e2e ;;
  production) production ;;
  *) die "usage: dev.sh dev|load <job>|status|grafana|undeploy|e2e|production" ;;
esac
