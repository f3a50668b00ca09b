#!/usr/bin/env bash
# Local-cluster workflow behind `make dev`, `make load-<job>`, `make status`, `make grafana`, `make undeploy`, and
# `make deploy-production` (the production overlay on a cluster named by SURGE_CONTEXT).
#
# Every kubectl call names its context: the kind cluster this script creates (kind-surge), never whatever context
# happens to be current. Another cluster only with SURGE_CONTEXT=<context> SURGE_ALLOW_CONTEXT=yes (KEDA and
# metrics-server are installed cluster-wide, and `make undeploy` deletes the namespace).

# Before any bash 4 construct: macOS ships bash 3.2 as /bin/bash (empty arrays under `set -u`, `mapfile` and more
# fail there), and a shell that is not bash at all reads nothing past this line.
if [ -z "${BASH_VERSINFO:-}" ] || [ "${BASH_VERSINFO:-0}" -lt 4 ]; then
  echo "error: scripts/dev.sh needs bash 4 or newer; this is ${BASH_VERSION:-not bash}. On macOS: brew install bash" \
    "(it goes first on PATH), then run make again" >&2
  exit 2
fi
set -euo pipefail

readonly NAMESPACE=surge
readonly MANIFESTS=kubernetes-manifests
readonly KIND_CLUSTER=surge
readonly KIND_CONTEXT=kind-$KIND_CLUSTER
readonly KEDA_VERSION=2.21.0
readonly METRICS_SERVER_VERSION=0.9.0
readonly NODEPORT_HOST_PORT=8000
readonly CONTEXT=${SURGE_CONTEXT:-$KIND_CONTEXT}
# Where async work waits: redis (the shared backlog of components/queue, the development overlay: the trajectories the
# load-generator README proves) or memory (each pod's own backlog: the development-memory overlay).
readonly QUEUE=${SURGE_QUEUE:-redis}
case "$QUEUE" in
  redis) readonly DEV_OVERLAY=development ;;
  memory) readonly DEV_OVERLAY=development-memory ;;
  *) echo "dev.sh: SURGE_QUEUE must be memory or redis, not '$QUEUE'" >&2; exit 2 ;;
esac
IMAGE_TAG=${IMAGE_TAG:?IMAGE_TAG is set by the Makefile}

die() { echo "error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed (${2:-needed for this target})"; }
say() { echo "==> $*"; }
k() { kubectl --context "$CONTEXT" "$@"; }

# A read whose answer the script needs: tried three times (one apiserver timeout must not end a run), then the
# error is printed and the caller decides; never a bare substitution that `set -e` ends silently.
kq() {
  local out attempt errors
  errors=$(mktemp)
  for attempt in 1 2 3; do
    if out=$(k "$@" 2>"$errors"); then
      # A warning on a successful read (a deprecation, a skew) goes to the terminal, never into the value.
      cat "$errors" >&2
      rm -f "$errors"
      printf '%s' "$out"
      return 0
    fi
    [ "$attempt" -eq 3 ] || sleep "${KQ_RETRY_SECONDS:-2}"
  done
  echo "kubectl $*: $(cat "$errors")" >&2
  rm -f "$errors"
  return 1
}

# Every tool `make dev` runs, checked before it changes anything; each missing one named with how to install it.
preflight() {
  local missing=()
  command -v kubectl >/dev/null 2>&1 || missing+=("kubectl (https://kubernetes.io/docs/tasks/tools/)")
  command -v docker >/dev/null 2>&1 || missing+=("docker (Docker Engine or Docker Desktop)")
  if command -v docker >/dev/null 2>&1 && ! docker buildx version >/dev/null 2>&1; then
    missing+=("docker buildx, BuildKit's plugin: the Dockerfiles use RUN --mount (Debian/Ubuntu: docker-buildx-plugin)")
  fi
  command -v jq >/dev/null 2>&1 || missing+=("jq (apt-get install jq, brew install jq)")
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    command -v kind >/dev/null 2>&1 || missing+=("kind (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'error: make dev needs these, and changed nothing:\n' >&2
    printf '  - %s\n' "${missing[@]}" >&2
    exit 1
  fi
}

# kubectl supports one minor version either side of the cluster's API server; further apart, stop before applying.
check_skew() {
  local versions client server
  versions=$(kq version -o json) || die "context '$CONTEXT' does not answer kubectl version"
  client=$(jq -r '.clientVersion.minor // "" | gsub("[^0-9]"; "")' <<<"$versions")
  server=$(jq -r '.serverVersion.minor // "" | gsub("[^0-9]"; "")' <<<"$versions")
  if [ -n "$client" ] && [ -n "$server" ] && [ $((client > server ? client - server : server - client)) -gt 1 ]; then
    die "kubectl is 1.$client and the cluster 1.$server: kubectl supports one minor version either side; install
       kubectl 1.$server (https://kubernetes.io/releases/version-skew-policy/#kubectl)"
  fi
}

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

# The consumer's image under a tag that names its content (the version plus the image ID), so that a re-run after a
# code change changes the Deployment's pod template and rolls it out, and a re-run without one leaves the pods alone.
content_tag() {
  local id
  id=$(docker image inspect -f '{{.Id}}' "surge-consumer:$IMAGE_TAG") || die "no image surge-consumer:$IMAGE_TAG"
  id=${id#sha256:}
  CONSUMER_IMAGE=surge-consumer:$IMAGE_TAG-${id:0:12}
  docker tag "surge-consumer:$IMAGE_TAG" "$CONSUMER_IMAGE"
}

load_images() {
  local archive platform
  local images=("surge-consumer:$IMAGE_TAG" "$CONSUMER_IMAGE" "surge-generator:$IMAGE_TAG")
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    # One platform in the archive: with Docker's containerd image store a plain save (which `kind load docker-image`
    # does) lists every platform of the base images and the node's `ctr import --all-platforms` fails (kind#3795).
    # Docker before 28 has no --platform, and its classic store saves one platform anyway.
    archive=$(mktemp)
    platform=()
    if docker image save --help 2>/dev/null | grep -q -- '--platform'; then
      platform=(--platform "$(docker image inspect -f '{{.Os}}/{{.Architecture}}' "surge-consumer:$IMAGE_TAG")")
    fi
    if ! { docker image save "${platform[@]}" -o "$archive" "${images[@]}" &&
      kind load image-archive "$archive" --name "$KIND_CLUSTER"; }; then
      rm -f "$archive"
      die "loading the images into kind failed"
    fi
    rm -f "$archive"
  elif [ "$CONTEXT" = minikube ]; then
    local image
    for image in "${images[@]}"; do minikube image load "$image"; done
  else
    say "context '$CONTEXT' is neither kind nor minikube: push ${images[*]} to a registry it pulls from"
  fi
}

# Overlay $1 as applied: the consumer image it names ($2) replaced by $3; $4, a label selector (default: everything).
apply_overlay() {
  k kustomize "$MANIFESTS/overlays/$1" | sed "s#image: $2\$#image: $3#" | k apply -f - -l "${4:-}"
}

# The development overlay (development-memory when SURGE_QUEUE=memory) as applied: the consumer on its content tag. $1: a
# label selector.
apply_development() {
  apply_overlay "$DEV_OVERLAY" "surge-consumer:$IMAGE_TAG" "$CONSUMER_IMAGE" "$1"
}

# True when version $1 is older than $2 (dotted numbers).
older_than() {
  [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$1" ]
}

# The installed KEDA's version, from its operator's label; empty when there is none.
keda_version() {
  k -n keda get deployment keda-operator -o jsonpath='{.metadata.labels.app\.kubernetes\.io/version}' 2>/dev/null || true
}

# Waits for every Deployment an overlay runs; $1: where its async work waits (redis runs Redis first).
wait_rollouts() {
  local deployment
  local deployments=(consumer prometheus grafana loki tempo kube-state-metrics)
  [ "$1" = redis ] && deployments=(redis "${deployments[@]}")
  for deployment in "${deployments[@]}"; do
    k -n "$NAMESPACE" rollout status "deployment/$deployment" --timeout=300s
  done
}

# Marks what make dev installed cluster-wide ($1, at version $2), so `make undeploy` removes that and leaves what was
# there before: a ConfigMap in kube-system per component.
record_installed() {
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: ConfigMap
metadata:
  name: surge-installed-$1
  namespace: kube-system
  labels:
    app.kubernetes.io/managed-by: surge-make-dev
data:
  version: "$2"
YAML
}

# True when make dev installed $1 here (its mark exists).
installed_by_dev() {
  [ -n "$(kq -n kube-system get configmap "surge-installed-$1" --ignore-not-found -o jsonpath='{.metadata.name}')" ]
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
  # The names KEDA's release file gives them (config/ at the tag; the Helm chart names differ), then the external
  # metrics API the HPA reads through, then the webhook that must admit the ScaledObject.
  [ -n "$installed" ] || record_installed keda "$KEDA_VERSION"
  k -n keda rollout status deployment/keda-operator --timeout=300s
  k -n keda rollout status deployment/keda-metrics-apiserver --timeout=300s
  k -n keda rollout status deployment/keda-admission --timeout=300s
  k wait --for=condition=Available apiservice/v1beta1.external.metrics.k8s.io --timeout=120s
}

install_metrics_server() {
  if k -n kube-system get deployment metrics-server >/dev/null 2>&1; then
    say "metrics-server already installed"
    return
  fi
  say "installing metrics-server $METRICS_SERVER_VERSION"
  k apply -f \
    "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml"
  record_installed metrics-server "$METRICS_SERVER_VERSION"
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    # kind's kubelets serve self-signed certificates.
    k -n kube-system patch deployment metrics-server --type=json \
      -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--kubelet-insecure-tls"}]'
  fi
}

# The nodes' allocatable CPU, in whole cores summed over nodes.
node_cores() {
  local cpus cpu total=0
  cpus=$(kq get nodes -o jsonpath='{.items[*].status.allocatable.cpu}') || return 1
  for cpu in $cpus; do
    case "$cpu" in
      *m) total=$((total + ${cpu%m})) ;;
      *) total=$((total + cpu * 1000)) ;;
    esac
  done
  echo $((total / 1000))
}

# "yes" when the consumer already runs as many replicas as the nodes have room for (a load filled them), so a rollout's
# surge pod could not be scheduled; "no" otherwise, or when there is no consumer yet or nothing can be read.
node_full_for_a_surge() {
  local replicas cores others request
  replicas=$(kq -n "$NAMESPACE" get deployment consumer --ignore-not-found -o jsonpath='{.spec.replicas}' 2>/dev/null) ||
    replicas=""
  if [ -z "$replicas" ]; then echo no; return; fi
  if ! { cores=$(node_cores 2>/dev/null) && others=$(others_millicores 2>/dev/null) &&
    request=$(replica_millicores 2>/dev/null); }; then
    echo no
    return
  fi
  if [ "$request" -gt 0 ] && [ "$replicas" -ge $(((cores * 1000 - others) / request)) ]; then echo yes; else echo no; fi
}

# CPU in millicores: the requests of every pod but the consumer's (what the scheduler has already given away), then
# one consumer replica's request.
others_millicores() {
  kq get pods -A -l 'app.kubernetes.io/name!=consumer' -o json |
    jq '[.items[].spec.containers[].resources.requests.cpu // "0" | tostring
      | if endswith("m") then .[:-1] | tonumber else tonumber * 1000 end] | add // 0 | floor'
}
replica_millicores() {
  kq -n "$NAMESPACE" get deployment consumer -o jsonpath='{.spec.template.spec.containers[0].resources.requests.cpu}' |
    awk '/m$/ { sub(/m$/, ""); print int($0); next } { print int($0 * 1000) }'
}

# The load-generator README's table for a node of $1 cores: 8 from 8 cores up, else 4 (below 4, neither holds).
table_node() {
  if [ "$1" -ge 8 ]; then echo 8; else echo 4; fi
}

# Creates Secret $1 with a random password unless it exists (a re-run keeps the password the pods already use).
random_secret() {
  k create namespace "$NAMESPACE" --dry-run=client -o yaml | k apply -f - >/dev/null
  if ! k -n "$NAMESPACE" get secret "$1" >/dev/null 2>&1; then
    say "creating Secret $1 with a random password"
    k -n "$NAMESPACE" create secret generic "$1" \
      --from-literal=password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
  fi
}

# The Secrets an overlay reads; $1: where its async work waits (redis needs Redis's password).
create_secrets() {
  random_secret grafana-admin
  if [ "$1" = redis ]; then random_secret redis-auth; fi
}

dev() {
  guard_context
  preflight
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not running"
  ensure_cluster
  check_skew
  say "building images"
  make --no-print-directory images
  content_tag
  say "loading images into $CONTEXT ($CONSUMER_IMAGE)"
  load_images
  install_keda
  install_metrics_server
  create_secrets "$QUEUE"
  # The load Jobs are left out: re-applying them would suspend a running one and kill its pods. The ScaledObject
  # comes after Prometheus is ready: KEDA polls at once, and each failed poll leaves an hour-long event.
  local full
  full=$(node_full_for_a_surge)
  say "applying $MANIFESTS/overlays/$DEV_OVERLAY (all but the load Jobs and the ScaledObject)"
  apply_development 'app.kubernetes.io/component!=load-generator,app.kubernetes.io/component!=autoscaling'
  if [ "$full" = yes ]; then
    # A surge pod would wait Pending and, with maxUnavailable 0, no old pod may go: one old pod at a time makes the
    # room instead. The manifest's strategy comes back with the next apply.
    say "the node has no room for another consumer replica: rolling out one pod at a time (maxUnavailable 1)$(
      [ "$QUEUE" = redis ] && echo "; what a replaced pod held goes back to the shared backlog")"
    k -n "$NAMESPACE" patch deployment consumer --type merge \
      -p '{"spec":{"strategy":{"rollingUpdate":{"maxUnavailable":1}}}}' >/dev/null
  fi
  wait_rollouts "$QUEUE"
  say "applying the ScaledObject"
  apply_development 'app.kubernetes.io/component=autoscaling'
  k -n "$NAMESPACE" wait scaledobject/consumer --for=condition=Ready --timeout=120s ||
    die "the ScaledObject is not Ready: kubectl --context $CONTEXT -n $NAMESPACE describe scaledobject/consumer"
  local cores others request fit
  cores=$(node_cores) || die "could not read the nodes' allocatable CPU"
  others=$(others_millicores) || die "could not read the pods' CPU requests"
  request=$(replica_millicores) || die "could not read the consumer's CPU request"
  fit=$(((cores * 1000 - others) / request))
  cat <<MSG

Surge is running in namespace $NAMESPACE (context $CONTEXT), consumer image $CONSUMER_IMAGE.
  CPU:       the nodes can allocate $cores cores, their other pods request ${others}m and a consumer replica
             ${request}m: $fit replicas run at once, the rest of the ScaledObject's maximum wait Pending. The
             load-generator README's table for a $(table_node "$cores")-core node is this one's (make e2e reads it).
  Grafana:   make grafana, then http://localhost:3000 (user admin, password: make grafana prints it)
  Load:      kubectl --context $CONTEXT apply -f $MANIFESTS/components/load-generator/job-heavy.yaml   (or: make load-heavy)
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
  # Its CPU and memory triggers read the resource metrics API: without metrics-server the ScaledObject never works.
  k wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=30s >/dev/null 2>&1 ||
    die "the production overlay's cpu and memory triggers need the resource metrics API (metrics-server):
       apiservice/v1beta1.metrics.k8s.io is missing or not Available on $CONTEXT"
  # Nothing publishes the image the overlay names: the user pushes one and says where.
  local named
  named=$(sed -n 's/^ *newName: //p' "$MANIFESTS/overlays/production/kustomization.yaml" | head -n 1)
  [ -n "${SURGE_IMAGE:-}" ] ||
    die "the production overlay names $named:$IMAGE_TAG, which no registry publishes. Push your own and name it:
       make images && docker tag surge-consumer:$IMAGE_TAG <registry>/surge-consumer:<tag> && docker push <registry>/surge-consumer:<tag>
       SURGE_IMAGE=<registry>/surge-consumer:<tag> SURGE_CONTEXT=$CONTEXT SURGE_ALLOW_CONTEXT=yes make deploy-production"
  create_secrets memory
  say "applying $MANIFESTS/overlays/production to $CONTEXT (consumer image $SURGE_IMAGE)"
  apply_overlay production "$named:$IMAGE_TAG" "$SURGE_IMAGE"
  wait_rollouts memory
  say "deployed; Grafana: SURGE_CONTEXT=$CONTEXT SURGE_ALLOW_CONTEXT=yes make grafana"
}

load() {
  guard_context
  need kubectl
  local file="$MANIFESTS/components/load-generator/job-$1.yaml" name parallelism ready="" waited=0
  [ -f "$file" ] || die "no Job file $file (see $MANIFESTS/components/load-generator/)"
  name=$(sed -n 's/^  name: //p' "$file" | head -n 1)
  parallelism=$(sed -n 's/^  parallelism: //p' "$file" | head -n 1)
  parallelism=${parallelism:-1}
  # A finished Job cannot be re-run in place: delete it and its pods first (foreground), then create it anew.
  k -n "$NAMESPACE" delete job "$name" --ignore-not-found --cascade=foreground --wait=true
  k apply -f "$file"
  say "waiting for $name's generator to start"
  # The Job's own status (not a pod label an old pod may still carry), at least one pod ready: an Indexed Job's
  # count jumps from 0 to its parallelism, so `wait --for=jsonpath=...=1` would never match it.
  while [ "${ready:-0}" -lt 1 ]; do
    [ "$waited" -lt 300 ] || die "job/$name has no ready pod after 5 minutes: kubectl -n $NAMESPACE describe job/$name"
    ready=$(kq -n "$NAMESPACE" get job "$name" -o jsonpath='{.status.ready}') || ready=0
    [ "${ready:-0}" -ge 1 ] || { sleep "${POLL_SECONDS:-2}"; waited=$((waited + ${POLL_SECONDS:-2})); }
  done
  if [ "$parallelism" -gt 1 ]; then
    # Every pod's log, each line prefixed with its pod (job/<name> would follow one of them).
    # --ignore-errors: the pods start one after another, and a sibling still starting must not end the follow.
    k -n "$NAMESPACE" logs -f -l "batch.kubernetes.io/job-name=$name" -c generator --prefix --ignore-errors \
      --max-log-requests="$parallelism"
  else
    k -n "$NAMESPACE" logs -f "job/$name" -c generator
  fi
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

# Removes what `make dev` applied: the namespace's objects, the Secrets, and what it installed cluster-wide (KEDA,
# metrics-server: only where it installed them, by their marks); on kind, the cluster itself, which make dev created.
undeploy() {
  guard_context
  if [ "$CONTEXT" = "$KIND_CONTEXT" ]; then
    # The cluster is make dev's own: deleting it removes everything at once (no waiting out namespace termination).
    if kind_cluster_exists; then
      say "deleting kind cluster '$KIND_CLUSTER' (everything make dev installed goes with it)"
      kind delete cluster --name "$KIND_CLUSTER"
    else
      say "no kind cluster '$KIND_CLUSTER': nothing to remove"
    fi
    return
  fi
  need kubectl
  # Each step runs whatever the one before left (a make dev that failed before KEDA leaves no ScaledObject kind:
  # kubectl deletes the rest and names that kind); the exit code says whether anything failed.
  local failed=0 errors
  # A kind that is not served has no objects to delete (KEDA never installed: no ScaledObject).
  if ! errors=$(k delete -k "$MANIFESTS/overlays/$DEV_OVERLAY" --ignore-not-found 2>&1 >/dev/null); then
    if grep -v -e '^error: resource mapping not found' -e '^ensure CRDs are installed first' <<<"$errors" | grep -q .; then
      echo "$errors" >&2
      failed=1
    fi
  fi
  k -n "$NAMESPACE" delete secret grafana-admin redis-auth --ignore-not-found || failed=1
  # Cluster-wide components only where make dev installed them: another team's KEDA stays.
  if installed_by_dev keda; then
    k delete --ignore-not-found -f \
      "https://github.com/kedacore/keda/releases/download/v$KEDA_VERSION/keda-$KEDA_VERSION.yaml" || failed=1
    k -n kube-system delete configmap surge-installed-keda --ignore-not-found || failed=1
  else
    say "left KEDA: make dev did not install it here"
  fi
  if installed_by_dev metrics-server; then
    k delete --ignore-not-found -f \
      "https://github.com/kubernetes-sigs/metrics-server/releases/download/v$METRICS_SERVER_VERSION/components.yaml" ||
      failed=1
    k -n kube-system delete configmap surge-installed-metrics-server --ignore-not-found || failed=1
  else
    say "left metrics-server: make dev did not install it here"
  fi
  [ "$failed" -eq 0 ] || die "some objects could not be deleted (above); what could be was"
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
# The port-forwards e2e starts (kubectl's own PIDs): the EXIT trap ends them, however the script ends.
E2E_FORWARDS=()

# The profile's row of the README's table: "peak_low peak_high reached_by_seconds back_by_seconds load_seconds" (its
# cells say "5 min" or "90 s").
e2e_expectations() {
  # Only the development overlay's table for a node of $1 cores: the README's other tables name the same profiles.
  awk -F'|' -v profile="\`$E2E_PROFILE\`" -v heading="## Expected trajectories (development overlay, $1-core node)" '
    function seconds(cell,  n) { n = cell; gsub(/[^0-9]/, "", n); return cell ~ /min/ ? n * 60 : n }
    /^## / { table = ($0 == heading) }
    { gsub(/^ +| +$/, "", $2) }
    table && $2 == profile {
      split($4, peak, "-"); gsub(/[^0-9]/, "", peak[1]); gsub(/[^0-9]/, "", peak[2])
      print peak[1], peak[2], seconds($5), seconds($7), seconds($3)
    }' "$E2E_TABLE"
}

# Seconds on e2e's clock: bash's own, or E2E_CLOCK's (a command printing seconds: the tests' fakes advance one a poll).
e2e_seconds() {
  if [ -n "${E2E_CLOCK:-}" ]; then "$E2E_CLOCK"; else echo "$SECONDS"; fi
}

e2e_fail() {
  echo "e2e FAILED: $*" >&2
  k -n "$NAMESPACE" describe "scaledobject/consumer" "hpa/$E2E_HPA" "job/$E2E_JOB" >&2 || true
  k -n "$NAMESPACE" get events --sort-by=.lastTimestamp >&2 || true
  exit 1
}

e2e_stop_forwards() {
  local pid
  for pid in "${E2E_FORWARDS[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  E2E_FORWARDS=()
}

# Port-forwards service $1 to local port $2 (remote $3) and waits until $4 (a URL through it) answers.
e2e_forward() {
  # kubectl itself in the background (not the k function, whose $! would be a subshell that outlives the kill).
  kubectl --context "$CONTEXT" -n "$NAMESPACE" port-forward "service/$1" "$2:$3" >/dev/null 2>&1 &
  E2E_FORWARDS+=("$!")
  local waited=0
  until curl -fsS --max-time 2 -o /dev/null "$4" 2>/dev/null; do
    [ "$waited" -lt "${E2E_FORWARD_TIMEOUT:-30}" ] || e2e_fail "service/$1 does not answer on localhost:$2 ($4)"
    sleep 1
    waited=$((waited + 1))
  done
}

# One Prometheus instant query through the port-forward; prints the first value or "-".
e2e_query() {
  curl -fsS --max-time 5 "http://127.0.0.1:$E2E_PROM_PORT/api/v1/query" --data-urlencode "query=$1" 2>/dev/null |
    jq -r '.data.result[0].value[1] // "-"' 2>/dev/null || echo "-"
}

# Consumer container restarts so far.
e2e_restarts() {
  kq -n "$NAMESPACE" get pods -l app.kubernetes.io/name=consumer -o json |
    jq '[.items[].status.containerStatuses[]?.restartCount] | add // 0'
}

e2e() {
  guard_context
  need kubectl
  need curl
  need jq
  trap e2e_stop_forwards EXIT
  local expectations peak_low peak_high reached_by back_by load_seconds min_replicas cores table full_node=yes
  cores=$(node_cores) || die "cannot read the nodes' allocatable CPU"
  table=$(table_node "$cores")
  expectations=$(e2e_expectations "$table")
  [ -n "$expectations" ] || die "no row for $E2E_PROFILE in $E2E_TABLE's table for a $table-core node"
  read -r peak_low peak_high reached_by back_by load_seconds <<<"$expectations"
  local resource
  for resource in $E2E_RESOURCES; do
    kq -n "$NAMESPACE" get "$resource" >/dev/null || die "$resource is missing in namespace $NAMESPACE: run make dev first"
  done
  local scale=${E2E_SCALE:-1}
  min_replicas=$(kq -n "$NAMESPACE" get scaledobject consumer -o jsonpath='{.spec.minReplicaCount}') ||
    e2e_fail "cannot read the ScaledObject"
  # Below the smallest table's node neither table holds: there only the scale-up and the return are promised.
  [ "$cores" -ge "$table" ] || full_node=no
  say "e2e: $E2E_PROFILE at --scale $scale on $cores allocatable cores (the $table-core table)"
  if [ "$scale" = 1 ] && [ "$full_node" = yes ]; then
    say "expect $peak_low-$peak_high replicas (Pending ones counted, as the table does) within $reached_by s" \
      "(+${E2E_SLACK_SECONDS}s start-up slack), back to $min_replicas within $back_by s of the last request"
  else
    say "expect a scale-up above $min_replicas and back to it within $back_by s of the last request" \
      "(the peak is asserted only at --scale 1 on $table cores or more)"
  fi
  k -n "$NAMESPACE" wait scaledobject/consumer --for=condition=Ready --timeout=120s >/dev/null ||
    e2e_fail "the ScaledObject is not Ready"

  E2E_PROM_PORT=${E2E_PROM_PORT:-19090}
  e2e_forward prometheus "$E2E_PROM_PORT" 9090 "http://127.0.0.1:$E2E_PROM_PORT/-/ready"
  local scaled_object
  scaled_object=$(kq -n "$NAMESPACE" get scaledobject consumer -o json) || e2e_fail "cannot read the ScaledObject"
  local -a names queries
  mapfile -t names < <(jq -r '.spec.triggers[] | select(.type == "prometheus") | .name' <<<"$scaled_object")
  mapfile -t queries < <(jq -r '.spec.triggers[] | select(.type == "prometheus") | .metadata.query | gsub("\n"; " ")' <<<"$scaled_object")
  local restarts_before
  restarts_before=$(e2e_restarts) || e2e_fail "cannot read the consumer's pods"

  say "starting Job $E2E_JOB"
  k -n "$NAMESPACE" delete job "$E2E_JOB" --ignore-not-found --cascade=foreground --wait=true >/dev/null
  # Its own name, the shortened scale, and kept after it finishes (the load Jobs are removed at once) so the loop
  # below can read its status. Rewritten as JSON with jq: portable, where a sed inserting a line is not (BSD sed).
  local job
  job=$(kq create --dry-run=client -o json -f "$E2E_JOB_FILE") || e2e_fail "cannot read $E2E_JOB_FILE"
  jq --arg name "$E2E_JOB" --arg scale "--scale=$scale" '.metadata.name = $name | .spec.ttlSecondsAfterFinished = 3600
    | .spec.template.spec.containers |= map(if .name == "generator" then .args += [$scale] else . end)' <<<"$job" |
    k apply -f - >/dev/null
  # Events from before this run (KEDA's start-up, an earlier run) are not this run's.
  E2E_SINCE=$(date -u +%Y-%m-%dT%H:%M:%S)

  # The table times the return from the last request, not from the Job's end (it follows its tasks for minutes
  # more): the load's length at this scale after the Job started.
  local started now desired ready peak=0 reached_at="" finished_at="" job_state row load_ends
  started=$(e2e_seconds)
  load_ends=$(awk -v s="$load_seconds" -v f="$scale" 'BEGIN { print int(s * f + 0.5) }')
  E2E_STARTED_AT=$(date +%s)
  printf '%6s %8s %6s' "t(s)" "desired" "ready"
  printf ' %s' "${names[@]}"
  echo
  while :; do
    now=$(($(e2e_seconds) - started))
    desired=$(kq -n "$NAMESPACE" get hpa "$E2E_HPA" -o jsonpath='{.status.desiredReplicas}') || desired="?"
    ready=$(kq -n "$NAMESPACE" get deployment consumer -o jsonpath='{.status.readyReplicas}') || ready=0
    ready=${ready:-0}
    row=$(printf '%6d %8s %6s' "$now" "$desired" "$ready")
    for query in "${queries[@]}"; do row+=" $(e2e_query "$query")"; done
    echo "$row"
    # The table's replicas are the Deployment's, Pending ones included: the HPA's desired count.
    [ "$desired" -gt "$peak" ] 2>/dev/null && peak=$desired
    if [ -z "$reached_at" ] && [ "$desired" -ge "$peak_low" ] 2>/dev/null; then reached_at=$now; fi
    if [ -z "$finished_at" ]; then
      job_state=$(kq -n "$NAMESPACE" get job "$E2E_JOB" -o jsonpath='{.status.succeeded}/{.status.failed}') ||
        e2e_fail "cannot read Job $E2E_JOB"
      case "$job_state" in
        1/*) finished_at=$now ;;
        */[1-9]*) e2e_fail "Job $E2E_JOB failed: kubectl -n $NAMESPACE logs job/$E2E_JOB -c generator" ;;
      esac
    fi
    if [ -n "$finished_at" ] && [ "$ready" -le "$min_replicas" ] && [ "$desired" = "$min_replicas" ]; then
      break
    fi
    if [ $((now - load_ends)) -gt $((back_by + E2E_SLACK_SECONDS)) ]; then
      e2e_fail "still $ready ready replicas $((now - load_ends)) s after the last request (promised: $min_replicas within $back_by s of it)"
    fi
    if [ "$now" -gt $((7200)) ]; then e2e_fail "no end after two hours"; fi
    sleep "${E2E_POLL_SECONDS:-15}"
  done

  local failures=0 restarts_after metric_failures
  if [ "$peak" -le "$min_replicas" ]; then
    echo "e2e: never scaled above $min_replicas" >&2
    failures=$((failures + 1))
  fi
  if [ "$scale" = 1 ] && [ "$full_node" = yes ]; then
    if [ -z "$reached_at" ] || [ "$reached_at" -gt $((reached_by + E2E_SLACK_SECONDS)) ]; then
      echo "e2e: $peak_low replicas reached at ${reached_at:-never} s (promised by $reached_by s)" >&2
      failures=$((failures + 1))
    fi
    if [ "$peak" -gt "$peak_high" ]; then
      echo "e2e: peaked at $peak replicas, above the promised $peak_high" >&2
      failures=$((failures + 1))
    fi
  fi
  metric_failures=$(kq -n "$NAMESPACE" get events --field-selector reason=FailedGetExternalMetric -o json |
    jq --arg since "$E2E_SINCE" '[.items[] | select(((.lastTimestamp // .eventTime // .metadata.creationTimestamp // "")[0:19]) >= $since)] | length') ||
    e2e_fail "cannot read the events"
  if [ "$metric_failures" -gt 0 ]; then
    echo "e2e: $metric_failures FailedGetExternalMetric events during the run: a trigger did not report" >&2
    failures=$((failures + 1))
  fi
  restarts_after=$(e2e_restarts) || e2e_fail "cannot read the consumer's pods"
  if [ "$restarts_after" -gt "$restarts_before" ]; then
    echo "e2e: consumer containers restarted $((restarts_after - restarts_before)) times" >&2
    failures=$((failures + 1))
  fi
  e2e_dashboards || failures=$((failures + 1))
  [ "$failures" -eq 0 ] || e2e_fail "$failures check(s) failed (above)"
  say "e2e passed: peak $peak replicas (reached $peak_low at ${reached_at:-n/a} s), Job succeeded, back to $min_replicas"
}

# Every Prometheus panel query of every provisioned dashboard, through Grafana's own HTTP API, returns data at some
# point of the run (a range query from its start: the load Jobs' own series end with them). A query Grafana or
# Prometheus refuses (a 4xx, bad PromQL) counts as no data, never as data.
e2e_dashboards() {
  local port=${E2E_GRAFANA_PORT:-13000} password uid expr empty=0 total=0 answer dashboards search
  password=$(kq -n "$NAMESPACE" get secret grafana-admin -o jsonpath='{.data.password}' | base64 -d) ||
    e2e_fail "cannot read Grafana's password"
  e2e_forward grafana "$port" 3000 "http://127.0.0.1:$port/api/health"
  local api="http://admin:$password@127.0.0.1:$port/api"
  search=$(curl -fsS --max-time 10 "$api/search?type=dash-db") || e2e_fail "Grafana's search API failed"
  for uid in $(jq -r '.[].uid' <<<"$search"); do
    dashboards=$(curl -fsS --max-time 10 "$api/dashboards/uid/$uid") || e2e_fail "Grafana has no dashboard $uid"
    while IFS= read -r expr; do
      [ -n "$expr" ] || continue
      expr=${expr//\$namespace/$NAMESPACE}
      expr=${expr//\$deployment/consumer}
      expr=${expr//\$__rate_interval/1m}
      expr=${expr//\$pod/.*}
      total=$((total + 1))
      if ! answer=$(curl -fsS --max-time 10 "$api/datasources/proxy/uid/prometheus/api/v1/query_range" \
        --data-urlencode "query=$expr" --data-urlencode "start=${E2E_STARTED_AT:-$(($(date +%s) - 3600))}" \
        --data-urlencode "end=$(date +%s)" --data-urlencode step=30 2>&1); then
        echo "e2e: dashboard $uid: the query failed ($answer): $expr" >&2
        empty=$((empty + 1))
      elif [ "$(jq '.data.result | length' <<<"$answer")" = 0 ]; then
        echo "e2e: dashboard $uid: no data for $expr" >&2
        empty=$((empty + 1))
      fi
    done < <(jq -r '.dashboard.panels[]? | select(.datasource.uid == "prometheus") | .targets[]?.expr' <<<"$dashboards")
  done
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
