#!/usr/bin/env bash
# make test's runner: every test binary of the workspace (built already), then fuzz-api, in three lanes at once, each
# line prefixed with its binary's name; a table of what passed and how long each took at the end; non-zero if any
# failed (every binary runs even after one fails). Logs: target/test-logs/<name>.log.
#  - timed (normal priority): the closed loop, whose runs fail on a sync begun 40-100 ms of wall time late, so it
#    gets the cores first; it uses under one core of the two.
#  - busy (nice 19): the release build, the manifest and make-dev tests (two cores of kustomize and Python), the unit
#    tests, the simulator's; nice 19 gives way to the closed loop (a cpu_stress run beside the deploy tests began
#    every sync within 0.08 s of the autoscaler's time, 3 ms of wall time).
#  - waiting (nice 19): tests that mostly wait on real time (leases, restarts, retries: chaos used 10 s of CPU in
#    155 s), then fuzz-api.
# Then, alone on a quiet machine: capacity and isolated, whose tests burn real CPU and measure wall time, CPU, memory
# and latency (capacity in the busy lane once read a 2 s task as 2.31 s, beside the deploy tests at nice 19).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly logs=target/test-logs
rm -rf "$logs"
mkdir -p "$logs"

# Each test binary: name, executable, its package's directory (where cargo test runs it).
binaries=$(cargo test --workspace --all-targets --no-run --message-format=json 2>/dev/null | python3 -c '
import json, os, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"], os.path.dirname(m["manifest_path"]))
')
[ -n "$binaries" ] || { echo "test-lanes: no test binary found (cargo test --no-run failed?)" >&2; exit 1; }

readonly timed="closed_loop"
readonly waiting="chaos process cli api"
readonly alone="capacity isolated"
# deploy first after the release build: the longest of the busy lane (two cores of kustomize and Python).
busy="deploy"
while read -r name _; do
  case " $timed $waiting $alone deploy " in
    *" $name "*) ;;
    *) busy+=" $name" ;;
  esac
done <<<"$binaries"

# Runs one item at `niceness` with `threads` test threads (0: the test harness's default), its output prefixed with
# [name] and kept in its log; its result in <name>.result.
run_item() {
  local niceness=$1 threads=$2 name=$3 start status dir exe
  start=$(date +%s)
  echo "[$name] started"
  set +e
  if [ "$name" = fuzz-api ]; then
    nice -n "$niceness" scripts/fuzz-api.sh 2>&1 | tee "$logs/$name.log" | sed -u "s/^/[$name] /"
    status=${PIPESTATUS[0]}
  elif [ "$name" = release-build ]; then
    # The release consumer isolated and fuzz-api run, as a pod runs it.
    nice -n "$niceness" cargo build --release --bin consumer 2>&1 | tee "$logs/$name.log" | sed -u "s/^/[$name] /"
    status=${PIPESTATUS[0]}
  else
    read -r _ exe dir < <(awk -v n="$name" '$1 == n' <<<"$binaries")
    local harness=(--show-output)
    [ "$threads" -eq 0 ] || harness+=(--test-threads "$threads")
    (cd "$dir" && nice -n "$niceness" "$exe" "${harness[@]}") 2>&1 | tee "$logs/$name.log" | sed -u "s/^/[$name] /"
    status=${PIPESTATUS[0]}
  fi
  set -e
  local took=$(($(date +%s) - start))
  if [ "$status" -eq 0 ]; then echo "ok $took" >"$logs/$name.result"; else echo "FAILED $took" >"$logs/$name.result"; fi
  echo "[$name] $(cut -d' ' -f1 "$logs/$name.result") in ${took} s"
}

lane() {
  local niceness=$1 threads=$2 name
  shift 2
  for name in "$@"; do run_item "$niceness" "$threads" "$name"; done
}

started=$(date +%s)
# shellcheck disable=SC2086 # the lists are words
{
  # The timed lane's runs take turns themselves (CLOSED_LOOP_AT_ONCE): a thread each lets a run that goes beside the
  # others (light on a packed node) start at once.
  lane 0 16 $timed &
  lane 19 0 release-build $busy &
  lane 19 0 $waiting fuzz-api &
  wait
}
# shellcheck disable=SC2086
lane 0 0 $alone

echo
echo "test-lanes: every binary and fuzz-api, in $(($(date +%s) - started)) s"
failed=0
for result in "$logs"/*.result; do
  name=$(basename "$result" .result)
  read -r outcome took <"$result"
  printf '  %-16s %-7s %5s s\n' "$name" "$outcome" "$took"
  [ "$outcome" = ok ] || failed=$((failed + 1))
done
if [ "$failed" -gt 0 ]; then
  echo "test-lanes: $failed failed; each one's failures:" >&2
  for result in "$logs"/*.result; do
    name=$(basename "$result" .result)
    grep -q '^FAILED' "$result" || continue
    echo "---- $name ($logs/$name.log) ----" >&2
    if grep -q '^failures:$' "$logs/$name.log"; then
      sed -n '/^failures:$/,$p' "$logs/$name.log" | tail -n 80 >&2
    else
      tail -n 40 "$logs/$name.log" >&2
    fi
  done
  exit 1
fi
