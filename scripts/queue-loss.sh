#!/usr/bin/env bash
# What a scale-down (SIGTERM) or a crash (SIGKILL) does to accepted async work, per queue: 20 tasks
# (cpu_intensity=9, memory_size=50, duration=5) accepted by replica a, then the signal to a; with Redis a second
# replica b runs alongside, as the Deployment's other pods would. Prints how each accepted task ended.
# Usage: scripts/queue-loss.sh memory|redis TERM|KILL   (release binary: cargo build --release --bin consumer)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?memory or redis}
signal=${2:?TERM or KILL}
binary=${CONSUMER:-target/release/consumer}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
env_common=(CPU_WORK=simulate CPU_CAPACITY=1 MEMORY_BUDGET_MB=384 LOG_FORMAT=json)
if [ "$mode" = redis ]; then
  redis_port=$(free_port)
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly yes --dir "$work" >/dev/null &
  pids+=($!)
  until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
  env_common+=(QUEUE_URL="redis://127.0.0.1:$redis_port")
fi
start() {
  local name=$1 port
  port=$(free_port)
  env "${env_common[@]}" POD_NAME="$name" PORT="$port" BIND=127.0.0.1 "$binary" >"$work/$name.log" 2>&1 &
  pids+=($!)
  until curl -sf "http://127.0.0.1:$port/health" >/dev/null; do sleep 0.05; done
  echo "$port $!"
}
read -r port_a pid_a < <(start a)
ids=()
for _ in $(seq 20); do
  ids+=("$(curl -sf -X POST "http://127.0.0.1:$port_a/process?async_mode=true&cpu_intensity=9&memory_size=50&duration=5" |
    jq -r .task_id)")
done
echo "$mode: 20 tasks accepted by a"
port_b=
if [ "$mode" = redis ]; then read -r port_b _ < <(start b); fi
sleep 1
kill -"$signal" "$pid_a"
# Reparented to whatever reaps orphans here (maybe nothing): a zombie counts as gone.
while ps -o stat= -p "$pid_a" | grep -qv '^Z'; do sleep 0.2; done
echo "a got SIG$signal and exited"
if [ "$mode" = memory ]; then
  completed=$(grep -c '"status":"completed"' "$work/a.log" || true)
  cancelled=$(grep -c '"message":"task finished".*"status":"cancelled"\|"status":"cancelled".*"message":"task finished"' "$work/a.log" || true)
  echo "memory: completed $completed, cancelled $cancelled, lost without a record $((20 - completed - cancelled))"
  exit 0
fi
deadline=$((SECONDS + 180))
while :; do
  states=$(for id in "${ids[@]}"; do curl -s "http://127.0.0.1:$port_b/process/$id" | jq -r '.status + "@" + (.pod // "-")'; done |
    sort | uniq -c | tr '\n' ' ')
  done_count=$( (grep -o '[0-9]* completed@' <<<"$states" || true) | awk '{s+=$1} END {print s+0}')
  [ "$done_count" -eq 20 ] && break
  [ "$SECONDS" -lt "$deadline" ] || { echo "redis: not all completed: $states"; exit 1; }
  [ -z "${VERBOSE:-}" ] || echo "$states"
  sleep 1
done
handed=$(grep -c 'handed an unfinished task back' "$work/a.log" || true)
claims=$(curl -s "http://127.0.0.1:$port_b/metrics" | awk '$1 == "consumer_queue_claims_total" {print $2}')
echo "redis: $states(record status@pod); a handed back $handed, b claimed $claims; after ${SECONDS}s"
