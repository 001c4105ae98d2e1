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
  local secs=$1 log=$T/srv-$1.log out=$T/cg-$1.out port
  valgrind --tool=callgrind --callgrind-out-file="$out" "${SERVER[@]}" >"$log" 2>&1 &
  SRV=$!
  for _ in $(seq 600); do grep -q 'listening on http' "$log" && break; sleep 0.1; done
  port=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
  [ -n "$port" ] || { cat "$log" >&2; exit 1; }
  "$WSLOAD" -p "$port" -m echo -c "$CONNS" -P "$DEPTH" -s "$SIZE" $bflag -w 0 -d "$secs" -T 60 >"$T/load-$secs.txt"
  kill -TERM "$SRV"; wait "$SRV" || true; SRV=
  local ir msgs
  ir=$(awk '/^summary:/ {print $2}' "$out")
  msgs=$(sed -n 's/.* count=\([0-9]*\).*/\1/p' "$T/load-$secs.txt")
  echo "$ir $msgs"
}

read -r i1 n1 < <(run "$SHORT")
read -r i2 n2 < <(run "$LONG")
echo "${FLOOR:+floor_echo $FLOOR: }$CONNS conn(s), depth $DEPTH, $SIZE B; short: $i1 Ir, $n1 msgs; long: $i2 Ir, $n2 msgs"
awk -v a="$i1" -v b="$i2" -v m="$n1" -v n="$n2" 'BEGIN { printf "instructions per message: %.0f\n", (b - a) / (n - m) }'
[ "${KEEP:-0}" = 1 ] && echo "callgrind files: $T/cg-$LONG.out"
exit 0
