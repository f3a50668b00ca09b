#!/usr/bin/env bash
# `make demo`: the whole loop on this machine, no cluster needed. The `cluster` harness starts consumer replicas behind
# HAProxy, Prometheus with the monitoring component's relabeling, and the development overlay's ScaledObject evaluated
# as KEDA and the HPA do; the generator sends PROFILE (default heavy) through it at real time (TIME_SCALE=1). One line
# per HPA sync: each trigger's value and the replicas it asks for, desired and ready replicas, offered and served rate;
# at the end the generator's HTML report (rates, latency, outcomes, pods, replicas and triggers against thresholds).
# Ctrl-C stops everything it started.
set -euo pipefail

profile=${PROFILE:-heavy}
time_scale=${TIME_SCALE:-1}
for tool in kubectl prometheus haproxy; do
  command -v "$tool" >/dev/null || { echo "make demo needs $tool (scripts/install-tools.sh installs it)" >&2; exit 2; }
done
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kubectl kustomize kubernetes-manifests/overlays/development >"$work/development.yaml"
./target/release/cluster --manifests "$work/development.yaml" --profile "$profile" --time-scale "$time_scale" \
  --json "demo-$profile.json" --report "demo-$profile.html" --dashboards grafana/dashboards
echo "trajectory and the generator's summary: demo-$profile.json; the report: demo-$profile.html"
