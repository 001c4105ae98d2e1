#!/usr/bin/env bash
# scripts/run-example installs only what building and running need; scripts/test the rest.
# Checks the package sets of scripts/install-deps (--list installs nothing), that run-example
# asks for the small one, and that a configure with the tests off looks for no test tool.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "FAIL: $*" >&2; exit 1; }

run_set=$(scripts/install-deps --run --list)
all_set=$(scripts/install-deps --list)
[ -n "$run_set" ] && [ -n "$all_set" ] || fail "install-deps --list printed nothing"
for p in build-essential cmake pkg-config liblua5.4-dev libev-dev libssl-dev zlib1g-dev \
         libnghttp2-dev libc-ares-dev libhiredis-dev; do
  grep -qx "$p" <<<"$run_set" || fail "--run lacks $p"
done
for p in lua5.4 lua-busted chromium nodejs npm clang libclang-rt-14-dev python3-websockets \
         python3-h2 nghttp2-client curl; do
  if grep -qx "$p" <<<"$run_set"; then fail "--run installs the test tool $p"; fi
done
for p in lua5.4 lua-busted chromium nodejs clang python3-websockets python3-h2 curl \
         redis-server; do
  grep -qx "$p" <<<"$all_set" || fail "the default set lacks $p"
done
while read -r p; do
  grep -qx "$p" <<<"$all_set" || fail "$p is in --run but not in the default set"
done <<<"$run_set"
echo "ok: --run installs $(wc -l <<<"$run_set") packages, the default $(wc -l <<<"$all_set")"

grep -qx 'scripts/install-deps --run' scripts/run-example || fail "run-example does not use --run"
grep -qx 'scripts/install-deps' scripts/test || fail "scripts/test does not install everything"

# With the tests off, configuring needs nothing beyond the --run set: no busted, no lua5.4.
work=$(mktemp -d /tmp/sy-deps.XXXXXX)
trap 'rm -rf "$work"' EXIT
cmake -S . -B "$work/b" -DSY_BUILD_TESTS=OFF >"$work/log" 2>&1 ||
  { cat "$work/log"; fail "configure"; }
if grep -qE '^(BUSTED|LUA54):' "$work/b/CMakeCache.txt"; then
  fail "a configure with SY_BUILD_TESTS=OFF looked for busted/lua5.4"
fi
echo "ok: a configure with the tests off looks for no test tool"
