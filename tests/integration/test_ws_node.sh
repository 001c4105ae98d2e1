#!/usr/bin/env bash
# tests/integration/test_ws_node.sh: the WebSocket layer against Node's `ws` client.
#
# Installs `ws` from tests/integration/node/package-lock.json (npm ci) when node_modules is
# missing, starts the real binary on 127.0.0.1 port 0 with tests/integration/ws_clients_app.lua,
# runs tests/integration/ws_node_client.js against it, then stops the server with SIGTERM and
# expects exit 0. Run from the repo root with SWITCHYARD_BIN set. Every wait is bounded; only
# the server PID started here is signalled. Last line: "N passed, N failed"; exit 1 on failure.
# SY_NODE_APP and SY_NODE_CLIENT name another app and client script (test_ws_deflate_node.sh).
set -uo pipefail

cd "$(dirname "$0")/../.."
here=tests/integration

fail() {
  echo "not ok - $*"
  echo "0 passed, 1 failed"
  exit 1
}

[ -n "${SWITCHYARD_BIN:-}" ] || fail "SWITCHYARD_BIN is not set"
command -v node >/dev/null || fail "node is not installed (scripts/install-deps)"
command -v npm >/dev/null || fail "npm is not installed (scripts/install-deps)"

if [ ! -d "$here/node/node_modules/ws" ]; then
  echo "# npm ci in $here/node"
  (cd "$here/node" && timeout 120 npm ci --no-audit --no-fund) >&2 || fail "npm ci failed"
fi

# True while the process runs (our exited child stays a zombie until `wait`: not alive).
alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$st" ] && [ "$st" != Z ]
}

tmp=$(mktemp -d /tmp/sy-ws-node.XXXXXX)
pid=""
cleanup() {
  if [ -n "$pid" ] && alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

"$SWITCHYARD_BIN" --listen 127.0.0.1:0 "${SY_NODE_APP:-$here/ws_clients_app.lua}" >"$tmp/out" 2>"$tmp/err" </dev/null &
pid=$!

port=""
for _ in $(seq 1 250); do # 5 s
  port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$tmp/out" | head -n1)
  [ -n "$port" ] && break
  alive "$pid" || break
  sleep 0.02
done
[ -n "$port" ] || fail "server did not start: $(cat "$tmp/out" "$tmp/err")"

timeout -k 5 240 node "${SY_NODE_CLIENT:-$here/ws_node_client.js}" "$port" | tee "$tmp/node.out"
node_rc=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$tmp/node.out" | tail -n1)
passed=$(echo "$summary" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
failed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed$/\1/p')
passed=${passed:-0}
failed=${failed:-0}
if [ "$node_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "not ok - node client exited $node_rc"
  failed=$((failed + 1))
fi

if ! alive "$pid"; then
  echo "not ok - the server died during the run: $(tail -c 2000 "$tmp/err")"
  failed=$((failed + 1))
else
  kill -TERM "$pid"
  for _ in $(seq 1 400); do # 8 s
    alive "$pid" || break
    sleep 0.02
  done
  if alive "$pid"; then
    echo "not ok - server still running 8 s after SIGTERM"
    failed=$((failed + 1))
  else
    wait "$pid"
    code=$?
    pid=""
    if [ "$code" -eq 0 ]; then
      echo "ok - server exits 0 on SIGTERM"
      passed=$((passed + 1))
    else
      echo "not ok - server exit code $code, want 0: $(tail -c 2000 "$tmp/err")"
      failed=$((failed + 1))
    fi
  fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
