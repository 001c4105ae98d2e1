#!/usr/bin/env bash
# Callgrind instructions per WebSocket upgrade cycle: the server runs under valgrind
# --tool=callgrind twice, with one wsload client looping upgrades (connect, handshake, close
# handshake) for SHORT and then LONG seconds, while IDLE other WebSockets stay open. Instructions
# per cycle = (Ir_long - Ir_short) / (cycles_long - cycles_short): startup, opening the idle
# connections and shutdown cancel out.
#
# By-hand benchmark, not for CI. Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary (default build-rel/switchyard, a Release build)
#   APP             Lua app (default bench/open_app.lua: every handle made at the upgrade;
#                   examples/echo.lua makes none for a connection that sends nothing)
#   IDLE            WebSockets held open meanwhile (wsload -m idle; default 0)
#   SHORT / LONG    seconds of upgrades in the two runs (default 2 / 6)
#   KEEP            1 = keep the callgrind.out files (in $TMPDIR) for callgrind_annotate
# SWITCHYARD_LUA_BUDGET reaches the server as set (valgrind otherwise gets the hooked budget).
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -z "${CI:-}" ] || [ "${BENCH_ALLOW_CI:-0}" = 1 ] || { echo "cg_upgrade.sh: not for CI" >&2; exit 1; }
BIN=${SWITCHYARD_BIN:-$REPO/build-rel/switchyard}
APP=${APP:-$REPO/bench/open_app.lua}
IDLE=${IDLE:-0}
SHORT=${SHORT:-2}
LONG=${LONG:-6}
[[ $IDLE =~ ^[0-9]+$ ]] || { echo "cg_upgrade.sh: IDLE must be a number" >&2; exit 2; }
if [ "$IDLE" -gt 0 ] && [ "$(ulimit -n)" -lt $((IDLE + 256)) ]; then
  ulimit -n $((IDLE + 256)) 2>/dev/null || { echo "cg_upgrade.sh: needs ulimit -n >= $((IDLE + 256))" >&2; exit 2; }
fi
SRV= HOLD=
T=$(mktemp -d)
cleanup() {
  [ -n "$HOLD" ] && kill "$HOLD" 2>/dev/null
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
  [ "${KEEP:-0}" = 1 ] || rm -rf "$T"
}
trap cleanup EXIT
WSLOAD=$T/wsload
gcc -O2 -std=c11 -Wall -Wextra -o "$WSLOAD" "$REPO/bench/wsload.c"

run() { # run SECS: prints "instructions cycles"
  local secs=$1 log=$T/srv-$1.log out=$T/cg-$1.out port
  valgrind --tool=callgrind --callgrind-out-file="$out" "$BIN" --listen 127.0.0.1:0 "$APP" \
    >"$log" 2>&1 &
  SRV=$!
  for _ in $(seq 600); do grep -q 'listening on http' "$log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
  [ -n "$port" ] || { cat "$log" >&2; exit 1; }
  if [ "$IDLE" -gt 0 ]; then
    "$WSLOAD" -p "$port" -m idle -c "$IDLE" -d 3600 -T 300 >"$T/idle-$secs.txt" 2>&1 &
    HOLD=$!
    for _ in $(seq 3000); do grep -q '^idle:' "$T/idle-$secs.txt" && break; sleep 0.1; done
    grep -q '^idle:' "$T/idle-$secs.txt" || { cat "$T/idle-$secs.txt" >&2; exit 1; }
  fi
  "$WSLOAD" -p "$port" -m upgrade -c 1 -d "$secs" -T 60 >"$T/load-$secs.txt"
  [ -n "$HOLD" ] && { kill "$HOLD"; wait "$HOLD" || true; HOLD=; }
  kill -TERM "$SRV"; wait "$SRV" || true; SRV=
  local ir n
  ir=$(awk '/^summary:/ {print $2}' "$out")
  n=$(sed -n 's/.* count=\([0-9]*\).*/\1/p' "$T/load-$secs.txt")
  echo "$ir $n"
}

read -r i1 n1 < <(run "$SHORT")
read -r i2 n2 < <(run "$LONG")
echo "$(basename "$APP"), $IDLE idle; short: $i1 Ir, $n1 cycles; long: $i2 Ir, $n2 cycles"
awk -v a="$i1" -v b="$i2" -v m="$n1" -v n="$n2" 'BEGIN { printf "instructions per upgrade cycle: %.0f\n", (b - a) / (n - m) }'
[ "${KEEP:-0}" = 1 ] && echo "callgrind files: $T/cg-$LONG.out"
exit 0
