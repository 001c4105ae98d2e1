# shellcheck shell=bash
# bench/cg_lib.sh: sourced by bench/cg_echo.sh and bench/cg_upgrade.sh. A server under
# valgrind --tool=callgrind, counted over a load run. The caller's cleanup kills $SRV if set.

# cg_start OUT LOG CMD...: starts CMD under callgrind (profile in OUT, output in LOG); sets SRV
# and CG_PORT, the port of its "listening on" line (exits, showing LOG, when none comes).
cg_start() {
  local out=$1 log=$2
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$log" 2>&1 &
  SRV=$!
  for _ in $(seq 600); do grep -q 'listening on http' "$log" && break; sleep 0.1; done
  CG_PORT=$(sed -n 's/.*listening on http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$log" | head -n1)
  [ -n "$CG_PORT" ] || { cat "$log" >&2; exit 1; }
}

# cg_stop OUT LOAD: stops the server; prints "instructions count", the count from the
# `count=N` of wsload's output in LOAD.
cg_stop() {
  kill -TERM "$SRV"
  wait "$SRV" || true
  SRV=
  echo "$(awk '/^summary:/ {print $2}' "$1") $(sed -n 's/.* count=\([0-9]*\).*/\1/p' "$2")"
}

# cg_per WHAT I1 N1 I2 N2: "instructions per WHAT", the long run's less the short run's.
cg_per() {
  awk -v w="$1" -v a="$2" -v m="$3" -v b="$4" -v n="$5" \
    'BEGIN { printf "instructions per %s: %.0f\n", w, (b - a) / (n - m) }'
}
