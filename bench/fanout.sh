#!/usr/bin/env bash
# bench/fanout.sh: topic fan-out, side by side: one switchyard process; --workers 2; two
# processes through Redis (subscribers on one, the publisher on the other); Node ws. Each run:
# wsload -m fanout with S subscribers and one publisher sending M messages/s of 32 B. Server
# CPU is the sum over the server's processes (utime + stime from /proc, supervisor and
# workers, redis-server included for the Redis run) per delivered message.
# Usage: bench/fanout.sh [S] [M] [SECONDS]   (defaults 10000 20 10)
#   SWITCHYARD_BIN (default build/switchyard); NODE_PATH must find `ws` for the Node run.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-10000} M=${2:-20} D=${3:-10}
bin=${SWITCHYARD_BIN:-build/switchyard}
tmp=$(mktemp -d)
pids=()
# Servers start inside $(...) subshells: their pids are kept in $tmp/*.pid files.
cleanup() { for p in "${pids[@]}" $(cat "$tmp"/*.pid 2>/dev/null); do kill "$p" 2>/dev/null || true
            done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
gcc -O2 -std=c11 -Wall -Wextra -o "$tmp/wsload" bench/wsload.c

ticks() { # the CPU ticks of the given pids and their children
  local t=0 p
  for p in "$@"; do
    for q in $p $(cat /proc/$p/task/$p/children 2>/dev/null); do
      t=$((t + $(awk '{print $14 + $15}' /proc/$q/stat 2>/dev/null || echo 0)))
    done
  done
  echo $t
}
port_of() { for _ in $(seq 100); do grep -q '^listening on' "$1" && break; sleep 0.1; done
            sed -n 's/^listening on http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$1" | head -1; }
start() { # start NAME CMD...: runs CMD in the background, prints its port
  local name=$1; shift
  "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  pids+=($!)
  echo $! >"$tmp/$name.pid"
  port_of "$tmp/$name.out"
}
run() { # run LABEL SUBPORT PUBPORT PIDS...
  local label=$1 sp=$2 pp=$3; shift 3
  local t0 t1
  t0=$(ticks "$@")
  "$tmp/wsload" -m fanout -p "$sp" --pub-port "$pp" -c "$S" -R "$M" -d "$D" -w 2 -T 30 \
    -r 500 >"$tmp/run.out" || true
  t1=$(ticks "$@")
  local res; res=$(grep '^RESULT' "$tmp/run.out")
  local count rate p50 p99
  count=$(sed -n 's/.* count=\([0-9]*\).*/\1/p' <<<"$res")
  rate=$(sed -n 's/.* rate=\([0-9.]*\).*/\1/p' <<<"$res")
  p50=$(sed -n 's/.* p50_us=\([0-9.]*\).*/\1/p' <<<"$res")
  p99=$(sed -n 's/.* p99_us=\([0-9.]*\).*/\1/p' <<<"$res")
  local hz; hz=$(getconf CLK_TCK)
  # CPU over the whole run (ramp-up included) per message delivered in the window: an upper
  # bound, comparable between the rows.
  local us; us=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" -v n="$count" -v d="$D" \
    'BEGIN { if (n > 0) printf "%.2f", (b - a) / hz * 1e6 / n; else print "-" }')
  printf "| %s | %s | %.0f | %s | %s | %s |\n" "$label" "$count" "$rate" "$p50" "$p99" "$us"
  grep -E "delivered|errors" "$tmp/run.out" | sed 's/^/    /' >&2
}

echo "| setup ($S subscribers, $M msg/s of 32 B, $D s) | delivered | msg/s delivered | p50 us | p99 us | server CPU us per delivery |"
echo "|---|---|---|---|---|---|"
p=$(start one "$bin" --listen 127.0.0.1:0 bench/fanout_app.lua)
run "switchyard, one process" "$p" "$p" "$(cat "$tmp/one.pid")"
kill "$(cat "$tmp/one.pid")"
p=$(start w2 "$bin" --workers 2 --listen 127.0.0.1:0 bench/fanout_app.lua)
sleep 1
run "switchyard --workers 2" "$p" "$p" "$(cat "$tmp/w2.pid")"
kill "$(cat "$tmp/w2.pid")"
if command -v redis-server >/dev/null; then
  rport=$((20000 + RANDOM % 20000))
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    >"$tmp/redis.log" 2>&1 &
  rpid=$!; pids+=($rpid); sleep 0.5
  a=$(start ra "$bin" --listen 127.0.0.1:0 --redis "redis://127.0.0.1:$rport/0" bench/fanout_app.lua)
  b=$(start rb "$bin" --listen 127.0.0.1:0 --redis "redis://127.0.0.1:$rport/0" bench/fanout_app.lua)
  run "switchyard x 2 through Redis" "$b" "$a" "$(cat "$tmp/ra.pid")" "$(cat "$tmp/rb.pid")" "$rpid"
fi
if node -e 'require("ws")' 2>/dev/null; then
  p=$(start node node bench/node/fanout_server.js 0)
  run "Node ws (baseline)" "$p" "$p" "$(cat "$tmp/node.pid")"
fi
