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
# shellcheck source=bench/cg_lib.sh
. "$REPO/bench/cg_lib.sh"
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
SRV='' HOLD=''
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
  local secs=$1
  cg_start "$T/cg-$secs.out" "$T/srv-$secs.log" "$BIN" --listen 127.0.0.1:0 "$APP"
  if [ "$IDLE" -gt 0 ]; then
    "$WSLOAD" -p "$CG_PORT" -m idle -c "$IDLE" -d 3600 -T 300 >"$T/idle-$secs.txt" 2>&1 &
    HOLD=$!
    for _ in $(seq 3000); do grep -q '^idle:' "$T/idle-$secs.txt" && break; sleep 0.1; done
    grep -q '^idle:' "$T/idle-$secs.txt" || { cat "$T/idle-$secs.txt" >&2; exit 1; }
  fi
  "$WSLOAD" -p "$CG_PORT" -m upgrade -c 1 -d "$secs" -T 60 >"$T/load-$secs.txt"
  [ -n "$HOLD" ] && { kill "$HOLD"; wait "$HOLD" || true; HOLD=; }
  cg_stop "$T/cg-$secs.out" "$T/load-$secs.txt"
}

read -r i1 n1 < <(run "$SHORT")
read -r i2 n2 < <(run "$LONG")
echo "$(basename "$APP"), $IDLE idle; short: $i1 Ir, $n1 cycles; long: $i2 Ir, $n2 cycles"
cg_per "upgrade cycle" "$i1" "$n1" "$i2" "$n2"
[ "${KEEP:-0}" = 1 ] && echo "callgrind files: $T/cg-$LONG.out"
exit 0
