#!/usr/bin/env bash
# switchyard.json needs lua-cjson at run time: the minimal package set installs it, and the
# server's Lua state finds it with no LUA_PATH/LUA_CPATH in the environment (Debian's liblua5.4
# lists /usr/lib/x86_64-linux-gnu/lua/5.4/?.so in its default package.cpath).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${SWITCHYARD_BIN:?SWITCHYARD_BIN not set}
fail() { echo "FAIL: $*" >&2; exit 1; }
scripts/install-deps --run --list | grep -qx lua-cjson || fail "install-deps --run lacks lua-cjson"
unset LUA_PATH LUA_PATH_5_4 LUA_CPATH LUA_CPATH_5_4
work=$(mktemp -d /tmp/sy-cjson.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat >"$work/app.lua" <<'LUA'
local json = require "switchyard.json"
local s = assert(json.encode({ ok = true }))
assert(s == '{"ok":true}', s)
assert(json.decode("[1,") == nil)
return {}
LUA
"$bin" --check "$work/app.lua" >"$work/out" 2>&1 || { cat "$work/out"; fail "--check"; }
echo "ok: the server's Lua state loads switchyard.json (lua-cjson) with no LUA_CPATH"
