#!/usr/bin/env bash
# Instructions per accepted /schedule request, per naga thread, counted by
# callgrind (steady where throughput on a shared machine is not):
#
#   crates/naga-bench/scripts/callgrind.sh [--callback] [seconds]
#
# Runs the release naga under valgrind, loads it with wrk (64 connections,
# the bench's two-echo-call batches with random request ids), waits for the
# batches to end, and prints each thread's instructions per request (the
# tokio worker, naga-writer, naga-checkpoint). --callback gives every batch
# a callback to a receiver that answers 200 (naga-bench --baseline-server
# receive). Needs valgrind and wrk; build first:
#   cargo build --release -p naga -p naga-bench
# The callgrind files stay in the printed folder for callgrind_annotate.
set -euo pipefail
cd "$(dirname "$0")/../../.."
callback=no; secs=12
for a in "$@"; do case $a in --callback) callback=yes ;; *) secs=$a ;; esac; done
out=$(mktemp -d); port=18777
cleanup() { pkill -f "agent-addr 127.0.0.1:$port" || true; [ -n "${rp:-}" ] && kill "$rp" 2>/dev/null || true; }
trap cleanup EXIT
cb=null
if [ $callback = yes ]; then
  ./target/release/naga-bench --baseline-server receive > "$out/receiver" & rp=$!
  for _ in $(seq 50); do [ -s "$out/receiver" ] && break; sleep 0.1; done
  cb="\"http://$(cat "$out/receiver")/cb\""
fi
cat > "$out/load.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
n = 0
request = function()
  n = n + 1
  local s = n % 1000
  local body = string.format('{"query":"批量Agent任务执行 (2 个)","agent_calls":[{"tool_name":"echo","service_name":"agent_server","instruction":"step 0","agentType":"agent"},{"tool_name":"echo","service_name":"agent_server","instruction":"step 1","agentType":"agent"}],"session_id":"bench_session_%d","analysis_session_id":"analysis_bench_session_%d_1703123456","request_id":"wrk-%d-%d","callback_url":$cb}', s, s, math.random(1, 1000000000), n)
  return wrk.format(nil, "/schedule", nil, body)
end
LUA
RUST_LOG=warn valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file="$out/cg" \
  ./target/release/naga serve --only agent --agent-addr 127.0.0.1:$port --data-dir "$out/data" 2>"$out/naga.log" &
for _ in $(seq 150); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.2; done
callgrind_control --zero >/dev/null
requests=$(wrk -t1 -c64 -d"${secs}s" -s "$out/load.lua" "http://127.0.0.1:$port" | awk '/requests in/ {print $1}')
sleep 6 # the last batches end
callgrind_control --dump >/dev/null; sleep 1
echo "requests: $requests (callbacks: $callback); files in $out"
echo "(files by thread start: -02 the tokio worker, -04 naga-checkpoint, -05 naga-writer)"
for f in "$out"/cg.*-[0-9][0-9]; do
  total=$(awk '/^(summary|totals):/ {print $2; exit}' "$f")
  [ -n "$total" ] && [ "$total" -gt 1000000 ] || continue
  printf '%-40s %12d instructions per request\n' "$(basename "$f")" $((total / requests))
done
