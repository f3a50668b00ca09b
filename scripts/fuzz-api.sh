#!/usr/bin/env bash
# API fuzzing (make fuzz-api, run by make test): schemathesis with every check against the real release consumer's
# own /openapi.json, then the consumer must still be up, with no 5xx but the documented 503 in its own metrics.
# FUZZ_EXAMPLES sets examples per operation (default 40); the seed is printed, SCHEMATHESIS_SEED=<n> replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

readonly version=4.32.5
readonly venv=target/schemathesis-venv
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "version $version\$"; then
  echo "installing schemathesis $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "schemathesis==$version"
fi

cargo build -q --release --bin consumer
log=$(mktemp)
# The budget fits the fuzzed retained memory of a run (cleanup is fuzzed too); 503s past it are checked by the hook.
# A backlog of 10, not 100: sync and async wait in one FIFO, and behind 100 fuzzed full-core tasks a sync request
# legitimately waits longer than the 30 s timeout below (it did once the stateful phase chained POST /process to
# GET /process/{task_id}); behind 10 it waits seconds, and the rest are the documented 503s.
target/release/consumer --bind 127.0.0.1 --port 0 --memory-budget-mb 2048 --queue-capacity 10 --log-format json >"$log" 2>&1 &
consumer=$!
trap 'kill "$consumer" 2>/dev/null || true; rm -f "$log"' EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/.*"port":\([0-9]*\).*"message":"consumer listening".*/\1/p' "$log" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "the consumer did not start:" >&2; cat "$log" >&2; exit 1; }
url="http://127.0.0.1:$port"

seed=()
[ -z "${SCHEMATHESIS_SEED:-}" ] || seed=(--seed "$SCHEMATHESIS_SEED")
# A sync task is bounded to 1 s by the hooks, but waits behind what is ahead: up to 4 running and 10 queued tasks of
# at most 1 core-second, 14 core-seconds on 2 cores shared with schemathesis itself (and, in make test, with the
# other lanes at the same nice), then its own 1 s stretched to 2: inside 60 s.
SCHEMATHESIS_HOOKS=surge_hooks PYTHONPATH=scripts/fuzz "$venv/bin/schemathesis" run "$url/openapi.json" \
  --checks all --exclude-checks not_a_server_error --max-examples "${FUZZ_EXAMPLES:-40}" \
  --request-timeout 60 --max-response-time 60 --workers 2 --no-color "${seed[@]}"

kill -0 "$consumer" || { echo "the consumer died under fuzzing" >&2; exit 1; }
metrics=$(python3 -c "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" "$url/metrics")
server_errors=$(awk '/^http_requests_total\{.*status="5xx"/ {sum += $2} END {print sum + 0}' <<<"$metrics")
# Each task counts once per kind of work it does (cpu always, memory when it asked for some): count tasks by cpu.
refused=$(awk '/^consumer_tasks_total\{.*kind="cpu".*outcome="rejected"/ {sum += $2} END {print sum + 0}' <<<"$metrics")
requests=$(awk '/^http_requests_total\{/ {sum += $2} END {print sum + 0}' <<<"$metrics")
echo "fuzz-api: $requests requests, $server_errors answered 5xx (overload refusals counted: $refused)"
if [ "$server_errors" -gt "$refused" ]; then
  echo "error: 5xx answers beyond the overload refusals" >&2
  exit 1
fi
