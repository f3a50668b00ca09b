#!/usr/bin/env bash
# `make demo`: the consumer and one generator profile on this machine, no cluster needed.
set -euo pipefail

port=${PORT:-8000}
profile=${PROFILE:-light}
./target/release/consumer --port "$port" --bind 127.0.0.1 --drain-delay-secs 0 >/dev/null &
consumer=$!
trap 'kill "$consumer" 2>/dev/null; wait "$consumer" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
./target/release/generator --url "http://127.0.0.1:$port" --test "$profile" --monitor --monitor-interval 2s --cleanup
curl -s "http://127.0.0.1:$port/process/status"
echo
