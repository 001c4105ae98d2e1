#!/usr/bin/env bash
# Headless Chromium: a page over HTTPS (HTTP/2 by ALPN) opens wss:// to the same origin, which
# Chromium sends as an extended CONNECT (RFC 8441) on the page's connection; the server logs it.
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
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/key.pem" \
  -out "$work/cert.pem" -days 2 -subj /CN=localhost >/dev/null 2>&1
"$bin" --tls-listen 127.0.0.1:0 --cert "$work/cert.pem" --key "$work/key.pem" \
  tests/integration/h2ws_app.lua >"$work/out" 2>"$work/err" &
pid=$!
for _ in $(seq 50); do grep -q '^listening on' "$work/out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/out" | head -1)
[ -n "$url" ] || { echo "server did not start"; cat "$work/err"; echo "0 passed, 1 failed"; exit 1; }
rc=0
timeout 120 node tests/browser/h2ws.js "$url/" || rc=$?
if grep -q "websocket over HTTP/2 CONNECT" "$work/err"; then
  echo "ok - server log: websocket over HTTP/2 CONNECT"
else
  echo "not ok - no extended CONNECT in the server log"; cat "$work/err"; rc=1
fi
exit $rc
