#!/usr/bin/env bash
# TLS: handshakes per second and keep-alive requests per second over HTTPS, switchyard
# (--tls-listen, examples/hello.lua) vs nginx, same certificate, same protocol and cipher.
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
# One ECDSA P-256 certificate is generated for the session (openssl req). Both servers get it,
# TLS 1.2 + 1.3 with the same TLS 1.2 cipher list; wrk (OpenSSL client defaults) negotiates
# TLS 1.3 with TLS_AES_256_GCM_SHA384 on both, which the header line checks with s_client.
# Both servers are pinned to SERVER_CPU, wrk to WRK_CPU. Two cases, alternating nginx,
# switchyard, nginx, switchyard, ... for ROUNDS rounds; medians and ratios at the end:
#   handshake  wrk -H "Connection: close": every request is a new TCP + TLS connection with a
#              full handshake (wrk keeps no sessions), so req/s = handshakes/s
#   keepalive  wrk on persistent connections: requests/s over established TLS sessions
#              (nginx keepalive_requests raised so it does not reconnect every 1000 requests)
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       build dir when building (default /tmp/build-bench)
#   APP             Lua app (default examples/hello.lua)
#   NGINX_BIN       nginx binary (default /usr/sbin/nginx)
#   DURATION        seconds per wrk run (default 10)
#   CONNECTIONS     wrk connections (default 50)
#   THREADS         wrk threads (default 1)
#   ROUNDS          rounds (default 3: medians of 3)
#   WARMUP          seconds of unmeasured wrk per server and case (default 1, 0 = none)
#   SERVER_CPU      CPU for both servers (default 0)
#   WRK_CPU         CPU for wrk (default 1)
#   CASES           "handshake keepalive" (default both)
#   KEEP_TMP        1 = keep the temp dir (configs, logs, raw wrk output)
#   PEER            1 (default) = run nginx too; 0 = switchyard only (bench/compare.sh)
#   NOISY_PCT       a run is "noisy" when other processes' CPU (oth%) exceeds this (default 10)
set -euo pipefail

BENCH=tls.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-50}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
SERVER_CPU=${SERVER_CPU:-0}
WRK_CPU=${WRK_CPU:-1}
CASES=${CASES:-handshake keepalive}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
PEER=${PEER:-1}
NOISY_PCT=${NOISY_PCT:-10}

check_uints DURATION CONNECTIONS THREADS ROUNDS WARMUP SERVER_CPU WRK_CPU BUILD_TIMEOUT STARTUP_TIMEOUT NOISY_PCT
[[ $PEER == [01] ]] || die "PEER must be 0 or 1"
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$CONNECTIONS" -ge "$THREADS" ] && [ "$THREADS" -ge 1 ] \
  || die "need DURATION>=1, ROUNDS>=1, THREADS>=1, CONNECTIONS>=THREADS"
for c in $CASES; do [[ $c == handshake || $c == keepalive ]] || die "unknown case '$c'"; done
check_cpus SERVER_CPU WRK_CPU

missing=()
for t in wrk taskset curl ss timeout awk openssl; do command -v "$t" >/dev/null || missing+=("$t"); done
[ "$PEER" = 0 ] || [ -x "$NGINX_BIN" ] || missing+=("$NGINX_BIN")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run scripts/install-deps --bench)"

bench_start tls

# --- certificate, binary, app ---------------------------------------------------------------

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$TMP/key.pem" -out "$TMP/cert.pem" \
  >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; die "openssl req failed"; }

switchyard_bin
APP=${APP:-$REPO/examples/hello.lua}
APP=$(cd "$(dirname "$APP")" && pwd)/$(basename "$APP")

# wait_https NAME PID PORT: until the server answers 200 over TLS; 1 if it exited meanwhile.
wait_https() {
  local name=$1 pid=$2 port=$3 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
  while :; do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$TMP/cert.pem" \
      "https://localhost:$port/" || true)
    [ "$code" = 200 ] && return 0
    [ $SECONDS -lt $deadline ] || { cat "$TMP/$name.log" >&2 || true; die "$name not ready on :$port"; }
    sleep 0.1
  done
}

# --- nginx config: same certificate, protocols and TLS 1.2 ciphers as switchyard ------------

mkdir -p "$TMP/nginx"
ngx_v=$("$NGINX_BIN" -V 2>&1)
ngx_temps="client_body_temp_path $TMP/nginx/body;"
for m in proxy fastcgi uwsgi scgi; do
  [[ $ngx_v == *"--without-http_${m}_module"* ]] || ngx_temps+=$'\n'"    ${m}_temp_path $TMP/nginx/$m;"
done
nginx_conf() { # nginx_conf PORT
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    default_type text/plain;
    keepalive_requests 1000000;
    $ngx_temps
    server {
        listen 127.0.0.1:$1 ssl;
        ssl_certificate $TMP/cert.pem;
        ssl_certificate_key $TMP/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        ssl_prefer_server_ciphers on;
        location / { return 200 "hello\n"; }
    }
}
EOF
  "$NGINX_BIN" -t -q -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
    >"$TMP/nginx-t.log" 2>&1 || { cat "$TMP/nginx-t.log" >&2; die "nginx -t failed"; }
}

NGX_PID='' SY_PID='' NGX_PORT=''
for try in 1 2 3; do
  [ "$PEER" = 1 ] || break
  NGX_PORT=$(free_port)
  nginx_conf "$NGX_PORT"
  taskset -c "$SERVER_CPU" "$NGINX_BIN" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" \
    -c "$TMP/nginx/nginx.conf" >"$TMP/nginx.log" 2>&1 &
  NGX_PID=$!; PIDS+=("$NGX_PID")
  wait_https nginx "$NGX_PID" "$NGX_PORT" && break
  forget_pid "$NGX_PID"; NGX_PID=
done
[ "$PEER" = 0 ] || [ -n "$NGX_PID" ] || die "nginx did not start (see $TMP/nginx.log)"
for try in 1 2 3; do
  SY_PORT=$(free_port "$NGX_PORT")
  taskset -c "$SERVER_CPU" "$SY_BIN" --tls-listen "127.0.0.1:$SY_PORT" --cert "$TMP/cert.pem" \
    --key "$TMP/key.pem" "$APP" >"$TMP/switchyard.log" 2>&1 &
  SY_PID=$!; PIDS+=("$SY_PID")
  wait_https switchyard "$SY_PID" "$SY_PORT" && break
  forget_pid "$SY_PID"; SY_PID=
done
[ -n "$SY_PID" ] || die "switchyard did not start (see $TMP/switchyard.log)"

negotiated() { # negotiated PORT: "TLSv1.3 TLS_AES_256_GCM_SHA384" as an OpenSSL client sees it
  echo | timeout 5 openssl s_client -connect "127.0.0.1:$1" -servername localhost 2>/dev/null |
    awk '/^New, / {print $2, $NF; exit}'
}

# --- header -----------------------------------------------------------------------------------

echo "# switchyard vs nginx over TLS, GET / -> 200 \"hello\\n\""
header_host
if [ "$PEER" = 1 ]; then
  echo "# nginx:      $("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //'), 1 worker, access_log off, keepalive_requests 1000000"
  echo "# tls:        ECDSA P-256 certificate; nginx negotiates $(negotiated "$NGX_PORT"), switchyard $(negotiated "$SY_PORT")"
else
  echo "# nginx:      not run (PEER=0)"
  echo "# tls:        ECDSA P-256 certificate; switchyard negotiates $(negotiated "$SY_PORT")"
fi
echo "# load:       taskset -c $WRK_CPU wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s; servers on CPU $SERVER_CPU; $ROUNDS round(s); cases: $CASES"
header_load "$WRK_CPU" wrk

# --- runs -------------------------------------------------------------------------------------

cd "$TMP"
RESULTS=$TMP/results.tsv # case round server rps requests cpu_ticks errors oth_pct
: >"$RESULTS"
bad=0

wrk_run() { # wrk_run CASE PORT SECONDS OUTFILE
  local hdr=()
  [ "$1" = handshake ] && hdr=(-H "Connection: close")
  bg_wait "$4" timeout -k 5 $(($3 + 30)) taskset -c "$WRK_CPU" \
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${3}s" --timeout 5s "${hdr[@]}" "https://127.0.0.1:$2/"
}

measure() { # measure CASE ROUND NAME PID PORT
  local out="$TMP/wrk-$1-$2-$3.txt" t0 t1 rps reqs errs a0 a1 s0 s1 w0 w1 oth
  kill -0 "$4" 2>/dev/null || die "$3 (pid $4) is no longer running"
  w0=$(date +%s%N); a0=$(all_ticks); s0=$(tree_ticks $$); t0=$(tree_ticks "$4")
  wrk_run "$1" "$5" "$DURATION" "$out" || { cat "$out" >&2; die "wrk against $3 failed"; }
  t1=$(tree_ticks "$4"); s1=$(tree_ticks $$); a1=$(all_ticks); w1=$(date +%s%N)
  # oth% = CPU of every process outside this script's tree (servers and wrk are inside it)
  # during the run, in % of one CPU: the noise gauge of bench/ws.sh
  oth=$(awk -v o=$(((a1 - a0) - (s1 - s0))) -v hz="$HZ" -v ns=$((w1 - w0)) \
        'BEGIN { printf "%.1f", (ns > 0 ? 100 * o / hz / (ns / 1e9) : 0) }')
  kill -0 "$4" 2>/dev/null || die "$3 (pid $4) died during the run"
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  reqs=$(awk '/ requests in / {print $1}' "$out")
  [ -n "$rps" ] && [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || { cat "$out" >&2; die "no requests against $3"; }
  errs=$(awk '/Non-2xx or 3xx responses:/ {n += $NF}
              /Socket errors:/ {gsub(",", ""); n += $4 + $6 + $8 + $10}
              END {print n + 0}' "$out")
  [ "$errs" -eq 0 ] || bad=1
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$rps" "$reqs" $((t1 - t0)) "$errs" "$oth" \
    >>"$RESULTS"
  printf '%-10s %-5s %-10s %12.0f %10d %6.1f %11.2f %6d%s\n' "$1" "$2" "$3" "$rps" "$reqs" "$oth" \
    "$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN {print t / hz * 1e6 / n}')" "$errs" \
    "$(awk -v o="$oth" -v n="$NOISY_PCT" 'BEGIN { if (o > n) print "  noisy" }')"
}

echo
echo "# oth% = CPU of all other processes on the machine during the run, in % of one CPU (noise gauge)"
printf '%-10s %-5s %-10s %12s %10s %6s %11s %6s\n' case round server req/s requests oth% cpu_us/req errors
for c in $CASES; do
  if [ "$WARMUP" -gt 0 ]; then
    [ "$PEER" = 0 ] || wrk_run "$c" "$NGX_PORT" "$WARMUP" "$TMP/warmup-$c-nginx.txt" || die "warmup against nginx failed"
    wrk_run "$c" "$SY_PORT" "$WARMUP" "$TMP/warmup-$c-switchyard.txt" || die "warmup against switchyard failed"
  fi
  for r in $(seq "$ROUNDS"); do
    [ "$PEER" = 0 ] || measure "$c" "$r" nginx "$NGX_PID" "$NGX_PORT"
    measure "$c" "$r" switchyard "$SY_PID" "$SY_PORT"
  done
done

# --- summary: medians per case and the ratios -------------------------------------------------

echo
awk -v hz="$HZ" -F'\t' "$AWK_MEDIAN"'
  {
    k = ++n[$1, $3]; rps[$1, $3, k] = $4; cpu[$1, $3, k] = $6 / hz * 1e6 / $5
    if (!($1 in seen)) { seen[$1] = 1; order[++ncases] = $1 }
  }
  END {
    printf "%-10s %-10s %12s %12s\n", "median", "server", "req/s", "cpu_us/req"
    for (i = 1; i <= ncases; i++) {
      c = order[i]
      for (s = 1; s <= 2; s++) {
        name = s == 1 ? "nginx" : "switchyard"
        m = n[c, name]
        if (m == 0) continue
        for (j = 1; j <= m; j++) { a[j] = rps[c, name, j]; b[j] = cpu[c, name, j] }
        mr[name] = median(a, m); mc[name] = median(b, m)
        printf "%-10s %-10s %12.0f %12.2f\n", c, name, mr[name], mc[name]
      }
      if (n[c, "nginx"] > 0) printf "%-10s %-10s %12.3f %12.3f   (%s)\n", c, "sy/nginx", mr["switchyard"] / mr["nginx"],
             (mc["nginx"] > 0 ? mc["switchyard"] / mc["nginx"] : 0),
             c == "handshake" ? "req/s = handshakes/s" : "keep-alive requests/s"
    }
  }' "$RESULTS"

if [ "$bad" -ne 0 ]; then
  note "some runs had socket errors or non-2xx responses (errors column); see $TMP"
  KEEP_TMP=1
  exit 1
fi
