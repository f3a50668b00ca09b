#!/usr/bin/env bash
# `make demo`: the whole loop on this machine, no cluster needed. The `cluster` harness starts consumer replicas behind
# HAProxy, Prometheus with the monitoring component's relabeling, and the development overlay's ScaledObject evaluated
# as KEDA and the HPA do; the generator sends PROFILE (default heavy) through it, compressed by the time scale the
# closed-loop test runs that profile at (the load-generator README's table: heavy x20, about a minute), or
# TIME_SCALE=1 for real time. Times printed are the autoscaler's seconds either way. One line per HPA sync: each trigger's value and the replicas it asks for, desired and ready replicas, offered and served rate;
# at the end the generator's HTML report (rates, latency, outcomes, pods, replicas and triggers against thresholds).
# The replicas share one node of NODE_CORES (default 8) allocatable cores, as the table's first node does (4: its second).
# Ctrl-C stops everything it started.
set -euo pipefail

profile=${PROFILE:-heavy}
table=kubernetes-manifests/components/load-generator/README.md
# The profile's row in the first table (the development overlay's on 8 cores), its time-scale column: the scale the
# closed-loop test proves its trajectory at.
default_scale=$(awk -F'|' -v p="\`$profile\`" '{ gsub(/^ +| +$/, "", $2) } $2 == p { gsub(/ /, "", $8); print $8; exit }' "$table")
time_scale=${TIME_SCALE:-${default_scale:-1}}
node_cores=${NODE_CORES:-8}
for tool in kubectl prometheus haproxy; do
  command -v "$tool" >/dev/null || { echo "make demo needs $tool (scripts/install-tools.sh installs it)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "make demo: $profile at x$time_scale (TIME_SCALE=1 for real time) on a $node_cores-core node (NODE_CORES)"
kubectl kustomize kubernetes-manifests/overlays/development >"$work/development.yaml"
./target/release/cluster --manifests "$work/development.yaml" --profile "$profile" --time-scale "$time_scale" \
  --node-cores "$node_cores" --json "demo-$profile.json" --report "demo-$profile.html" --dashboards grafana/dashboards
echo "trajectory and the generator's summary: $PWD/demo-$profile.json"
echo "the report (open it in a browser): $PWD/demo-$profile.html"
