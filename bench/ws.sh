#!/usr/bin/env bash
# WebSocket echo, upgrades and idle memory: switchyard (examples/echo.lua) vs Node's `ws`
# (bench/node/echo_server.js), side by side, driven by bench/wsload.c.
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
# Both servers are pinned to one CPU (SERVER_CPU), wsload to another (LOAD_CPU). Each round runs
# every load case against both servers (the order alternates per round) that stay up for the whole
# session; wsload reads the server's CPU time (utime+stime, /proc/PID/stat) at the edges of its
# measured window, giving CPU µs per message or upgrade. The idle case starts a fresh instance of
# each server, reads its VmRSS, opens IDLE_CONNS WebSockets, waits SETTLE seconds and reads VmRSS
# again. Every figure is reported per run and as the median over ROUNDS, with ratios sy/node.
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       build dir when building (default /tmp/build-bench-ws)
#   APP             Lua app (default examples/echo.lua; a built-in echo app if that is missing)
#   NODE_BIN        node binary (default: node on PATH)
#   FLOOR           1 (default) = also measure bench/floor_echo.c (a minimal C echo: no Lua, no
#                   checks, the same system calls per batch) in the 32-byte echo cases, alone and with
#                   the least Lua a handler needs ("floor+lua"): the floor of
#                   server CPU per small message that the kernel sets on this machine; 0 = skip it.
#                   (Not for large messages: its byte-wise unmasking is no floor there.)
#   CASES           subset of: text32_d1 text32_d16 bin16k_d1 bin16k_d4 upgrade idle (default all)
#   DURATION        measured seconds per load run (default 5)
#   WARMUP          unmeasured seconds at the start of each load run (default 1)
#   ROUNDS          rounds; each round runs every case against both servers (default 3)
#   CONNECTIONS     connections of the 32-byte text cases and of bin16k_d1 (default 100)
#   UPGRADE_CONC    concurrent connect/handshake/close cycles (default 50)
#   IDLE_CONNS      idle WebSockets for the memory case (default 10000)
#   SETTLE          seconds between the last idle connection and the second VmRSS (default 1)
#   SERVER_CPU      CPU for both servers (default 0)
#   LOAD_CPU        CPU for wsload (default 1)
#   KEEP_TMP        1 = keep the temp dir (logs, raw wsload output)
#   VERBOSE         1 = also print each raw wsload output
#   NOISY_PCT       a run is "noisy" when other busy time on SERVER_CPU exceeds this % (default 10);
#                   the summary also gives the ratios over quiet runs only
#   PEER            1 (default) = run Node too; 0 = switchyard only (bench/compare.sh)
set -euo pipefail

BENCH=ws.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

ALL_CASES="text32_d1 text32_d16 bin16k_d1 bin16k_d4 upgrade idle"
CASES=${CASES:-$ALL_CASES}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-100}
UPGRADE_CONC=${UPGRADE_CONC:-50}
IDLE_CONNS=${IDLE_CONNS:-10000}
SETTLE=${SETTLE:-1}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NODE_BIN=${NODE_BIN:-$(command -v node || echo node)}
FLOOR=${FLOOR:-1}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench-ws}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
NPM_TIMEOUT=${NPM_TIMEOUT:-300}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
VERBOSE=${VERBOSE:-0}
NOISY_PCT=${NOISY_PCT:-10}
PEER=${PEER:-1}
STOP_TRIES=50   # stop_pid: tenths of a second between TERM and KILL

check_uints DURATION WARMUP ROUNDS CONNECTIONS UPGRADE_CONC IDLE_CONNS SETTLE SERVER_CPU LOAD_CPU \
            BUILD_TIMEOUT NPM_TIMEOUT STARTUP_TIMEOUT NOISY_PCT
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$CONNECTIONS" -ge 1 ] && [ "$UPGRADE_CONC" -ge 1 ] \
  && [ "$IDLE_CONNS" -ge 1 ] || die "need DURATION, ROUNDS, CONNECTIONS, UPGRADE_CONC, IDLE_CONNS >= 1"
check_cpus SERVER_CPU LOAD_CPU
[[ $PEER == [01] ]] || die "PEER must be 0 or 1"
for c in $CASES; do [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case '$c' (cases: $ALL_CASES)"; done

missing=()
for t in taskset gcc ss timeout awk; do command -v "$t" >/dev/null || missing+=("$t"); done
[ "$PEER" = 0 ] || command -v "$NODE_BIN" >/dev/null || missing+=("node")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run scripts/install-deps --bench)"
[ -r /proc/self/stat ] || die "needs Linux /proc"

# Every idle WebSocket is a descriptor in wsload and in the server (both inherit this limit).
need_fds=$((IDLE_CONNS + 256))
[ "$(ulimit -n)" -ge "$need_fds" ] || ulimit -n "$need_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ " $CASES " == *" idle "* ]] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
  die "idle case needs ulimit -n >= $need_fds (soft $(ulimit -n), hard $(ulimit -Hn)); lower IDLE_CONNS or raise the hard limit"
fi

bench_start ws

# --- memory (bench/lib.sh has the process bookkeeping and all_ticks, the machine-wide CPU) ----

rss_kb() { # rss_kb PID: VmRSS in kB
  awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || true
}

# --- binaries: switchyard, wsload, node + ws ---------------------------------------------------

switchyard_bin

WSLOAD=$TMP/wsload
gcc -O2 -std=c11 -Wall -Wextra -o "$WSLOAD" "$REPO/bench/wsload.c" 2>"$TMP/wsload-build.log" \
  || { cat "$TMP/wsload-build.log" >&2; die "building wsload failed"; }

NODE_DIR=$REPO/bench/node
if [ "$PEER" = 1 ] && [ ! -f "$NODE_DIR/node_modules/ws/package.json" ]; then
  command -v npm >/dev/null || die "bench/node/node_modules missing and no npm (apt-get install npm)"
  note "bench/node/node_modules missing: npm ci (log: $TMP/npm.log)"
  (cd "$NODE_DIR" && timeout "$NPM_TIMEOUT" npm ci --no-audit --no-fund) >"$TMP/npm.log" 2>&1 \
    || { tail -n 30 "$TMP/npm.log" >&2; die "npm ci failed"; }
fi
FLOOR_BIN=$TMP/floor_echo
if [ "$FLOOR" = 1 ]; then
  gcc -O2 -std=c11 -Wall -Wextra -I/usr/include/lua5.4 -o "$FLOOR_BIN" "$REPO/bench/floor_echo.c" \
    -lcrypto -llua5.4 -lev \
    2>"$TMP/floor-build.log" || { cat "$TMP/floor-build.log" >&2; die "building floor_echo failed"; }
fi

WS_VERSION=
[ "$PEER" = 0 ] || WS_VERSION=$(cd "$NODE_DIR" && "$NODE_BIN" -p 'require("ws/package.json").version')

APP=${APP:-$REPO/examples/echo.lua}
if [ ! -f "$APP" ]; then
  note "$APP missing: using a built-in echo app"
  APP=$TMP/echo.lua
  cat >"$APP" <<'EOF'
local sy = require "switchyard"
return {
  upgrade = function(req)
    if req:offers("websocket") then
      return sy.accept("websocket", { message = function(ws, d, b) ws:send(d, b) end },
                       { max_message_size = 16 * 1024 * 1024 })
    end
  end,
}
EOF
fi

# --- servers ------------------------------------------------------------------------------------

# start_server NAME: starts NAME (node|switchyard|floor|floorlua) on a free port, pinned to SERVER_CPU; sets
# SRV_PID and SRV_PORT. Waits (bounded) for its "listening on" line, then for one echoed message
# through wsload. A server that exits during startup (its port taken meanwhile) is retried on a
# fresh port, 3 tries in all.
start_server() {
  local name=$1 port log deadline try
  for try in 1 2 3; do
    port=$(free_port); log="$TMP/$name-$port.log"
    if [ "$name" = node ]; then
      taskset -c "$SERVER_CPU" "$NODE_BIN" "$NODE_DIR/echo_server.js" "$port" 127.0.0.1 >"$log" 2>&1 &
    elif [ "$name" = floor ]; then
      taskset -c "$SERVER_CPU" "$FLOOR_BIN" "$port" >"$log" 2>&1 &
    elif [ "$name" = floorlua ]; then
      taskset -c "$SERVER_CPU" "$FLOOR_BIN" "$port" lua >"$log" 2>&1 &
    else
      taskset -c "$SERVER_CPU" "$SY_BIN" --listen "127.0.0.1:$port" "$APP" >"$log" 2>&1 &
    fi
    SRV_PID=$!; PIDS+=("$SRV_PID"); SRV_PORT=$port
    deadline=$((SECONDS + STARTUP_TIMEOUT))
    until grep -qF "listening on http://127.0.0.1:$port" "$log" 2>/dev/null; do
      kill -0 "$SRV_PID" 2>/dev/null || break
      [ $SECONDS -lt $deadline ] || { cat "$log" >&2; die "$name not listening on :$port after ${STARTUP_TIMEOUT}s"; }
      sleep 0.1
    done
    if kill -0 "$SRV_PID" 2>/dev/null; then
      timeout 20 "$WSLOAD" -p "$port" -c 1 -d 0.2 -w 0 -s 32 >"$TMP/probe-$name-$port.txt" 2>&1 \
        || { cat "$TMP/probe-$name-$port.txt" "$log" >&2; die "$name on :$port does not echo"; }
      return 0
    fi
    forget_pid "$SRV_PID"
    note "$name exited during startup on :$port (try $try of 3):"; cat "$log" >&2
  done
  die "$name did not start"
}

[ "$PEER" = 0 ] || { start_server node; NODE_PID=$SRV_PID; NODE_PORT=$SRV_PORT; }
start_server switchyard; SY_PID=$SRV_PID; SY_PORT=$SRV_PORT
[ "$FLOOR" = 1 ] && { start_server floor; FLOOR_PID=$SRV_PID; FLOOR_PORT=$SRV_PORT; }
[ "$FLOOR" = 1 ] && { start_server floorlua; FLOOR_LUA_PID=$SRV_PID; FLOOR_LUA_PORT=$SRV_PORT; }

# --- cases --------------------------------------------------------------------------------------

case_args() { # case_args CASE: wsload arguments
  case $1 in
    text32_d1)  echo "-m echo -c $CONNECTIONS -P 1 -s 32" ;;
    text32_d16) echo "-m echo -c $CONNECTIONS -P 16 -s 32" ;;
    bin16k_d1)  echo "-m echo -c $CONNECTIONS -P 1 -s 16384 -b" ;;
    bin16k_d4)  echo "-m echo -c 10 -P 4 -s 16384 -b" ;;
    upgrade)    echo "-m upgrade -c $UPGRADE_CONC" ;;
  esac
}
case_label() {
  case $1 in
    text32_d1)  echo "32 B text, $CONNECTIONS conns, depth 1" ;;
    text32_d16) echo "32 B text, $CONNECTIONS conns, depth 16" ;;
    bin16k_d1)  echo "16 KiB binary, $CONNECTIONS conns, depth 1" ;;
    bin16k_d4)  echo "16 KiB binary, 10 conns, depth 4" ;;
    upgrade)    echo "upgrade cycles, $UPGRADE_CONC concurrent" ;;
    idle)       echo "$IDLE_CONNS idle WebSockets" ;;
  esac
}

load_cases=()
for c in $CASES; do [ "$c" = idle ] || load_cases+=("$c"); done
has_idle=0; [[ " $CASES " == *" idle "* ]] && has_idle=1
per_run=$((WARMUP + DURATION + 2))
est=$((ROUNDS * ((2 + 2 * FLOOR) * ${#load_cases[@]} * per_run + has_idle * 2 * (SETTLE + 8))))

# --- header -------------------------------------------------------------------------------------

echo "# switchyard vs Node ws, WebSocket echo"
header_host
if [ "$PEER" = 1 ]; then
  echo "# node:       $("$NODE_BIN" --version), ws $WS_VERSION, bench/node/echo_server.js (perMessageDeflate off)"
else
  echo "# node:       not run (PEER=0)"
fi
echo "# load:       taskset -c $LOAD_CPU wsload, ${WARMUP}s warmup + ${DURATION}s measured per run; servers on CPU $SERVER_CPU;" \
     "$ROUNDS round(s); about ${est}s of load"
echo "# cases:      $CASES"
header_load "$LOAD_CPU" wsload

# --- runs -------------------------------------------------------------------------------------

RESULTS=$TMP/results.tsv   # round case server rate mb_s p50_us p99_us cpu_us cpu_pct oth_pct load_pct errors per_read
: >"$RESULTS"
bad=0

load_run() { # load_run OUTFILE ARGS...: wsload ARGS pinned to LOAD_CPU
  local out=$1
  shift
  bg_wait "$out" timeout -k 5 $((WARMUP + DURATION + 60)) taskset -c "$LOAD_CPU" "$WSLOAD" "$@"
}

field() { # field NAME FILE: value of NAME=... on the RESULT line
  awk -v k="$1" '/^RESULT / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$2"
}

measure() { # measure ROUND CASE NAME PID PORT
  local round=$1 cs=$2 name=$3 pid=$4 port=$5 out="$TMP/wsload-$1-$2-$3.txt" a0 a1 s0 s1 w0 w1 rc=0
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is no longer running"
  w0=$(date +%s%N); a0=$(all_ticks); s0=$(tree_ticks $$)
  # shellcheck disable=SC2046
  load_run "$out" -p "$port" $(case_args "$cs") -d "$DURATION" -w "$WARMUP" -C "$pid" || rc=$?
  s1=$(tree_ticks $$); a1=$(all_ticks); w1=$(date +%s%N)
  kill -0 "$pid" 2>/dev/null || { cat "$out" >&2; die "$name (pid $pid) died during the run"; }
  [ "$VERBOSE" = 1 ] && sed "s/^/  [$name] /" "$out"
  grep -q '^RESULT ' "$out" || { cat "$out" >&2; die "wsload against $name failed (rc $rc)"; }
  local errs; errs=$(field errors "$out")
  if [ "$rc" -ne 0 ] || [ "$errs" != 0 ]; then
    bad=1; grep -v '^RESULT' "$out" | sed "s/^/  [$name] /" >&2
  fi
  # oth% = CPU time of every process outside this script's tree (servers, wsload and helpers
  # are inside it) over the whole wsload run, in % of one CPU: each such tick displaced a server
  # or wsload on a machine with few CPUs. A noise gauge; tick rounding makes +-1 % noise.
  local oth; oth=$(awk -v o=$(((a1 - a0) - (s1 - s0))) -v hz="$HZ" -v ns=$((w1 - w0)) \
                   'BEGIN { printf "%.1f", (ns > 0 ? 100 * o / hz / (ns / 1e9) : 0) }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$cs" "$name" \
    "$(field rate "$out")" "$(field mb_s "$out")" "$(field p50_us "$out")" "$(field p99_us "$out")" \
    "$(field srv_cpu_us "$out")" "$(field srv_cpu_pct "$out")" "$oth" "$(field load_cpu_pct "$out")" \
    "$errs" "$(field srv_per_read "$out")" >>"$RESULTS"
  awk -F'\t' -v noisy="$NOISY_PCT" 'END {
      printf "%-5s %-10s %-10s %11.0f %8.2f %9.1f %9.1f %9.2f %6.1f %6.1f %6.1f %6s %7.2f%s\n", $1, $2,
             $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, ($10 > noisy ? "  noisy" : "") }' "$RESULTS"
}

# idle_run ROUND NAME: fresh server, VmRSS before and after IDLE_CONNS idle WebSockets.
idle_run() {
  local round=$1 name=$2 port pid before after out="$TMP/idle-$1-$2.txt" deadline opened per
  start_server "$name"; pid=$SRV_PID; port=$SRV_PORT
  sleep 0.5
  before=$(rss_kb "$pid")
  : >"$out"
  taskset -c "$LOAD_CPU" "$WSLOAD" -p "$port" -m idle -c "$IDLE_CONNS" -d 120 -T 10 >"$out" 2>&1 &
  LOAD_PID=$!
  deadline=$((SECONDS + 60 + IDLE_CONNS / 500))
  until grep -q '^idle:' "$out"; do
    kill -0 "$LOAD_PID" 2>/dev/null || { cat "$out" >&2; die "wsload idle against $name exited early"; }
    [ $SECONDS -lt $deadline ] || { cat "$out" >&2; die "idle connections to $name not open in time"; }
    sleep 0.1
  done
  sleep "$SETTLE"
  after=$(rss_kb "$pid")
  opened=$(awk '/^idle:/ {print $2}' "$out")
  stop_pid "$LOAD_PID"; LOAD_PID=
  stop_pid "$pid"; forget_pid "$pid"
  [ "$opened" = "$IDLE_CONNS" ] || { bad=1; note "$name: only $opened of $IDLE_CONNS idle connections opened"; }
  per=$(awk -v a="$after" -v b="$before" -v n="${opened:-0}" 'BEGIN { printf "%.0f", (n > 0 ? (a - b) * 1024 / n : 0) }')
  printf '%s\tidle\t%s\t%s\t%s\t%s\n' "$round" "$name" "$per" "$before" "$after" >>"$TMP/idle.tsv"
  printf '%-5s %-10s %-10s %12s %12s %14s %8s\n' "$round" idle "$name" "$before" "$after" "$per" "$opened"
}

if [ ${#load_cases[@]} -gt 0 ]; then
  echo
  echo "# rate = msg/s (echo) or upgrades/s; p50/p99 = round trip per message, or connect-to-101, in us;"
  echo "# cpu_us = server CPU per message/upgrade; cpu% = server CPU / window; oth% = CPU of all other"
  echo "# processes on the machine during the run, in % of one CPU (noise gauge); load% = wsload's own CPU"
  printf '%-5s %-10s %-10s %11s %8s %9s %9s %9s %6s %6s %6s %6s %7s\n' \
    round case server rate MB/s p50_us p99_us cpu_us cpu% oth% load% errors per_rd
  for r in $(seq "$ROUNDS"); do
    for cs in "${load_cases[@]}"; do
      if [ $((r % 2)) -eq 1 ]; then
        [ "$PEER" = 0 ] || measure "$r" "$cs" node "$NODE_PID" "$NODE_PORT"
        measure "$r" "$cs" switchyard "$SY_PID" "$SY_PORT"
      else
        measure "$r" "$cs" switchyard "$SY_PID" "$SY_PORT"
        [ "$PEER" = 0 ] || measure "$r" "$cs" node "$NODE_PID" "$NODE_PORT"
      fi
      if [ "$FLOOR" = 1 ] && [[ $cs == text32_* ]]; then
        measure "$r" "$cs" floor "$FLOOR_PID" "$FLOOR_PORT"
        measure "$r" "$cs" floorlua "$FLOOR_LUA_PID" "$FLOOR_LUA_PORT"
      fi
    done
  done
fi

: >"$TMP/idle.tsv"
if [ "$has_idle" = 1 ]; then
  echo
  echo "# idle: a fresh server per run; VmRSS in kB before/after $IDLE_CONNS idle WebSockets (+${SETTLE}s)"
  printf '%-5s %-10s %-10s %12s %12s %14s %8s\n' round case server rss_before rss_after bytes/conn opened
  for r in $(seq "$ROUNDS"); do
    if [ "$PEER" = 0 ]; then idle_run "$r" switchyard
    elif [ $((r % 2)) -eq 1 ]; then idle_run "$r" node; idle_run "$r" switchyard
    else idle_run "$r" switchyard; idle_run "$r" node; fi
  done
fi

# --- summary ----------------------------------------------------------------------------------

echo
echo "# medians over $ROUNDS round(s); sy/node > 1 means switchyard is higher"
echo "# quiet = the same ratio over runs with oth% <= $NOISY_PCT only (- when a server has none)"
printf '%-48s %-16s %12s %12s %9s %9s\n' case metric node switchyard sy/node quiet
awk -F'\t' -v noisy="$NOISY_PCT" -v labels="$(for c in $CASES; do printf '%s=%s;' "$c" "$(case_label "$c")"; done)" "$AWK_MEDIAN"'
  function med(cs, srv, col, quiet,   i, n, a) {
    n = 0
    for (i = 1; i <= nr; i++)
      if (rc[i] == cs && rs[i] == srv && (!quiet || rv[i, 10] <= noisy)) a[++n] = rv[i, col]
    return n ? median(a, n) : 0
  }
  function row(label, metric, cs, col, fmt,   x, y, qx, qy, q) {
    x = med(cs, "node", col, 0); y = med(cs, "switchyard", col, 0)
    q = "-"
    if (cs != "idle") {
      qx = med(cs, "node", col, 1); qy = med(cs, "switchyard", col, 1)
      if (qx > 0 && qy > 0) q = sprintf("%.3f", qy / qx)
    }
    printf "%-48s %-16s " fmt " " fmt " %9.3f %9s\n", label, metric, x, y, (x > 0 ? y / x : 0), q
  }
  BEGIN {
    n = split(labels, parts, ";")
    for (i = 1; i <= n; i++) if (parts[i] != "") { split(parts[i], kv, "="); label[kv[1]] = kv[2]; order[++nc] = kv[1] }
  }
  src == "results" { nr++; rc[nr] = $2; rs[nr] = $3; for (k = 4; k <= 12; k++) rv[nr, k] = $k }
  src == "idle" { nr++; rc[nr] = "idle"; rs[nr] = $3; rv[nr, 4] = $4; rv[nr, 5] = $5; rv[nr, 6] = $6 }
  END {
    for (i = 1; i <= nc; i++) {
      cs = order[i]
      if (cs == "idle") {
        row(label[cs], "RSS B/conn", cs, 4, "%12.0f")
        row("", "RSS kB before", cs, 5, "%12.0f")
        row("", "RSS kB after", cs, 6, "%12.0f")
        continue
      }
      row(label[cs], cs == "upgrade" ? "upgrades/s" : "msg/s", cs, 4, "%12.0f")
      if (cs ~ /^bin16k_/) row("", "MB/s each way", cs, 5, "%12.1f")
      row("", cs == "upgrade" ? "p50 us to 101" : "p50 us", cs, 6, "%12.1f")
      row("", cs == "upgrade" ? "p99 us to 101" : "p99 us", cs, 7, "%12.1f")
      row("", cs == "upgrade" ? "cpu us/upgrade" : "cpu us/msg", cs, 8, "%12.2f")
      row("", "server cpu %", cs, 9, "%12.1f")
    }
  }' src=results "$RESULTS" src=idle "$TMP/idle.tsv"

if [ "$FLOOR" = 1 ]; then
  echo
  echo "# floor: bench/floor_echo.c (no Lua, no protocol checks, same system calls per batch); medians."
  echo "# +lua: the same with the least Lua an echo handler needs (bench/floor_echo.c, \"lua\" mode)"
  echo "# sy - floor = server CPU per message above the floor: what switchyard's own code costs"
  echo "# x node = msg/s over Node's: the most a server with (+lua) or without Lua can reach here"
  echo "# m/rd = messages per read system call of the server (/proc/PID/io): the batching both get"
  printf '%-32s %10s %9s %10s %9s %9s %9s %9s %9s %9s %6s %6s\n' case "floor m/s" "floor us" \
    "+lua m/s" "+lua us" "sy us" "sy-floor" "floor x" "+lua x" "sy x" "fl m/rd" "sy m/rd"
  awk -F'\t' -v labels="$(for c in $CASES; do printf '%s=%s;' "$c" "$(case_label "$c")"; done)" "$AWK_MEDIAN"'
    function med(cs, srv, col,   i, n, a) {
      n = 0
      for (i = 1; i <= nr; i++) if (rc[i] == cs && rs[i] == srv) a[++n] = rv[i, col]
      return n ? median(a, n) : 0
    }
    BEGIN {
      n = split(labels, parts, ";")
      for (i = 1; i <= n; i++) if (parts[i] != "") { split(parts[i], kv, "="); label[kv[1]] = kv[2]; order[++nc] = kv[1] }
    }
    { nr++; rc[nr] = $2; rs[nr] = $3; for (k = 4; k <= 13; k++) rv[nr, k] = $k }
    END {
      for (i = 1; i <= nc; i++) {
        cs = order[i]
        if (cs !~ /^text32_/) continue
        f = med(cs, "floor", 8); fl = med(cs, "floorlua", 8); y = med(cs, "switchyard", 8)
        nd = med(cs, "node", 4)
        printf "%-32s %10.0f %9.2f %10.0f %9.2f %9.2f %9.2f %9.2f %9.2f %9.2f %6.2f %6.2f\n", label[cs],
               med(cs, "floor", 4), f, med(cs, "floorlua", 4), fl, y, y - f,
               nd ? med(cs, "floor", 4) / nd : 0, nd ? med(cs, "floorlua", 4) / nd : 0,
               nd ? med(cs, "switchyard", 4) / nd : 0, med(cs, "floor", 13), med(cs, "switchyard", 13)
      }
    }' "$RESULTS"
fi

if [ "$bad" -ne 0 ]; then
  note "some runs had errors (errors column, or idle connections that did not open); see $TMP"
  KEEP_TMP=1
  exit 1
fi
