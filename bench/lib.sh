# bench/lib.sh: helpers shared by the bench/*.sh scripts (sourced, never run alone).
#
# The script sets BENCH (its name, for messages) and REPO, then sources this file:
#   BENCH=http1.sh
#   REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
#   . "$REPO/bench/lib.sh"
# Only PIDs the script started (in PIDS, and LOAD_PID for the load generator) and their
# descendants are ever signalled.

die() { echo "$BENCH: $*" >&2; exit 1; }
note() { echo "$BENCH: $*" >&2; }

refuse_ci() { # by-hand benchmarks: refuse to run under CI unless BENCH_ALLOW_CI=1
  if [ -n "${CI:-}" ] && [ "${BENCH_ALLOW_CI:-}" != 1 ]; then
    echo "$BENCH: by-hand benchmark, refusing to run under CI (CI=$CI)" >&2
    exit 2
  fi
}

check_uints() { # check_uints VAR...: each variable holds a non-negative integer
  local v
  for v; do [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"; done
}

check_cpus() { # check_cpus SERVER_VAR LOAD_VAR: two different CPUs, both in our affinity list
  local a=${!1} b=${!2}
  [ "$a" -ne "$b" ] || die "$1 and $2 must differ"
  allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
  cpu_allowed "$a" && cpu_allowed "$b" || die "CPUs $a and $b must both be available (allowed: $allowed)"
}

cpu_allowed() { # cpu_allowed N: is CPU N in our affinity list (e.g. "0-3,6")
  local IFS=, r
  for r in $allowed; do
    if [[ $r == *-* ]]; then [ "$1" -ge "${r%-*}" ] && [ "$1" -le "${r#*-}" ] && return 0
    else [ "$1" -eq "$r" ] && return 0; fi
  done
  return 1
}

# --- process bookkeeping: only PIDs we started, and their descendants ----------------------

descendants() { # descendants PID: all live descendant PIDs (from /proc/*/stat ppid fields)
  local f line pid fld
  local -A kids=()
  for f in /proc/[0-9]*/stat; do
    { read -r line <"$f"; } 2>/dev/null || continue
    pid=${f#/proc/}; pid=${pid%/stat}
    read -ra fld <<<"${line##*) }"   # fields after "(comm) ": state ppid ...
    kids[${fld[1]}]+=" $pid"
  done
  local queue=("$1") p c
  while [ ${#queue[@]} -gt 0 ]; do
    p=${queue[0]}; queue=("${queue[@]:1}")
    for c in ${kids[$p]:-}; do echo "$c"; queue+=("$c"); done
  done
}

proc_ticks() { # proc_ticks PID: utime+stime+cutime+cstime of PID (0 if gone)
  local line fld
  { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
  read -ra fld <<<"${line##*) }"   # fld[11..14] = utime stime cutime cstime (stat fields 14-17)
  echo $((fld[11] + fld[12] + fld[13] + fld[14]))
}

tree_ticks() { # tree_ticks PID: proc_ticks summed over PID and its live descendants
  local total=0 p
  for p in "$1" $(descendants "$1"); do total=$((total + $(proc_ticks "$p"))); done
  echo "$total"
}

# all_ticks: utime+stime+cutime+cstime summed over every process on the machine. The time of a
# process that exits moves into its parent's cutime/cstime, so deltas stay right across exits.
# (Per-CPU busy ticks from /proc/stat are no gauge here: on a tickless VM they disagree with the
# exact per-process times by tens of percent.) A process that exits between the glob and cat's
# open is skipped; cat then fails, which must not end the script (pipefail, set -e).
all_ticks() {
  { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{ sub(/^.*\) /, ""); t += $12 + $13 + $14 + $15 } END { print t + 0 }'
}

stop_pid() { # stop_pid PID: TERM it (and descendants), wait STOP_TRIES tenths of a second, then KILL what is left
  local pid=$1 kids i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kids=$(descendants "$pid")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq "${STOP_TRIES:-30}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
}

forget_pid() { # forget_pid PID: reap a server that exited (or was stopped) and drop it from PIDS
  local p keep=()
  wait "$1" 2>/dev/null || true
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  [ -z "${LOAD_PID:-}" ] || stop_pid "$LOAD_PID"
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  if [ "$KEEP_TMP" = 1 ] || [ "$rc" -ne 0 ]; then note "temp dir kept: $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}

# bench_start NAME: the temp dir $TMP (sy-bench-NAME.*), HZ, empty PIDS and LOAD_PID, the
# cleanup traps, and the port range free_port draws from.
bench_start() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/sy-bench-$1.XXXXXX")
  HZ=$(getconf CLK_TCK)
  PIDS=()
  LOAD_PID=
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  # Ports come from below the kernel's ephemeral range, so no :0 listener or client socket (the
  # load generators open thousands) gets them meanwhile; startup is still retried on a new port.
  read -r EPH_LO _ </proc/sys/net/ipv4/ip_local_port_range
  if [ "$EPH_LO" -gt 12000 ]; then PORT_LO=10000 PORT_N=$((EPH_LO - 10000)); else PORT_LO=61000 PORT_N=4000; fi
}

free_port() { # free_port [AVOID]: a random loopback TCP port no socket uses
  local p i
  for i in $(seq 50); do
    p=$((PORT_LO + (RANDOM * 32768 + RANDOM) % PORT_N))
    [ "$p" != "${1:-}" ] || continue
    ss -Htan "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  die "no free port found"
}

# bg_wait OUTFILE CMD...: CMD in the background as LOAD_PID + wait, so INT/TERM traps fire at once
bg_wait() {
  local out=$1 rc=0
  shift
  "$@" >"$out" 2>&1 &
  LOAD_PID=$!
  wait "$LOAD_PID" || rc=$?
  LOAD_PID=
  return "$rc"
}

# --- switchyard binary ------------------------------------------------------------------------

# build_switchyard SRC DIR TYPE LOG [CMAKE_ARG...]: configure the source tree SRC into DIR with
# CMAKE_BUILD_TYPE=TYPE and build only the switchyard target, each step bounded by BUILD_TIMEOUT;
# output goes to LOG, whose tail is shown when the build fails.
build_switchyard() {
  local src=$1 dir=$2 type=$3 log=$4
  shift 4
  if ! { timeout "$BUILD_TIMEOUT" cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" &&
         timeout "$BUILD_TIMEOUT" cmake --build "$dir" --target switchyard -j"$(nproc)"; } \
       >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "build of $src failed (log: $log)"
  fi
}

build_info() { # build_info BIN: "CMAKE_BUILD_TYPE=... [SY_SANITIZE=...]" from the CMakeCache.txt next to BIN
  local cache bt san
  cache=$(dirname "$1")/CMakeCache.txt
  [ -f "$cache" ] || { echo "unknown build type"; return 0; }
  bt=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$cache")
  san=$(sed -n 's/^SY_SANITIZE:[A-Z]*=//p' "$cache")
  echo "CMAKE_BUILD_TYPE=${bt:-none}${san:+ SY_SANITIZE=$san}"
}

# switchyard_bin: sets SY_BIN (absolute) and sy_build; SWITCHYARD_BIN unset = build Release into
# BUILD_DIR (bounded by BUILD_TIMEOUT).
switchyard_bin() {
  if [ -n "${SWITCHYARD_BIN:-}" ]; then
    SY_BIN=$SWITCHYARD_BIN
  else
    note "SWITCHYARD_BIN unset: building Release into $BUILD_DIR (log: $TMP/build.log)"
    build_switchyard "$REPO" "$BUILD_DIR" Release "$TMP/build.log"
    SY_BIN=$BUILD_DIR/switchyard
  fi
  [ -x "$SY_BIN" ] || die "switchyard binary not executable: $SY_BIN"
  SY_BIN=$(cd "$(dirname "$SY_BIN")" && pwd)/$(basename "$SY_BIN")
  sy_build=$(build_info "$SY_BIN")
  [ "$sy_build" = CMAKE_BUILD_TYPE=Release ] || [ "$sy_build" = "unknown build type" ] \
    || note "warning: switchyard is not a plain Release build ($sy_build)"
}

# --- report -----------------------------------------------------------------------------------

header_host() { # the date/machine and switchyard lines of the header
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $(uname -srm)  $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "# switchyard: $SY_BIN ($sy_build), git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), app $APP"
}

header_load() { # header_load LOAD_CPU TOOL: the loadavg line and a warning when the CPUs share a core
  local sib s
  echo "# loadavg:    $(cut -d' ' -f1-3 /proc/loadavg)"
  sib=/sys/devices/system/cpu/cpu$SERVER_CPU/topology/thread_siblings_list
  if [ -r "$sib" ]; then
    s=$(cat "$sib")
    [[ ",$s," == *",$1,"* ]] && echo "# warning:    CPUs $SERVER_CPU and $1 are SMT siblings ($s): $2 and server share a core"
  fi
  return 0
}

# awk function median(a, n): the median of a[1..n] (sorts a); prepend to an awk program.
AWK_MEDIAN='
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }'
