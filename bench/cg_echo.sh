#!/usr/bin/env bash
# Callgrind instructions per WebSocket echo message: the server (examples/echo.lua) runs under
# valgrind --tool=callgrind twice, once for a short load and once for a longer one, both with
# wsload on CONNS connections at DEPTH messages in flight each (default one connection, depth 1).
# Instructions per message = (Ir_long - Ir_short) / (msgs_long - msgs_short): startup, the
# upgrades and shutdown cancel out.
#
# By-hand benchmark, not for CI. Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary (default build-rel/switchyard, a Release build)
#   APP             Lua app (default examples/echo.lua)
#   SIZE            payload bytes (default 32); BINARY=1 sends binary frames
#   CONNS           WebSocket connections (default 1)
#   DEPTH           messages in flight per connection (wsload -P; default 1; e.g. CONNS=100
#                   DEPTH=16 for bench/ws.sh's text32_d16 case)
#   SHORT / LONG    seconds of load in the two runs (default 2 / 8)
#   FLOOR           count bench/floor_echo.c instead of switchyard: c (no Lua), lua (one
#                   lua_pcall per read, send through an __index function), contract (libev, a
#                   kept coroutine resumed per read straight on the handler, as every switchyard
#                   handler runs in a coroutine, send through a table __index) or contract-fn
#                   (the same with an __index function); APP and SWITCHYARD_BIN are then unused
#   KEEP            1 = keep the callgrind.out files (in $TMPDIR) for callgrind_annotate
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/cg_lib.sh
. "$REPO/bench/cg_lib.sh"
[ -z "${CI:-}" ] || [ "${BENCH_ALLOW_CI:-0}" = 1 ] || { echo "cg_echo.sh: not for CI" >&2; exit 1; }
BIN=${SWITCHYARD_BIN:-$REPO/build-rel/switchyard}
APP=${APP:-$REPO/examples/echo.lua}
SIZE=${SIZE:-32}
CONNS=${CONNS:-1}
DEPTH=${DEPTH:-1}
[[ $CONNS =~ ^[1-9][0-9]*$ && $DEPTH =~ ^[1-9][0-9]*$ ]] || { echo "cg_echo.sh: CONNS and DEPTH must be >= 1" >&2; exit 2; }
SHORT=${SHORT:-2}
LONG=${LONG:-8}
FLOOR=${FLOOR:-}
case "$FLOOR" in
  ''|c|lua|contract|contract-fn) ;;
  *) echo "cg_echo.sh: FLOOR must be c, lua, contract or contract-fn" >&2; exit 2 ;;
esac
SRV=
T=$(mktemp -d)
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; [ "${KEEP:-0}" = 1 ] || rm -rf "$T"; }
trap cleanup EXIT
WSLOAD=$T/wsload
gcc -O2 -std=c11 -Wall -Wextra -o "$WSLOAD" "$REPO/bench/wsload.c"
bflag=; [ "${BINARY:-0}" = 1 ] && bflag=-b
if [ -z "$FLOOR" ]; then
  SERVER=("$BIN" --listen 127.0.0.1:0 "$APP")
else
  gcc -O2 -std=c11 -Wall -Wextra -I/usr/include/lua5.4 -o "$T/floor_echo" \
    "$REPO/bench/floor_echo.c" -lcrypto -llua5.4 -lev
  SERVER=("$T/floor_echo" 0)
  [ "$FLOOR" = c ] || SERVER+=("$FLOOR")
fi

run() { # run SECS: prints "instructions messages"
  local secs=$1
  cg_start "$T/cg-$secs.out" "$T/srv-$secs.log" "${SERVER[@]}"
  "$WSLOAD" -p "$CG_PORT" -m echo -c "$CONNS" -P "$DEPTH" -s "$SIZE" $bflag -w 0 -d "$secs" -T 60 >"$T/load-$secs.txt"
  cg_stop "$T/cg-$secs.out" "$T/load-$secs.txt"
}

read -r i1 n1 < <(run "$SHORT")
read -r i2 n2 < <(run "$LONG")
echo "${FLOOR:+floor_echo $FLOOR: }$CONNS conn(s), depth $DEPTH, $SIZE B; short: $i1 Ir, $n1 msgs; long: $i2 Ir, $n2 msgs"
cg_per message "$i1" "$n1" "$i2" "$n2"
[ "${KEEP:-0}" = 1 ] && echo "callgrind files: $T/cg-$LONG.out"
exit 0
