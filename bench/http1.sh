#!/usr/bin/env bash
# HTTP/1.1 throughput and CPU-per-request: switchyard (examples/hello.lua) vs nginx, side by side.
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
# Both servers are pinned to one CPU (SERVER_CPU), wrk to another (WRK_CPU). Runs alternate
# nginx, switchyard, nginx, switchyard, ... against servers that stay up for the whole session.
# Around each wrk run the server's CPU time (utime+stime+cutime+cstime of the server process and
# its descendants, from /proc/PID/stat, in CLK_TCK ticks) is sampled, giving CPU µs per request.
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       build dir when building (default /tmp/build-bench)
#   APP             Lua app (default examples/hello.lua; a built-in hello app if that is missing)
#   NGINX_BIN       nginx binary (default /usr/sbin/nginx)
#   DURATION        seconds per wrk run (default 10)
#   CONNECTIONS     wrk connections (default 50)
#   THREADS         wrk threads (default 1)
#   ROUNDS          rounds; each round = one nginx run + one switchyard run (default 2)
#   WARMUP          seconds of unmeasured wrk per server before round 1 (default 2, 0 = none)
#   SERVER_CPU      CPU for both servers (default 0)
#   WRK_CPU         CPU for wrk (default 1)
#   KEEP_TMP        1 = keep the temp dir (configs, logs, raw wrk output)
#   VERBOSE         1 = also print each raw wrk output
#   NOISY_PCT       a run is "noisy" when other busy time on SERVER_CPU exceeds this % (default 10);
#                   medians are also printed over the rounds where neither run was noisy
#   PEER            1 (default) = run nginx too; 0 = switchyard only (bench/compare.sh)
set -euo pipefail

BENCH=http1.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
VERBOSE=${VERBOSE:-0}
NOISY_PCT=${NOISY_PCT:-10}
PEER=${PEER:-1}

check_uints DURATION CONNECTIONS THREADS ROUNDS WARMUP SERVER_CPU WRK_CPU BUILD_TIMEOUT STARTUP_TIMEOUT NOISY_PCT
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$CONNECTIONS" -ge "$THREADS" ] && [ "$THREADS" -ge 1 ] \
  || die "need DURATION>=1, ROUNDS>=1, THREADS>=1, CONNECTIONS>=THREADS"
check_cpus SERVER_CPU WRK_CPU
[[ $PEER == [01] ]] || die "PEER must be 0 or 1"

missing=()
for t in wrk taskset curl ss timeout awk; do command -v "$t" >/dev/null || missing+=("$t"); done
[ "$PEER" = 0 ] || [ -x "$NGINX_BIN" ] || missing+=("$NGINX_BIN")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run scripts/install-deps --bench)"
[ -r /proc/self/stat ] || die "needs Linux /proc"

bench_start http1

# --- CPU gauge and startup check (bench/lib.sh has the process bookkeeping) ------------------

cpu_line() { # cpu_line N: "busy total" ticks of CPU N from /proc/stat (busy includes steal)
  awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# wait_http NAME PID PORT [LOGLINE]: wait until the server answers 200 "hello" on PORT;
# returns 1 if it exited meanwhile, dies on timeout or a wrong answer.
wait_http() {
  local name=$1 pid=$2 port=$3 logline=${4:-} deadline=$((SECONDS + STARTUP_TIMEOUT)) code body
  while :; do
    kill -0 "$pid" 2>/dev/null || return 1
    if [ -z "$logline" ] || grep -qF "$logline" "$TMP/$name.log" 2>/dev/null; then
      code=$(curl -s -o "$TMP/$name.body" -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/" || true)
      [ "$code" = 200 ] && break
    fi
    [ $SECONDS -lt $deadline ] || { cat "$TMP/$name.log" >&2 || true; die "$name not ready on :$port after ${STARTUP_TIMEOUT}s"; }
    sleep 0.1
  done
  body=$(cat "$TMP/$name.body")
  [ "$body" = hello ] || die "$name answered 200 with body '$body', expected 'hello'"
}

# --- switchyard binary and app --------------------------------------------------------------

switchyard_bin

APP=${APP:-$REPO/examples/hello.lua}
if [ ! -f "$APP" ]; then
  note "$APP missing: using a built-in hello app"
  APP=$TMP/hello.lua
  cat >"$APP" <<'EOF'
return { request = function(req, res) res:send(200, "hello", {["content-type"]="text/plain"}) end }
EOF
fi
APP=$(cd "$(dirname "$APP")" && pwd)/$(basename "$APP")

# --- nginx config ---------------------------------------------------------------------------

mkdir -p "$TMP/nginx"
# Temp paths point into $TMP so nginx never needs /var/lib/nginx; skip modules compiled out.
ngx_v=$("$NGINX_BIN" -V 2>&1)
ngx_temps="client_body_temp_path $TMP/nginx/body;"
for m in proxy fastcgi uwsgi scgi; do
  [[ $ngx_v == *"--without-http_${m}_module"* ]] || ngx_temps+=$'\n'"    ${m}_temp_path $TMP/nginx/$m;"
done
nginx_conf() { # nginx_conf PORT: write and check the config
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    $ngx_temps
    server {
        listen 127.0.0.1:$1;
        location / { return 200 "hello"; }
    }
}
EOF
  "$NGINX_BIN" -t -q -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx-t.log" 2>&1 || { cat "$TMP/nginx-t.log" >&2; die "nginx -t failed"; }
}

# --- start both servers (pinned to SERVER_CPU), up to 3 tries each on fresh ports ------------

NGX_PID='' SY_PID='' NGX_PORT=''
for try in 1 2 3; do
  [ "$PEER" = 1 ] || break
  NGX_PORT=$(free_port)
  nginx_conf "$NGX_PORT"
  taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" \
    -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  wait_http nginx "$NGX_PID" "$NGX_PORT" && break
  forget_pid "$NGX_PID"; NGX_PID=
  note "nginx exited during startup on :$NGX_PORT (try $try): $(tail -n 1 "$TMP/nginx.log")"
done
[ "$PEER" = 0 ] || [ -n "$NGX_PID" ] || die "nginx did not start (see $TMP/nginx.log)"
for try in 1 2 3; do
  SY_PORT=$(free_port "$NGX_PORT")
  taskset -c "$SERVER_CPU" "$SY_BIN" --listen "127.0.0.1:$SY_PORT" "$APP" >"$TMP/switchyard.log" 2>&1 &
  SY_PID=$!; PIDS+=("$SY_PID")
  wait_http switchyard "$SY_PID" "$SY_PORT" "listening on http://127.0.0.1:$SY_PORT" && break
  forget_pid "$SY_PID"; SY_PID=
  note "switchyard exited during startup on :$SY_PORT (try $try): $(tail -n 1 "$TMP/switchyard.log")"
done
[ -n "$SY_PID" ] || die "switchyard did not start (see $TMP/switchyard.log)"

# --- header -----------------------------------------------------------------------------------

per_run=$((DURATION + 2))
echo "# switchyard vs nginx, HTTP/1.1 GET / -> 200 \"hello\""
header_host
if [ "$PEER" = 1 ]; then echo "# nginx:      $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), 1 worker, access_log off"
else echo "# nginx:      not run (PEER=0)"; fi
echo "# load:       taskset -c $WRK_CPU wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; servers on CPU $SERVER_CPU;" \
     "$ROUNDS round(s), ${WARMUP}s warmup each; at most ~$(( (2 * ROUNDS * per_run) + 2 * WARMUP ))s of load"
header_load "$WRK_CPU" wrk

# --- runs -------------------------------------------------------------------------------------

cd "$TMP"                      # nothing below writes into the caller's directory
RESULTS=$TMP/results.tsv       # round server rps requests cpu_ticks busy_ticks total_ticks errors
: >"$RESULTS"
bad=0

wrk_run() { # wrk_run PORT SECONDS OUTFILE
  bg_wait "$3" timeout -k 5 $(($2 + 30)) taskset -c "$WRK_CPU" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${2}s" --timeout 5s "http://127.0.0.1:$1/"
}

measure() { # measure ROUND NAME PID PORT
  local round=$1 name=$2 pid=$3 port=$4 out="$TMP/wrk-$1-$2.txt" t0 t1 c0 c1 b0 b1 tot0 tot1 rps reqs errs
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is no longer running"
  c0=$(cpu_line "$SERVER_CPU"); t0=$(tree_ticks "$pid")
  wrk_run "$port" "$DURATION" "$out" || { cat "$out" >&2; die "wrk against $name failed"; }
  t1=$(tree_ticks "$pid"); c1=$(cpu_line "$SERVER_CPU")
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) died during the run"
  [ "$VERBOSE" = 1 ] && sed "s/^/  [$name] /" "$out"
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  reqs=$(awk '/ requests in / {print $1}' "$out")
  [ -n "$rps" ] && [ -n "$reqs" ] || { cat "$out" >&2; die "cannot parse wrk output for $name"; }
  [ "$reqs" -gt 0 ] || { cat "$out" >&2; die "wrk completed no requests against $name"; }
  errs=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
              /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
              END {print n + 0}' "$out")
  [ "$errs" -eq 0 ] || bad=1
  read -r b0 tot0 <<<"$c0"; read -r b1 tot1 <<<"$c1"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$reqs" $((t1 - t0)) \
    $((b1 - b0)) $((tot1 - tot0)) "$errs" >>"$RESULTS"
  awk -v hz="$HZ" -v noisy="$NOISY_PCT" -F'\t' 'END {
      cpu = $5 / hz; total = $7 > 0 ? $7 : 1; oth = 100 * ($6 - $5) / total
      printf "%-5s %-10s %12.0f %10d %8.2f %6.1f %6.1f %11.2f %6d%s\n", $1, $2, $3, $4, cpu,
             100 * $5 / total, oth, cpu * 1e6 / $4, $8, (oth > noisy ? "  noisy" : "") }' "$RESULTS"
}

if [ "$WARMUP" -gt 0 ]; then
  [ "$PEER" = 0 ] || wrk_run "$NGX_PORT" "$WARMUP" "$TMP/warmup-nginx.txt" || die "warmup against nginx failed"
  wrk_run "$SY_PORT" "$WARMUP" "$TMP/warmup-switchyard.txt" || die "warmup against switchyard failed"
fi

echo
echo "# cpu% = server CPU time / wall time of the run; oth% = other busy time on CPU $SERVER_CPU"
echo "# (other processes, irqs, steal; ~±2% is tick rounding); noisy = oth% > $NOISY_PCT"
printf '%-5s %-10s %12s %10s %8s %6s %6s %11s %6s\n' \
  round server req/s requests cpu_s cpu% oth% cpu_us/req errors
for r in $(seq "$ROUNDS"); do
  [ "$PEER" = 0 ] || measure "$r" nginx "$NGX_PID" "$NGX_PORT"
  measure "$r" switchyard "$SY_PID" "$SY_PORT"
done

# --- summary ----------------------------------------------------------------------------------

echo
[ "$PEER" = 0 ] || awk -v hz="$HZ" -v noisy="$NOISY_PCT" -F'\t' "$AWK_MEDIAN"'
  function summary(title, only_quiet,   r, k, nr, nc, sr, sc, ar, ac, mnr, mnc, msr, msc) {
    k = 0
    for (r = 1; r <= rounds; r++) {
      if (only_quiet && !quiet[r]) continue
      k++; nr[k] = rps["nginx", r]; nc[k] = cpr["nginx", r]; sr[k] = rps["switchyard", r]; sc[k] = cpr["switchyard", r]
      ar[k] = sr[k] / nr[k]; ac[k] = nc[k] > 0 ? sc[k] / nc[k] : 0
    }
    printf "\n%-12s %12s %12s   %s, %d round(s)\n", "median", "req/s", "cpu_us/req", title, k
    if (k == 0) return
    mnr = median(nr, k); mnc = median(nc, k); msr = median(sr, k); msc = median(sc, k)
    printf "%-12s %12.0f %12.2f\n", "nginx", mnr, mnc
    printf "%-12s %12.0f %12.2f\n", "switchyard", msr, msc
    printf "%-12s %12.3f %12.3f\n", "sy/nginx", msr / mnr, (mnc > 0 ? msc / mnc : 0)
    printf "(median of per-round ratios: req/s %.3f, cpu_us/req %.3f)\n", median(ar, k), median(ac, k)
  }
  {
    rps[$2, $1] = $3; cpr[$2, $1] = $5 / hz * 1e6 / $4
    if (!($1 in quiet)) quiet[$1] = 1
    if (100 * ($6 - $5) / ($7 > 0 ? $7 : 1) > noisy) quiet[$1] = 0
    if ($1 > rounds) rounds = $1
  }
  END {
    printf "%-5s %-16s %-20s\n", "round", "req/s sy/nginx", "cpu_us/req sy/nginx"
    for (r = 1; r <= rounds; r++)
      printf "%-5d %-16.3f %-20.3f%s\n", r, rps["switchyard", r] / rps["nginx", r],
             (cpr["nginx", r] > 0 ? cpr["switchyard", r] / cpr["nginx", r] : 0), quiet[r] ? "" : "noisy"
    summary("all rounds", 0)
    summary("quiet rounds only", 1)
  }' "$RESULTS"

if [ "$bad" -ne 0 ]; then
  note "some runs had socket errors or non-2xx responses (errors column); see $TMP"
  KEEP_TMP=1
  exit 1
fi
