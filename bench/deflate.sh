#!/usr/bin/env bash
# bench/deflate.sh: permessage-deflate figures for the README.
#
# 1. Compression ratio and speed per preset (bench/pmd_bench.c, compiled here against
#    src/pmd.c, src/ws.c, src/buf.c): JSON-like chat events and 64 KiB batches.
# 2. Memory per idle compressed connection per preset: starts
#    `switchyard tests/integration/ws_deflate_app.lua`, opens CONNS WebSockets on /echo/<preset>
#    with bench/deflate_idle.py (Chromium's offer, one compressed message each, then idle) and
#    reads the server's VmRSS before and after: (after - before) / CONNS, for off, shared, small
#    and default, each on a fresh server.
#
#   SWITCHYARD_BIN  server binary (default build/switchyard; a Release build for real figures)
#   CONNS           connections per preset (default 10000; needs ulimit -n above it)
#   COUNT, ROUNDS   pmd_bench: chat events and rounds (default 20000, 3)
# Loopback only; every process started here is stopped by PID from an EXIT trap.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${SWITCHYARD_BIN:-build/switchyard}
conns=${CONNS:-10000}
tmp=$(mktemp -d /tmp/sy-bench-deflate.XXXXXX)
pid=""
holder=""
cleanup() {
  [ -n "$holder" ] && kill "$holder" 2>/dev/null
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "== compression ratio and speed (CPU time, one core)"
cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/pmd_bench.c src/pmd.c src/ws.c src/buf.c -lz \
  -o "$tmp/pmd_bench"
"$tmp/pmd_bench" "${COUNT:-20000}" "${ROUNDS:-3}"

ulimit -n $((conns + 1000)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
rss() { sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }

echo
echo "== memory per idle connection, $conns connections ($bin)"
printf '%-8s %12s %12s %14s %s\n' preset "RSS before" "RSS after" "KiB per conn" "(echo compressed)"
for preset in off shared small default; do
  "$bin" --listen 127.0.0.1:0 tests/integration/ws_deflate_app.lua >"$tmp/out" 2>"$tmp/err" &
  pid=$!
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9]*\)$|\1|p' "$tmp/out")
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "server did not start: $(cat "$tmp/err")"; exit 1; }
  # Warm up the allocator and the shared streams with a few connections first.
  /usr/bin/python3 bench/deflate_idle.py "$port" "/echo/$preset" 20 </dev/null >/dev/null
  sleep 0.2
  before=$(rss "$pid")
  mkfifo "$tmp/hold"
  /usr/bin/python3 bench/deflate_idle.py "$port" "/echo/$preset" "$conns" <"$tmp/hold" >"$tmp/holder" &
  holder=$!
  exec 3>"$tmp/hold"
  for _ in $(seq 1200); do # 120 s
    grep -q '^open' "$tmp/holder" && break
    kill -0 "$holder" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^open' "$tmp/holder" || { echo "holder failed"; exit 1; }
  sleep 0.5
  after=$(rss "$pid")
  printf '%-8s %9s KiB %9s KiB %14.1f %s\n' "$preset" "$before" "$after" \
    "$(echo "($after - $before) / $conns" | bc -l)" "$(cut -d' ' -f4 "$tmp/holder")/$conns"
  echo >&3
  exec 3>&-
  wait "$holder" || true
  holder=""
  rm -f "$tmp/hold"
  kill "$pid"
  wait "$pid" || true
  pid=""
done
