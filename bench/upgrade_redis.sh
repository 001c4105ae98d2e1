#!/usr/bin/env bash
# Upgrades per second when app.upgrade does one Redis GET before accepting (connect, GET,
# close through switchyard.redis over sy.tcp), against the same app accepting at once: both
# switchyard instances and redis-server run side by side, rounds alternate, driven by
# bench/wsload.c's upgrade mode (connect, 101 checked, close handshake, FIN).
#
# By-hand benchmark, NOT for CI. Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       (default /tmp/build-bench-redis)
#   ROUNDS (5), DURATION (5), WARMUP (1), UPGRADE_CONC (50), SERVER_CPU (0), LOAD_CPU (1)
#   KEEP_TMP        1 = keep the temp dir
set -euo pipefail

BENCH=upgrade_redis.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
UPGRADE_CONC=${UPGRADE_CONC:-50}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench-redis}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
STOP_TRIES=50
check_uints ROUNDS DURATION WARMUP UPGRADE_CONC SERVER_CPU LOAD_CPU
check_cpus SERVER_CPU LOAD_CPU
for t in taskset gcc redis-server redis-cli timeout awk ss; do
  command -v "$t" >/dev/null || die "missing: $t (scripts/install-deps --bench; redis-server)"
done

bench_start upgrade_redis
switchyard_bin
SY=$SY_BIN
APP=bench/upgrade_redis.lua
WSLOAD=$TMP/wsload
gcc -O2 -std=c11 -Wall -Wextra -o "$WSLOAD" "$REPO/bench/wsload.c" || die "building wsload failed"

# redis-server, no persistence, on a free port; the session the app looks up.
RPORT=$(free_port)
taskset -c "$SERVER_CPU" redis-server --port "$RPORT" --bind 127.0.0.1 --save "" \
  --appendonly no >"$TMP/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  timeout 2 redis-cli -p "$RPORT" SET session:bench alice 2>/dev/null | grep -q OK && break
  sleep 0.1
done

start_sy() { # start_sy NAME [REDIS]: sets PORT_NAME and PID_NAME
  local name=$1 redis=${2:-} port
  port=$(free_port)
  BENCH_REDIS=$redis taskset -c "$SERVER_CPU" "$SY" --listen "127.0.0.1:$port" \
    "$REPO/bench/upgrade_redis.lua" >"$TMP/$name.out" 2>"$TMP/$name.log" &
  PIDS+=($!)
  eval "PID_$name=$!"
  for _ in $(seq $((STARTUP_TIMEOUT * 10))); do
    grep -q "listening on" "$TMP/$name.out" 2>/dev/null && { eval "PORT_$name=$port"; return; }
    sleep 0.1
  done
  die "$name did not start: $(cat "$TMP/$name.log")"
}
start_sy plain
start_sy redis "127.0.0.1:$RPORT"

run() { # run NAME: one wsload upgrade run; prints rate and cpu_us
  local name=$1 port pid out
  port=$(eval echo "\$PORT_$name"); pid=$(eval echo "\$PID_$name")
  out=$(taskset -c "$LOAD_CPU" timeout $((DURATION + WARMUP + 30)) "$WSLOAD" -p "$port" -m upgrade \
        -c "$UPGRADE_CONC" -d "$DURATION" -w "$WARMUP" -C "$pid" | tail -1)
  echo "$out" >>"$TMP/raw.txt"
  awk '{ for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
         print v["rate"], v["srv_cpu_us"], v["errors"] }' <<<"$out"
}

header_host
echo "# upgrades/s and server CPU us per upgrade; redis = one connect + GET + close per upgrade"
printf '%-6s %-6s %12s %12s %8s\n' round app rate cpu_us errors
: >"$TMP/res.tsv"
for r in $(seq "$ROUNDS"); do
  order="plain redis"; [ $((r % 2)) -eq 0 ] && order="redis plain"
  for name in $order; do
    read -r rate cpu errs < <(run "$name")
    printf '%-6s %-6s %12.0f %12.1f %8s\n' "$r" "$name" "$rate" "$cpu" "$errs"
    printf '%s\t%s\t%s\t%s\n' "$r" "$name" "$rate" "$cpu" >>"$TMP/res.tsv"
  done
done
awk -F'\t' '
  { rate[$2, $1] = $3; cpu[$2, $1] = $4; n[$2]++; if ($1 > R) R = $1 }
  function med(a, k,    i, m, v, t) { m = 0; for (i = 1; i <= R; i++) if ((k, i) in a) v[++m] = a[k, i]
    for (i = 1; i <= m; i++) for (t = i + 1; t <= m; t++) if (v[t] < v[i]) { x = v[i]; v[i] = v[t]; v[t] = x }
    return m % 2 ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2 }
  END {
    for (i = 1; i <= R; i++) { q[i] = rate["redis", i] / rate["plain", i] }
    for (i = 1; i <= R; i++) r2["x", i] = q[i]
    printf "median: plain %.0f/s (%.1f us CPU), redis %.0f/s (%.1f us CPU); redis/plain rate %.3f\n",
      med(rate, "plain"), med(cpu, "plain"), med(rate, "redis"), med(cpu, "redis"), med(r2, "x")
  }' "$TMP/res.tsv"
