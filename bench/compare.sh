#!/usr/bin/env bash
# switchyard at an earlier git revision (BASE_REV) against the current tree, paired round by round
# on the load cases of bench/ws.sh, bench/http1.sh, bench/h2.sh and bench/tls.sh: does a change
# cost speed?
#
# By-hand benchmark, NOT for CI (refuses to run when $CI is set). See bench/README.md.
#
#   bench/compare.sh BASE_REV [ROUNDS]        ROUNDS defaults to 7
#
# BASE_REV is exported with `git archive` into the temp dir; it and the current tree (the working
# tree as it is, uncommitted changes included) are built the same way (bench/lib.sh
# build_switchyard: CMAKE_BUILD_TYPE=BUILD_TYPE, tests off, only the switchyard target), each into
# its own build dir in the temp dir. Then ROUNDS rounds; in each, every case runs once against
# each binary, back to back: base first in odd rounds, current first in even ones, so that slow
# drift of the machine falls on both sides alike. A run is one invocation of bench/ws.sh
# (CASES=<case>), bench/http1.sh, bench/h2.sh or bench/tls.sh (CASES=keepalive|handshake), all
# with ROUNDS=1 PEER=0 (no Node, nginx or nghttpd alongside) and SWITCHYARD_BIN set to that side's
# binary; switchyard's line of its per-run table is kept. The figure compared is the server's CPU time per
# message or request (the rate is shown too, but the load generator shares the machine). The
# summary gives, per case, each side's medians and the median over rounds of the per-round ratio
# current/base.
#
# Environment (all optional):
#   CASES           subset of text32_d16 text32_d1 bin16k_d1 bin16k_d4 upgrade (bench/ws.sh cases),
#                   http1 (bench/http1.sh, GET /), h2 (bench/h2.sh, GET / over HTTP/2 prior
#                   knowledge), tls (bench/tls.sh keepalive: GET / over kept TLS connections) and
#                   tls_hs (bench/tls.sh handshake: a new TLS connection per request)
#                   (default "text32_d16 text32_d1 http1")
#   DURATION        measured seconds per run (default 5)
#   WARMUP          unmeasured seconds per run (default 1)
#   BUILD_TYPE      CMAKE_BUILD_TYPE of both builds (default RelWithDebInfo, the project's default)
#   SWITCHYARD_BIN  use this binary as the current side instead of building the tree
#   BASE_BIN        use this binary as the base side instead of building BASE_REV (which then only
#                   names it in the header)
#   BUILD_TIMEOUT   seconds per configure or build step (default 1200)
#   RUN_TIMEOUT     seconds per invocation of a script (default 300 + 4 * (WARMUP + DURATION))
#   NOISY_PCT       a run is "noisy" when its oth% exceeds this (default 10); the summary also gives
#                   the ratio over the rounds where neither run of the pair was noisy
#   KEEP_TMP        1 = keep the temp dir's logs (sources and builds are always removed)
#   WS_APP          the app of the ws cases (default examples/echo.lua, whose handles are made on
#                   first use; bench/open_app.lua makes each at the upgrade)
# SERVER_CPU, LOAD_CPU, WRK_CPU, CONNECTIONS, CLIENTS, STREAMS, NODE_BIN, NGINX_BIN reach the
# scripts as set.
set -euo pipefail

BENCH=compare.sh
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$REPO/bench/lib.sh"
refuse_ci

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: bench/compare.sh BASE_REV [ROUNDS]" >&2; exit 2; }
BASE_REV=$1
ROUNDS=${2:-7}
ALL_CASES="text32_d16 text32_d1 bin16k_d1 bin16k_d4 upgrade http1 h2 tls tls_hs"
CASES=${CASES:-text32_d16 text32_d1 http1}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo}
BUILD_TIMEOUT=${BUILD_TIMEOUT:-1200}
RUN_TIMEOUT=${RUN_TIMEOUT:-$((300 + 4 * (WARMUP + DURATION)))}
NOISY_PCT=${NOISY_PCT:-10}
WS_APP=${WS_APP:-}
if [ -n "$WS_APP" ]; then
  [ -f "$WS_APP" ] || { echo "compare.sh: WS_APP $WS_APP: no such file" >&2; exit 2; }
  WS_APP=$(cd "$(dirname "$WS_APP")" && pwd)/$(basename "$WS_APP")
fi
KEEP_TMP=${KEEP_TMP:-0}
STOP_TRIES=150   # stop_pid: give a script that is told to stop 15 s to stop its servers

check_uints ROUNDS DURATION WARMUP BUILD_TIMEOUT RUN_TIMEOUT NOISY_PCT
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] || die "need ROUNDS >= 1 and DURATION >= 1"
[ -n "$CASES" ] || die "CASES is empty"
for c in $CASES; do [[ " $ALL_CASES " == *" $c "* ]] || die "unknown case '$c' (cases: $ALL_CASES)"; done
command -v git >/dev/null && command -v tar >/dev/null || die "missing: git, tar"
BASE_SHA=$(git -C "$REPO" rev-parse --verify --quiet "$BASE_REV^{commit}") || die "not a commit: $BASE_REV"

bench_start compare

# Sources and builds go whatever the exit status (lib.sh's cleanup keeps the rest, the logs, on
# failure); the running ws.sh/http1.sh is stopped first, and it stops its own servers.
compare_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "${LOAD_PID:-}" ]; then stop_pid "$LOAD_PID"; LOAD_PID=; fi
  rm -rf "$TMP/base-src" "$TMP/build-base" "$TMP/build-current"
  (exit "$rc")
  cleanup
}
trap compare_cleanup EXIT

# --- the two binaries -------------------------------------------------------------------------

if [ -n "${BASE_BIN:-}" ]; then
  [ -x "$BASE_BIN" ] || die "BASE_BIN not executable: $BASE_BIN"
  BASE_BIN=$(cd "$(dirname "$BASE_BIN")" && pwd)/$(basename "$BASE_BIN")
else
  mkdir "$TMP/base-src"
  git -C "$REPO" archive --format=tar "$BASE_SHA" | tar -x -C "$TMP/base-src" \
    || die "git archive $BASE_REV failed"
  note "building $BASE_REV ($BUILD_TYPE) in $TMP/build-base"
  build_switchyard "$TMP/base-src" "$TMP/build-base" "$BUILD_TYPE" "$TMP/build-base.log" -DSY_BUILD_TESTS=OFF
  BASE_BIN=$TMP/build-base/switchyard
fi
if [ -n "${SWITCHYARD_BIN:-}" ]; then
  [ -x "$SWITCHYARD_BIN" ] || die "SWITCHYARD_BIN not executable: $SWITCHYARD_BIN"
  CUR_BIN=$(cd "$(dirname "$SWITCHYARD_BIN")" && pwd)/$(basename "$SWITCHYARD_BIN")
else
  note "building the current tree ($BUILD_TYPE) in $TMP/build-current"
  build_switchyard "$REPO" "$TMP/build-current" "$BUILD_TYPE" "$TMP/build-current.log" -DSY_BUILD_TESTS=OFF
  CUR_BIN=$TMP/build-current/switchyard
fi
[ -x "$BASE_BIN" ] && [ -x "$CUR_BIN" ] || die "a switchyard binary is missing"
base_build=$(build_info "$BASE_BIN"); cur_build=$(build_info "$CUR_BIN")
[ "$base_build" = "$cur_build" ] || note "warning: the two sides are built differently ($base_build vs $cur_build)"

cur_desc=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || cur_desc+=" + uncommitted changes"

# --- runs -------------------------------------------------------------------------------------

case_label() {
  case $1 in
    text32_d16) echo "ws echo 32 B, depth 16" ;;
    text32_d1)  echo "ws echo 32 B, depth 1" ;;
    bin16k_d1)  echo "ws echo 16 KiB, depth 1" ;;
    bin16k_d4)  echo "ws echo 16 KiB, depth 4" ;;
    upgrade)    echo "ws upgrade cycles" ;;
    http1)      echo "http1 GET /" ;;
    h2)         echo "h2 GET /" ;;
    tls)        echo "tls GET /, keep-alive" ;;
    tls_hs)     echo "tls handshake + GET /" ;;
  esac
}
unit() { case $1 in http1|h2|tls) echo req ;; tls_hs) echo hs ;; upgrade) echo upg ;; *) echo msg ;; esac; }

ncases=$(wc -w <<<"$CASES")
est=0
for c in $CASES; do
  case $c in
    http1)    est=$((est + 2 * (WARMUP + DURATION + 6))) ;;
    *)        est=$((est + 2 * (WARMUP + DURATION + 5))) ;;
  esac
done
est=$((est * ROUNDS))

echo "# switchyard $BASE_REV (base) vs the current tree, paired rounds"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -srm)  $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
echo "# base:       $BASE_REV = $(git -C "$REPO" rev-parse --short "$BASE_SHA"), $BASE_BIN ($base_build)"
echo "#             $(git -C "$REPO" log -1 --format=%s "$BASE_SHA" | cut -c1-86)"
echo "# current:    $cur_desc, $CUR_BIN ($cur_build)"
echo "# runs:       bench/ws.sh CASES=<case> FLOOR=0 / http1.sh / h2.sh / tls.sh, PEER=0 ROUNDS=1, ${WARMUP}s warmup +" \
     "${DURATION}s measured; $ROUNDS round(s) of $ncases case(s) x 2 sides; about $((est / 60)) min"
[ -z "$WS_APP" ] || echo "# ws app:     $WS_APP"
echo "# loadavg:    $(cut -d' ' -f1-3 /proc/loadavg)"

RESULTS=$TMP/results.tsv   # round case side rate cpu_us oth_pct
: >"$RESULTS"
bad=0

# one_run ROUND CASE SIDE BIN: one invocation of a script; appends switchyard's figures to
# RESULTS. A failed run (exit status, errors, no figures) is shown and tried once more; when the
# retry fails too, the pair is left out of the summary and the exit status will be 1.
one_run() {
  local round=$1 cs=$2 side=$3 bin=$4 try log rc line rate cpu oth errs
  local -a cmd=(env SWITCHYARD_BIN="$bin" ROUNDS=1 DURATION="$DURATION" WARMUP="$WARMUP" APP=
                KEEP_TMP="$KEEP_TMP" VERBOSE=0 NOISY_PCT="$NOISY_PCT")
  case $cs in
    http1)  cmd+=(PEER=0 "$REPO/bench/http1.sh") ;;
    h2)     cmd+=(PEER=0 "$REPO/bench/h2.sh") ;;
    tls)    cmd+=(PEER=0 CASES=keepalive "$REPO/bench/tls.sh") ;;
    tls_hs) cmd+=(PEER=0 CASES=handshake "$REPO/bench/tls.sh") ;;
    *)      cmd+=(PEER=0 CASES="$cs" FLOOR=0 APP="$WS_APP" "$REPO/bench/ws.sh") ;;
  esac
  for try in 1 2; do
    log="$TMP/run-$round-$cs-$side-$try.log" rc=0
    bg_wait "$log" timeout -k 10 "$RUN_TIMEOUT" "${cmd[@]}" || rc=$?
    # per-run table rows: ws.sh "round case server rate MB/s p50 p99 cpu_us cpu% oth% load% errors
    # per_rd", http1.sh "round server req/s requests cpu_s cpu% oth% cpu_us/req errors", h2.sh
    # "round server req/s requests cpu_s oth% cpu_us/req failed", tls.sh "case round server req/s
    # requests oth% cpu_us/req errors"
    case $cs in
      http1) line=$(awk '$1 == "1" && $2 == "switchyard" && NF >= 9 { print $3, $8, $7, $9; exit }' "$log") ;;
      h2)    line=$(awk '$1 == "1" && $2 == "switchyard" && NF >= 8 { print $3, $7, $6, $8; exit }' "$log") ;;
      tls*)  line=$(awk -v c="$([ "$cs" = tls ] && echo keepalive || echo handshake)" \
                    '$1 == c && $2 == "1" && $3 == "switchyard" && NF >= 8 { print $4, $7, $6, $8; exit }' "$log") ;;
      *)     line=$(awk -v c="$cs" '$1 == "1" && $2 == c && $3 == "switchyard" { print $4, $8, $10, $12; exit }' "$log") ;;
    esac
    rate='' cpu='' oth='' errs=''
    read -r rate cpu oth errs <<<"$line" || true
    if [ "$rc" -eq 0 ] && [ -n "$line" ] && [ "$errs" = 0 ]; then
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$cs" "$side" "$rate" "$cpu" "$oth" >>"$RESULTS"
      return 0
    fi
    note "round $round, $cs, $side: run failed (exit $rc, errors ${errs:-?}, try $try of 2); its output:"
    tail -n 20 "$log" | sed 's/^/  /' >&2
  done
  bad=1
}

echo
echo "# rate = switchyard's msg/s (ws cases), req/s or handshakes/s; cpu_us = server CPU per message,"
echo "# request or handshake; oth% = the scripts' noise gauge (ws.sh, h2.sh, tls.sh: other processes' CPU"
echo "# on the machine, in % of one CPU; http1.sh: other busy time on the server's CPU); x = current/base"
printf '%-5s %-10s %-7s %11s %11s %7s %8s %8s %7s %6s %6s\n' round case first base_rate cur_rate rate_x \
  base_cpu cur_cpu cpu_x oth_b oth_c
for r in $(seq "$ROUNDS"); do
  for cs in $CASES; do
    if [ $((r % 2)) -eq 1 ]; then
      first=base; one_run "$r" "$cs" base "$BASE_BIN"; one_run "$r" "$cs" current "$CUR_BIN"
    else
      first=current; one_run "$r" "$cs" current "$CUR_BIN"; one_run "$r" "$cs" base "$BASE_BIN"
    fi
    awk -F'\t' -v r="$r" -v c="$cs" -v first="$first" -v noisy="$NOISY_PCT" '
      $1 == r && $2 == c { rate[$3] = $4; cpu[$3] = $5; oth[$3] = $6; n++ }
      END {
        if (n != 2) { printf "%-5s %-10s %-7s (pair incomplete: left out)\n", r, c, first; exit }
        printf "%-5s %-10s %-7s %11.0f %11.0f %7.3f %8.2f %8.2f %7.3f %6.1f %6.1f%s\n", r, c, first,
               rate["base"], rate["current"], rate["current"] / rate["base"], cpu["base"], cpu["current"],
               (cpu["base"] > 0 ? cpu["current"] / cpu["base"] : 0), oth["base"], oth["current"],
               (oth["base"] > noisy || oth["current"] > noisy ? "  noisy" : "")
      }' "$RESULTS"
  done
done

# --- summary ----------------------------------------------------------------------------------

echo
echo "# per case, over the complete pairs: each side's median, and the median over rounds of the ratio"
echo "# current/base with the middle half of those ratios (25%..75%) beside it."
echo "# rate: > 1 = current faster; cpu us: < 1 = current spends less server CPU."
echo "# quiet = the median ratio over the pairs with both oth% <= $NOISY_PCT only (- when none); pairs = complete pairs"
printf '%-26s %-11s %11s %11s %9s %15s %9s %6s\n' case metric base current cur/base "25%..75%" quiet pairs
awk -F'\t' -v noisy="$NOISY_PCT" -v cases="$CASES" \
    -v labels="$(for c in $CASES; do printf '%s=%s;' "$c" "$(case_label "$c")"; done)" \
    -v units="$(for c in $CASES; do printf '%s=%s;' "$c" "$(unit "$c")"; done)" "$AWK_MEDIAN"'
  function quantile(a, n, p,   pos, i) { # a[1..n] sorted; linear between the closest ranks
    pos = 1 + (n - 1) * p; i = int(pos)
    return i >= n ? a[n] : a[i] + (pos - i) * (a[i + 1] - a[i])
  }
  function row(label, metric, col, fmt,   r, k, q, b, c, x, qx, mx, mq) {
    k = 0; q = 0
    for (r = 1; r <= rounds; r++) {
      if (!((cs, r, "base") in v) || !((cs, r, "current") in v)) continue
      k++; b[k] = v[cs, r, "base", col]; c[k] = v[cs, r, "current", col]
      x[k] = b[k] > 0 ? c[k] / b[k] : 0
      if (v[cs, r, "base", 6] <= noisy && v[cs, r, "current", 6] <= noisy) qx[++q] = x[k]
    }
    if (k == 0) { printf "%-26s %-11s (no complete pair)\n", label, metric; return }
    mq = q ? sprintf("%.3f", median(qx, q)) : "-"
    mx = median(x, k)   # sorts x
    printf "%-26s %-11s " fmt " " fmt " %9.3f %15s %9s %6s\n", label, metric, median(b, k), median(c, k),
           mx, sprintf("%.3f..%.3f", quantile(x, k, 0.25), quantile(x, k, 0.75)), mq, (col == 4 ? k : "")
  }
  BEGIN {
    n = split(labels, parts, ";")
    for (i = 1; i <= n; i++) if (parts[i] != "") { split(parts[i], kv, "="); label[kv[1]] = kv[2] }
    n = split(units, parts, ";")
    for (i = 1; i <= n; i++) if (parts[i] != "") { split(parts[i], kv, "="); unit[kv[1]] = kv[2] }
  }
  {
    v[$2, $1, $3] = 1
    for (i = 4; i <= 6; i++) v[$2, $1, $3, i] = $i
    if ($1 > rounds) rounds = $1
  }
  END {
    nc = split(cases, order, " ")
    for (i = 1; i <= nc; i++) {
      cs = order[i]
      row(label[cs], unit[cs] "/s", 4, "%11.0f")
      row("", "cpu us/" unit[cs], 5, "%11.2f")
    }
  }' "$RESULTS"

if [ "$bad" -ne 0 ]; then
  note "some runs failed (see above); logs in $TMP"
  exit 1
fi
