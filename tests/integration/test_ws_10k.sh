#!/usr/bin/env bash
# tests/integration/test_ws_10k.sh: 10,000 concurrent WebSocket connections on loopback against
# examples/echo.lua, every one of them echoing. bench/wsload.c is compiled with gcc into a temp
# dir and run as `wsload -c 10000 -P 1 -s 32 -d 3 -r 500 -A`: it opens all 10,000 connections
# (500 handshakes in flight at a time) before any message leaves, then keeps one 32-byte text
# message in flight on each for 1 s of warmup + 3 s (and on, with -A, until every connection got
# an echo back or stalled for 20 s: a slow machine serves the last ones late), checks every
# echoed byte, and with -A fails unless every connection got at least one echo back. Checked: wsload exits 0 with
# opened=10000 echoed=10000 errors=0 on its RESULT line, the server still serves afterwards,
# logged no error, and exits 0 on SIGTERM.
#
# Run from the repo root with SWITCHYARD_BIN set (as root in CI, for the descriptor limit):
#   SWITCHYARD_BIN=build/switchyard bash tests/integration/test_ws_10k.sh
# Each side holds one descriptor per connection, so `ulimit -n` is raised to 65536 (the server
# and wsload inherit it); where the hard limit is lower but still >= 10,000 + 256 the soft
# limit goes to the hard limit, else the test fails saying so. Every step is bounded by a cap
# that a working server never reaches, even under sanitizers on a busy machine (gcc 60 s, server
# start 5 s, wsload 60 s with a 20 s stall limit, a second small run 30 s, stop 8 s).
# Everything started here is stopped by its PID on exit. Prints "ok - NAME" / "not ok - NAME"
# and a final "N passed, N failed" line; exits 1 when a check failed.
set -u

BIN=${SWITCHYARD_BIN:?SWITCHYARD_BIN must point to the switchyard binary}
CONNS=10000
NEED_FDS=$((CONNS + 256))
passed=0
failed=0
tmp=$(mktemp -d /tmp/sy-ws10k.XXXXXX)
pids=() # processes started here and not yet reaped

cleanup() {
  local p i
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 250); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.02
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

forget() { # forget PID: drop it from pids once it has been reaped
  local p keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  [ $# -gt 0 ] && printf '#   %s\n' "$@"
}
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
}

# field NAME FILE: value of NAME=... on wsload's RESULT line.
field() {
  awk -v k="$1" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "=");
    if (kv[1] == k) print kv[2] } }' "$2"
}

# --- descriptor limit ---------------------------------------------------------------------------
if ulimit -n 65536 2>/dev/null; then
  ok "ulimit -n 65536"
else
  hard=$(ulimit -Hn)
  if [ "$hard" = unlimited ] || { [ "$hard" -ge "$NEED_FDS" ] && ulimit -n "$hard" 2>/dev/null; }; then
    ok "ulimit -n $(ulimit -n) (65536 refused: hard limit $hard)"
  else
    not_ok "raise ulimit -n to 65536 (or at least $NEED_FDS)" \
      "soft $(ulimit -n), hard $hard: run as root or raise the hard limit (limits.conf / docker --ulimit nofile=65536)"
    finish
  fi
fi

# --- wsload -------------------------------------------------------------------------------------
if timeout -k 2 60 gcc -O2 -std=c11 -Wall -Wextra -o "$tmp/wsload" bench/wsload.c 2>"$tmp/gcc.err"; then
  ok "build bench/wsload.c"
else
  not_ok "build bench/wsload.c" "$(cat "$tmp/gcc.err")"
  finish
fi

# --- server -------------------------------------------------------------------------------------
"$BIN" --listen 127.0.0.1:0 examples/echo.lua >"$tmp/srv.out" 2>"$tmp/srv.err" &
SRV=$!
pids+=("$SRV")
PORT=""
for _ in $(seq 1 250); do # 5 s
  PORT=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$#\1#p' "$tmp/srv.out" | head -n 1)
  [ -n "$PORT" ] && break
  kill -0 "$SRV" 2>/dev/null || break
  sleep 0.02
done
if [ -z "$PORT" ]; then
  not_ok "start examples/echo.lua" "stdout: $(cat "$tmp/srv.out")" "stderr: $(cat "$tmp/srv.err")"
  finish
fi
ok "start examples/echo.lua (port $PORT)"

# run_wsload OUT SECS ARGS...: wsload bounded by SECS, its PID tracked; sets RC.
run_wsload() {
  local out=$1 secs=$2
  shift 2
  timeout -k 2 "$secs" "$tmp/wsload" -p "$PORT" "$@" >"$out" 2>&1 &
  local p=$!
  pids+=("$p")
  RC=0
  wait "$p" || RC=$?
  forget "$p"
}

# --- 10,000 connections, every one echoing ------------------------------------------------------
t0=$(date +%s.%N)
run_wsload "$tmp/load.txt" 60 -c "$CONNS" -P 1 -s 32 -d 3 -r 500 -A -T 20
t1=$(date +%s.%N)
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
opened=$(field opened "$tmp/load.txt")
echoed=$(field echoed "$tmp/load.txt")
errors=$(field errors "$tmp/load.txt")
count=$(field count "$tmp/load.txt")
if [ "$RC" -eq 0 ] && [ "$opened" = "$CONNS" ] && [ "$echoed" = "$CONNS" ] && [ "$errors" = 0 ] &&
    [ "${count:-0}" -gt 0 ]; then
  ok "$CONNS connections open at once, all $echoed echoed ($count echoes in 3 s, errors=0, ${secs}s)"
else
  not_ok "$CONNS concurrent echo connections (wsload exit $RC$([ "$RC" = 124 ] && echo ': timed out'))" \
    "opened=${opened:-?} echoed=${echoed:-?} errors=${errors:-?} count=${count:-?}" \
    "$(tail -n 15 "$tmp/load.txt")" "server stderr: $(tail -n 10 "$tmp/srv.err")"
fi
if kill -0 "$SRV" 2>/dev/null; then
  ok "server alive after the run"
else
  not_ok "server alive after the run" "$(tail -n 20 "$tmp/srv.err")"
  finish
fi

# --- the server serves again once the 10,000 are gone --------------------------------------------
run_wsload "$tmp/after.txt" 30 -c 10 -P 4 -s 32 -d 0.5 -w 0 -A -T 10
if [ "$RC" -eq 0 ] && [ "$(field errors "$tmp/after.txt")" = 0 ]; then
  ok "serves new connections afterwards (10 conns, echoed=$(field echoed "$tmp/after.txt"))"
else
  not_ok "serves new connections afterwards (wsload exit $RC)" "$(tail -n 10 "$tmp/after.txt")"
fi

# --- clean stop ---------------------------------------------------------------------------------
kill -TERM "$SRV" 2>/dev/null
rc=""
for _ in $(seq 1 400); do # 8 s
  if ! kill -0 "$SRV" 2>/dev/null; then
    wait "$SRV"
    rc=$?
    forget "$SRV"
    break
  fi
  sleep 0.02
done
if [ "$rc" = 0 ]; then
  ok "SIGTERM: server exits 0"
else
  not_ok "SIGTERM: server exits 0 within 8 s (got ${rc:-no exit})" "$(tail -n 10 "$tmp/srv.err")"
fi
if grep -q ' \[error\] ' "$tmp/srv.err"; then
  not_ok "no [error] in the server log" "$(grep ' \[error\] ' "$tmp/srv.err" | head -n 5)"
else
  ok "no [error] in the server log"
fi

finish
