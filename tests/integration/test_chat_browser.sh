#!/usr/bin/env bash
# The chat example in headless Chromium: two tabs exchange messages through the server.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SWITCHYARD_BIN:-build/switchyard}
work=$(mktemp -d)
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
"$bin" --listen 127.0.0.1:0 examples/chat/server.lua >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 50); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/out" | head -1)
[ -n "$url" ] || { echo "server did not start"; cat "$work/err"; echo "0 passed, 1 failed"; exit 1; }
timeout 120 node tests/browser/chat.js "$url/" "${CHAT_SCREENSHOT:-}"
