#!/usr/bin/env bash
# WebSocket echo over HTTP/2 streams (RFC 8441 extended CONNECT: STREAMS WebSockets on each of
# H2_CONNS connections) beside the same over HTTP/1.1 (H2_CONNS x STREAMS connections), side by
# side against one switchyard, driven by bench/node/ws_h2_load.js (node's http2 module; npm `ws`
# for HTTP/1.1). Each WebSocket keeps one 32-byte text message in flight. The client reads the
# server's CPU time (/proc/PID/stat) at the edges of its measured window: messages per second
# and server CPU µs per message, per run and as the median over ROUNDS.
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       build dir when building (default /tmp/build-bench-ws-h2)
#   NODE_BIN        node binary (default: node on PATH)
#   H2_CONNS        HTTP/2 connections (default 10)
#   STREAMS         WebSockets per HTTP/2 connection (default 100; the server allows 100 streams)
#   DURATION        measured seconds per run (default 5)
#   WARMUP          unmeasured seconds at the start of each run (default 2)
#   ROUNDS          rounds; each runs both cases, the order alternating (default 3)
#   SERVER_CPU      CPU for the server (default 0)
#   LOAD_CPU        CPU for the client (default 1)
#   KEEP_TMP        1 = keep the temp dir
set -euo pipefail

BENCH=ws_h2.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

H2_CONNS=${H2_CONNS:-10}
STREAMS=${STREAMS:-100}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-2}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
KEEP_TMP=${KEEP_TMP:-0}
NODE_BIN=${NODE_BIN:-$(command -v node || echo node)}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench-ws-h2}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
check_uints H2_CONNS STREAMS DURATION WARMUP ROUNDS SERVER_CPU LOAD_CPU
check_cpus SERVER_CPU LOAD_CPU
[ -d "$REPO/tests/integration/node/node_modules/ws" ] ||
  (cd "$REPO/tests/integration/node" && npm ci --no-audit --no-fund --silent)

bench_start ws_h2
switchyard_bin
total=$((H2_CONNS * STREAMS))
ulimit -n $((total + 256)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((total + 64)) ] || die "need $((total + 64)) descriptors (ulimit -n $(ulimit -n))"

APP=$TMP/echo.lua
cat >"$APP" <<'LUA'
local sy = require "switchyard"
return { upgrade = function(req)
  return sy.accept("websocket", { message = function(ws, data, binary) ws:send(data, binary) end })
end }
LUA

port=$(free_port)
taskset -c "$SERVER_CPU" "$SY_BIN" --listen "127.0.0.1:$port" "$APP" >"$TMP/server.out" 2>"$TMP/server.err" &
spid=$!
PIDS+=("$spid")
for _ in $(seq 50); do grep -q '^listening on' "$TMP/server.out" && break; sleep 0.1; done
grep -q '^listening on' "$TMP/server.out" || die "server did not start: $(cat "$TMP/server.err")"

header_host
header_load "$LOAD_CPU" node
echo "# h2: $H2_CONNS connections x $STREAMS WebSockets; http1: $total connections; 32 B echo, depth 1"
results=$TMP/results
: >"$results"
for r in $(seq "$ROUNDS"); do
  order="h2 h1"
  [ $((r % 2)) -eq 0 ] && order="h1 h2"
  for mode in $order; do
    out=$TMP/run-$r-$mode
    bg_wait "$out" taskset -c "$LOAD_CPU" "$NODE_BIN" "$REPO/bench/node/ws_h2_load.js" "$mode" \
      "127.0.0.1:$port" "$H2_CONNS" "$STREAMS" "$WARMUP" "$DURATION" "$spid" ||
      die "$mode run failed: $(cat "$out")"
    line=$(grep '^mode=' "$out") || die "no result from the $mode run: $(cat "$out")"
    echo "round $r  $line"
    echo "$line" >>"$results"
  done
done
awk "$AWK_MEDIAN"'
  { for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    m = v["mode"]; n[m]++; rate[m, n[m]] = v["msgs_per_s"]; cpu[m, n[m]] = v["cpu_us_per_msg"] }
  END {
    for (m in n) {
      k = n[m]; for (i = 1; i <= k; i++) { a[i] = rate[m, i]; b[i] = cpu[m, i] }
      printf "median %-5s msgs/s %8d   server CPU us/msg %6.2f\n", (m == "h2" ? "http2" : "http1"), median(a, k), median(b, k)
    }
  }' "$results" | sort
