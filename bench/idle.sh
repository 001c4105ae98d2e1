#!/usr/bin/env bash
# Memory of idle WebSockets: bytes of server RSS per idle connection with examples/echo.lua.
#
#   bench/idle.sh                                      # builds Release into /tmp/build-bench-idle
#   SWITCHYARD_BIN=build-rel/switchyard bench/idle.sh
#   IDLE_CONNS=2000 ROUNDS=1 bench/idle.sh
#
# Per round: a fresh server (bench/idle_app.lua: echo.lua plus GET /gc, two full Lua
# collections), one echoed message, GET /gc, VmRSS "before"; IDLE_CONNS idle WebSockets from
# bench/wsload.c (-m idle), SETTLE seconds, VmRSS "after"; GET /gc, VmRSS "after_gc" and the
# Lua heap before and after the collection. Prints bytes per connection: (after - before) / N,
# the same after the collection, and the Lua heap's growth / N before the collection (with the
# upgrade garbage not yet collected) and after it (what Lua holds per connection).
# Loopback only; stops only the processes it started (by PID).
set -euo pipefail
BENCH=idle.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

IDLE_CONNS=${IDLE_CONNS:-10000}
ROUNDS=${ROUNDS:-3}
SETTLE=${SETTLE:-2}
APP=${APP:-$REPO/bench/idle_app.lua}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench-idle}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
STOP_TRIES=50
check_uints IDLE_CONNS ROUNDS SETTLE BUILD_TIMEOUT STARTUP_TIMEOUT
[ "$IDLE_CONNS" -ge 1 ] && [ "$ROUNDS" -ge 1 ] || die "need IDLE_CONNS, ROUNDS >= 1"
for t in gcc curl ss timeout awk; do command -v "$t" >/dev/null || die "missing: $t"; done

need_fds=$((IDLE_CONNS + 256))
if [ "$(ulimit -n)" -lt "$need_fds" ]; then
  ulimit -n "$need_fds" 2>/dev/null || die "needs ulimit -n >= $need_fds (hard $(ulimit -Hn))"
fi

bench_start idle
switchyard_bin
WSLOAD=$TMP/wsload
gcc -O2 -std=c11 -Wall -Wextra -o "$WSLOAD" "$REPO/bench/wsload.c" 2>"$TMP/wsload-build.log" \
  || { cat "$TMP/wsload-build.log" >&2; die "building wsload failed"; }

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
gc() { curl -sS --max-time 20 "http://127.0.0.1:$1/gc"; }

echo "# $(date -u +%FT%TZ) $(uname -m) switchyard: $SY_BIN ($sy_build)"
echo "# $IDLE_CONNS idle WebSockets per round, app $APP; RSS in kB, per-connection figures in bytes"
printf '%-5s %9s %9s %9s %9s %11s %11s %9s\n' round before after after_gc B/conn B/conn_gc lua_pre_gc lua_B/conn
pers=()
for r in $(seq "$ROUNDS"); do
  port=$(free_port); log=$TMP/server-$r.log
  "$SY_BIN" --listen "127.0.0.1:$port" "$APP" >"$log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  deadline=$((SECONDS + STARTUP_TIMEOUT))
  until grep -qF "listening on http://127.0.0.1:$port" "$log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "server exited"; }
    [ $SECONDS -lt $deadline ] || die "server not listening after ${STARTUP_TIMEOUT}s"
    sleep 0.1
  done
  timeout 20 "$WSLOAD" -p "$port" -c 1 -d 0.2 -w 0 -s 32 >"$TMP/probe-$r.txt" 2>&1 \
    || { cat "$TMP/probe-$r.txt" >&2; die "server does not echo"; }
  read -r _ lua0 < <(gc "$port")
  sleep 0.5
  before=$(rss_kb "$pid")
  out=$TMP/idle-$r.txt
  "$WSLOAD" -p "$port" -m idle -c "$IDLE_CONNS" -d 300 -T 10 >"$out" 2>&1 &
  LOAD_PID=$!
  deadline=$((SECONDS + 60 + IDLE_CONNS / 500))
  until grep -q "^idle:" "$out" 2>/dev/null; do
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$out" >&2; die "wsload exited early"; }
    [ $SECONDS -lt $deadline ] || die "idle connections not open in time"
    sleep 0.1
  done
  opened=$(awk '/^idle:/ {print $2}' "$out")
  [ "$opened" = "$IDLE_CONNS" ] || die "only $opened of $IDLE_CONNS connections opened"
  sleep "$SETTLE"
  after=$(rss_kb "$pid")
  read -r lua1_pre lua1 < <(gc "$port")
  sleep 0.5
  after_gc=$(rss_kb "$pid")
  stop_pid "$LOAD_PID"; LOAD_PID=
  stop_pid "$pid"; forget_pid "$pid"
  read -r per per_gc per_lua_pre per_lua < <(awk -v a="$after" -v g="$after_gc" -v b="$before" -v n="$opened" \
    -v l0="$lua0" -v l1="$lua1" -v lp="$lua1_pre" \
    'BEGIN { printf "%.0f %.0f %.0f %.0f\n", (a - b) * 1024 / n, (g - b) * 1024 / n, (lp - l0) * 1024 / n, (l1 - l0) * 1024 / n }')
  printf '%-5s %9s %9s %9s %9s %11s %11s %9s\n' "$r" "$before" "$after" "$after_gc" "$per" "$per_gc" "$per_lua_pre" "$per_lua"
  pers+=("$per")
done
printf '%s\n' "${pers[@]}" | sort -n | awk '{ v[NR] = $1 } END { printf "median B/conn: %s\n", v[int((NR + 1) / 2)] }'
