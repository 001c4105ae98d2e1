#!/usr/bin/env bash
# HTTP/2 throughput and CPU-per-request: switchyard (prior knowledge on its --listen port, app
# examples/hello.lua) vs nghttpd (--no-tls) serving the same body, side by side, with h2load.
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
# Both servers are pinned to one CPU (SERVER_CPU), h2load to another (LOAD_CPU). Rounds
# alternate nghttpd, switchyard, ... against servers that stay up for the whole session. Around
# each h2load run the server's CPU time (from /proc/PID/stat, CLK_TCK ticks) is sampled, giving
# CPU µs per request. The summary prints medians over the rounds and the switchyard/nghttpd ratios.
#
# Environment (all optional):
#   SWITCHYARD_BIN  switchyard binary; unset = build Release into BUILD_DIR first
#   BUILD_DIR       build dir when building (default /tmp/build-bench)
#   APP             Lua app (default examples/hello.lua)
#   NGHTTPD_BIN     nghttpd binary (default /usr/sbin/nghttpd; scripts/install-deps --bench)
#   DURATION        seconds per h2load run (default 10)
#   CLIENTS         h2load clients (connections, default 50)
#   STREAMS         h2load max concurrent streams per connection (default 10)
#   THREADS         h2load threads (default 1)
#   ROUNDS          rounds; each round = one nghttpd run + one switchyard run (default 3)
#   WARMUP          seconds of unmeasured load per server before round 1 (default 2, 0 = none)
#   SERVER_CPU      CPU for both servers (default 0)
#   LOAD_CPU        CPU for h2load (default 1)
#   KEEP_TMP        1 = keep the temp dir; VERBOSE 1 = print each raw h2load output
#   PEER            1 (default) = run nghttpd too; 0 = switchyard only (bench/compare.sh)
#   NOISY_PCT       a run is "noisy" when other processes' CPU (oth%) exceeds this (default 10)
set -euo pipefail

BENCH=h2.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-50}
STREAMS=${STREAMS:-10}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
NGHTTPD_BIN=${NGHTTPD_BIN:-/usr/sbin/nghttpd}
BUILD_DIR=${BUILD_DIR:-/tmp/build-bench}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-10}
KEEP_TMP=${KEEP_TMP:-0}
VERBOSE=${VERBOSE:-0}
PEER=${PEER:-1}
NOISY_PCT=${NOISY_PCT:-10}

check_uints DURATION CLIENTS STREAMS THREADS ROUNDS WARMUP SERVER_CPU LOAD_CPU BUILD_TIMEOUT STARTUP_TIMEOUT \
            NOISY_PCT
[[ $PEER == [01] ]] || die "PEER must be 0 or 1"
[ "$DURATION" -ge 1 ] && [ "$ROUNDS" -ge 1 ] && [ "$THREADS" -ge 1 ] && [ "$CLIENTS" -ge "$THREADS" ] \
  && [ "$STREAMS" -ge 1 ] || die "need DURATION>=1, ROUNDS>=1, THREADS>=1, CLIENTS>=THREADS, STREAMS>=1"
check_cpus SERVER_CPU LOAD_CPU

missing=()
for t in h2load taskset curl ss timeout awk; do command -v "$t" >/dev/null || missing+=("$t"); done
[ "$PEER" = 0 ] || [ -x "$NGHTTPD_BIN" ] || missing+=("$NGHTTPD_BIN")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (run scripts/install-deps --bench)"

bench_start h2
switchyard_bin
APP=${APP:-$REPO/examples/hello.lua}
APP=$(cd "$(dirname "$APP")" && pwd)/$(basename "$APP")

# wait_h2 NAME PID PORT: until GET / over HTTP/2 (prior knowledge) answers 200; keeps the body.
wait_h2() {
  local name=$1 pid=$2 port=$3 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
  while :; do
    kill -0 "$pid" 2>/dev/null || return 1
    code=$(curl -s --http2-prior-knowledge -o "$TMP/$name.body" -w '%{http_code} %{http_version}' \
           --max-time 2 "http://127.0.0.1:$port/" || true)
    [ "$code" = "200 2" ] && return 0
    [ $SECONDS -lt $deadline ] || { cat "$TMP/$name.log" >&2 || true; die "$name not ready on :$port"; }
    sleep 0.1
  done
}

SY_PID='' NG_PID=''
for try in 1 2 3; do
  SY_PORT=$(free_port)
  taskset -c "$SERVER_CPU" "$SY_BIN" --listen "127.0.0.1:$SY_PORT" "$APP" >"$TMP/switchyard.log" 2>&1 &
  SY_PID=$!; PIDS+=("$SY_PID")
  wait_h2 switchyard "$SY_PID" "$SY_PORT" && break
  forget_pid "$SY_PID"; SY_PID=
done
[ -n "$SY_PID" ] || die "switchyard did not start (see $TMP/switchyard.log)"
# nghttpd serves the very bytes switchyard answered, as its index file.
mkdir -p "$TMP/htdocs"
cp "$TMP/switchyard.body" "$TMP/htdocs/index.html"
for try in 1 2 3; do
  [ "$PEER" = 1 ] || break
  NG_PORT=$(free_port "$SY_PORT")
  taskset -c "$SERVER_CPU" "$NGHTTPD_BIN" --no-tls -n 1 -d "$TMP/htdocs" "$NG_PORT" >"$TMP/nghttpd.log" 2>&1 &
  NG_PID=$!; PIDS+=("$NG_PID")
  wait_h2 nghttpd "$NG_PID" "$NG_PORT" && break
  forget_pid "$NG_PID"; NG_PID=
done
if [ "$PEER" = 1 ]; then
  [ -n "$NG_PID" ] || die "nghttpd did not start (see $TMP/nghttpd.log)"
  cmp -s "$TMP/switchyard.body" "$TMP/nghttpd.body" || die "the two servers answer different bodies"
fi

echo "# switchyard vs nghttpd, HTTP/2 (prior knowledge, cleartext) GET / -> 200, $(wc -c <"$TMP/switchyard.body") bytes"
header_host
if [ "$PEER" = 1 ]; then echo "# nghttpd:    $("$NGHTTPD_BIN" --version 2>&1 | head -n 1), --no-tls -n 1"
else echo "# nghttpd:    not run (PEER=0)"; fi
echo "# load:       taskset -c $LOAD_CPU h2load -t$THREADS -c$CLIENTS -m$STREAMS -D$DURATION; servers on CPU $SERVER_CPU;" \
     "$ROUNDS round(s), ${WARMUP}s warmup each"
header_load "$LOAD_CPU" h2load

cd "$TMP"
RESULTS=$TMP/results.tsv   # round server rps requests cpu_ticks failed oth_pct
: >"$RESULTS"
bad=0

load_run() { # load_run PORT SECONDS OUTFILE
  bg_wait "$3" timeout -k 5 $(($2 + 30)) taskset -c "$LOAD_CPU" \
    h2load -t"$THREADS" -c"$CLIENTS" -m"$STREAMS" -D"$2" "http://127.0.0.1:$1/"
}

measure() { # measure ROUND NAME PID PORT
  local round=$1 name=$2 pid=$3 port=$4 out="$TMP/h2load-$1-$2.txt" t0 t1 rps reqs ok failed a0 a1 s0 s1 w0 w1 oth
  kill -0 "$pid" 2>/dev/null || die "$name (pid $pid) is no longer running"
  w0=$(date +%s%N); a0=$(all_ticks); s0=$(tree_ticks $$); t0=$(tree_ticks "$pid")
  load_run "$port" "$DURATION" "$out" || { cat "$out" >&2; die "h2load against $name failed"; }
  t1=$(tree_ticks "$pid"); s1=$(tree_ticks $$); a1=$(all_ticks); w1=$(date +%s%N)
  # oth% = CPU of every process outside this script's tree (servers and h2load are inside it)
  # during the run, in % of one CPU: the noise gauge of bench/ws.sh
  oth=$(awk -v o=$(((a1 - a0) - (s1 - s0))) -v hz="$HZ" -v ns=$((w1 - w0)) \
        'BEGIN { printf "%.1f", (ns > 0 ? 100 * o / hz / (ns / 1e9) : 0) }')
  [ "$VERBOSE" = 1 ] && sed "s/^/  [$name] /" "$out"
  rps=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$out")
  reqs=$(sed -n 's/^requests: \([0-9]*\) total.*/\1/p' "$out")
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$out")
  [ -n "$rps" ] && [ -n "$ok" ] || { cat "$out" >&2; die "cannot parse h2load output for $name"; }
  [ "$ok" -gt 0 ] || { cat "$out" >&2; die "no request succeeded against $name"; }
  failed=$((reqs - ok))
  [ "$failed" -eq 0 ] || bad=1
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$name" "$rps" "$ok" $((t1 - t0)) "$failed" "$oth" \
    >>"$RESULTS"
  awk -v hz="$HZ" -v noisy="$NOISY_PCT" -F'\t' 'END { printf "%-5s %-10s %12.0f %10d %8.2f %6.1f %11.2f %6d%s\n",
      $1, $2, $3, $4, $5 / hz, $7, $5 / hz * 1e6 / $4, $6, ($7 > noisy ? "  noisy" : "") }' "$RESULTS"
}

if [ "$WARMUP" -gt 0 ]; then
  [ "$PEER" = 0 ] || load_run "$NG_PORT" "$WARMUP" "$TMP/warmup-nghttpd.txt" || die "warmup against nghttpd failed"
  load_run "$SY_PORT" "$WARMUP" "$TMP/warmup-switchyard.txt" || die "warmup against switchyard failed"
fi

echo
echo "# oth% = CPU of all other processes on the machine during the run, in % of one CPU (noise gauge)"
printf '%-5s %-10s %12s %10s %8s %6s %11s %6s\n' round server req/s requests cpu_s oth% cpu_us/req failed
for r in $(seq "$ROUNDS"); do
  [ "$PEER" = 0 ] || measure "$r" nghttpd "$NG_PID" "$NG_PORT"
  measure "$r" switchyard "$SY_PID" "$SY_PORT"
done

echo
awk -v hz="$HZ" -v peer="$PEER" -F'\t' "$AWK_MEDIAN"'
  { rps[$2, $1] = $3; cpr[$2, $1] = $5 / hz * 1e6 / $4; if ($1 > rounds) rounds = $1 }
  END {
    for (r = 1; r <= rounds; r++) {
      nr[r] = rps["nghttpd", r]; sr[r] = rps["switchyard", r]; nc[r] = cpr["nghttpd", r]; sc[r] = cpr["switchyard", r]
    }
    msr = median(sr, rounds); msc = median(sc, rounds)
    printf "%-12s %12s %12s   medians of %d round(s)\n", "", "req/s", "cpu_us/req", rounds
    if (peer) { mnr = median(nr, rounds); mnc = median(nc, rounds); printf "%-12s %12.0f %12.2f\n", "nghttpd", mnr, mnc }
    printf "%-12s %12.0f %12.2f\n", "switchyard", msr, msc
    if (peer) printf "%-12s %12.3f %12.3f\n", "sy/nghttpd", msr / mnr, (mnc > 0 ? msc / mnc : 0)
  }' "$RESULTS"

if [ "$bad" -ne 0 ]; then
  note "some requests failed (failed column); see $TMP"
  KEEP_TMP=1
  exit 1
fi
