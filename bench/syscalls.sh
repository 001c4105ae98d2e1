#!/usr/bin/env bash
# bench/syscalls.sh: system calls and heap calls per echoed WebSocket message, counted (not
# timed), so the figures do not depend on the machine's load.
#
# Starts switchyard (examples/echo.lua) with bench/malloc_count.c preloaded, then runs
# bench/wsload.c twice (a short run and a long run, fresh connections each), each under
# `strace -c -f -p PID`, then twice more without strace between two SIGUSR2 snapshots of the
# malloc counters. The figures per
# message are the differences between the two runs divided by the difference in messages, which
# cancels what connecting and upgrading cost. By-hand benchmark, NOT for CI.
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary (default build-rel/switchyard in the repo)
#   SIZE            payload bytes (default 16384)   BINARY  1 = binary messages (default 1)
#   CONNECTIONS     connections (default 100)       DEPTH   messages in flight each (default 1)
#   SHORT, LONG     seconds of the two runs (default 1 and 4)
set -euo pipefail

BENCH=syscalls.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

BIN=${SWITCHYARD_BIN:-$REPO/build-rel/switchyard}
SIZE=${SIZE:-16384}
BINARY=${BINARY:-1}
CONNECTIONS=${CONNECTIONS:-100}
DEPTH=${DEPTH:-1}
SHORT=${SHORT:-1}
LONG=${LONG:-4}
[ -x "$BIN" ] || die "no switchyard binary at $BIN (set SWITCHYARD_BIN)"
command -v strace >/dev/null || die "strace is needed"

TMP=$(mktemp -d)
SRV_PID=
cleanup() {
  [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

gcc -O2 -std=c11 -Wall -o "$TMP/wsload" "$REPO/bench/wsload.c" -lm
gcc -O2 -shared -fPIC -o "$TMP/malloc_count.so" "$REPO/bench/malloc_count.c" -ldl

LD_PRELOAD=$TMP/malloc_count.so "$BIN" --listen 127.0.0.1:0 "$REPO/examples/echo.lua" \
  >"$TMP/out" 2>"$TMP/err" &
SRV_PID=$!
for _ in $(seq 100); do
  grep -q 'listening on' "$TMP/out" && break
  sleep 0.1
done
PORT=$(sed -n 's/.*listening on [a-z]*:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/out" | head -1)
[ -n "$PORT" ] || die "server did not start: $(cat "$TMP/err")"

snap() { # snap: prints "malloc calloc realloc free" of the server now
  local before
  before=$(grep -c MALLOC_COUNT "$TMP/err" || true)
  kill -USR2 "$SRV_PID"
  for _ in $(seq 50); do
    [ "$(grep -c MALLOC_COUNT "$TMP/err" || true)" -gt "$before" ] && break
    sleep 0.1
  done
  grep MALLOC_COUNT "$TMP/err" | tail -1 |
    sed 's/.*malloc=\([0-9]*\) calloc=\([0-9]*\) realloc=\([0-9]*\) free=\([0-9]*\)/\1 \2 \3 \4/'
}

run() { # run SECS NAME [strace]: one wsload run; leaves NAME.load, NAME.heap (and NAME.strace)
  local secs=$1 name=$2 bflag= spid=
  [ "$BINARY" = 1 ] && bflag=-b
  local m0 m1
  m0=$(snap)
  if [ "${3:-}" = strace ]; then
    strace -c -f -p "$SRV_PID" -o "$TMP/$name.strace" &
    spid=$!
    sleep 0.5
  fi
  "$TMP/wsload" -p "$PORT" -c "$CONNECTIONS" -P "$DEPTH" -s "$SIZE" $bflag -w 0 -d "$secs" \
    -T 30 >"$TMP/$name.load"
  if [ -n "$spid" ]; then
    sleep 0.3
    kill -INT "$spid"
    wait "$spid" 2>/dev/null || true
  fi
  m1=$(snap)
  paste <(echo "$m0" | tr ' ' '\n') <(echo "$m1" | tr ' ' '\n') | awk '{printf "%d ", $2 - $1} END {print ""}' \
    >"$TMP/$name.heap"
}

run "$SHORT" short strace
run "$LONG" long strace
run "$SHORT" hshort
run "$LONG" hlong

msgs() { sed -n 's/^RESULT .* count=\([0-9]*\) .*/\1/p' "$TMP/$1.load"; }
calls() { # calls NAME SYSCALL ("total" for all)
  awk -v s="$2" '$NF == s { print ($4 ~ /^[0-9]+$/) ? $4 : $3; f = 1 } END { if (!f) print 0 }' \
    "$TMP/$1.strace"
}
M1=$(msgs short)
M2=$(msgs long)
DM=$((M2 - M1))
[ "$DM" -gt 0 ] || die "no more messages in the long run ($M1 vs $M2)"
echo "size=$SIZE binary=$BINARY conns=$CONNECTIONS depth=$DEPTH messages: short=$M1 long=$M2"
echo "system calls per message (strace -c -f, long minus short):"
for s in total read recvfrom sendto sendmsg writev write epoll_wait; do
  a=$(calls short "$s")
  b=$(calls long "$s")
  awk -v a="$a" -v b="$b" -v m="$DM" -v s="$s" 'BEGIN { printf "  %-10s %.3f\n", s, (b - a) / m }'
done
H1=$(msgs hshort)
H2=$(msgs hlong)
echo "heap calls per message (malloc_count.so, runs without strace: $H1 and $H2 messages):"
read -r a1 a2 a3 a4 <"$TMP/hshort.heap"
read -r b1 b2 b3 b4 <"$TMP/hlong.heap"
awk -v m="$((H2 - H1))" -v a1="$a1" -v a2="$a2" -v a3="$a3" -v a4="$a4" -v b1="$b1" -v b2="$b2" \
  -v b3="$b3" -v b4="$b4" 'BEGIN { printf "  malloc %.3f  calloc %.3f  realloc %.3f  free %.3f\n",
    (b1 - a1) / m, (b2 - a2) / m, (b3 - a3) / m, (b4 - a4) / m }'
