#!/usr/bin/env bash
# A user's project with its own app and busted spec (switchyard.testing, switchyard.jwt, which
# loads switchyard/crypto.so): `switchyard test` runs it on Lua 5.4 with no LUA_PATH or
# LUA_CPATH set, also when the `busted` found in PATH names another interpreter; a failing
# spec makes it exit non-zero; a `.busted` file as the README shows serves plain `busted`.
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=$(realpath "${SWITCHYARD_BIN:-build/switchyard}")
src=$PWD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
unset LUA_PATH LUA_CPATH LUA_PATH_5_4 LUA_CPATH_5_4
pass=0 fail=0
ok() { echo "ok - $1"; pass=$((pass + 1)); }
bad() { echo "not ok - $1"; fail=$((fail + 1)); }

mkdir -p "$work/proj/spec" "$work/bin"
cat >"$work/proj/app.lua" <<'LUA'
local sy = require "switchyard"
local jwt = require "switchyard.jwt"
local SECRET = "s3cret"
return {
  request = function(req, res)
    sy.sleep(1)
    res:send(200, "hi " .. req.path)
  end,
  upgrade = function(req)
    local claims = jwt.verify((req.query or ""):match("token=([^&]+)"), SECRET)
    if not claims then return sy.reject(401) end
    return sy.accept("websocket", {
      message = function(ws, m) ws:send(ws.data.user .. ": " .. m) end,
    }, { data = { user = claims.sub } })
  end,
}
LUA
cat >"$work/proj/spec/app_spec.lua" <<'LUA'
local t = require "switchyard.testing"
local jwt = require "switchyard.jwt"
describe("app", function()
  local app = t.load("app.lua")
  it("answers after its sleep", function()
    assert.equal("hi /x", t.request(app, { path = "/x" }).body)
  end)
  it("checks the token and echoes with the user's name", function()
    assert.equal(401, t.upgrade(app, { path = "/ws" }).status)
    local c = t.websocket(app, { path = "/ws?token=" .. jwt.sign({ sub = "ann" }, "s3cret") })
    c:send("hello")
    assert.equal("ann: hello", c:receive())
  end)
  it("runs on Lua 5.4", function() assert.equal("Lua 5.4", _VERSION) end)
end)
LUA

# A busted whose own script names an interpreter that does not exist: `switchyard test`
# runs busted's script with lua5.4 itself, so it does not matter.
sed '1s|.*|#!/usr/bin/env lua-that-is-not-installed|' "$(command -v busted)" >"$work/bin/busted"
chmod +x "$work/bin/busted"

# Before: plain busted does not find the kit.
if (cd "$work/proj" && busted >"$work/plain.out" 2>&1); then
  bad "plain busted without .busted should not find switchyard.testing"
else
  grep -q "switchyard.testing" "$work/plain.out" && ok "plain busted cannot find the kit" \
    || { cat "$work/plain.out"; bad "plain busted failed for another reason"; }
fi

if (cd "$work/proj" && PATH="$work/bin:$PATH" "$bin" test >"$work/run.out" 2>&1) &&
   grep -q "3 successes / 0 failures / 0 errors" "$work/run.out"; then
  ok "switchyard test runs the user's spec on Lua 5.4"
else
  cat "$work/run.out"; bad "switchyard test"
fi

if (cd "$work/proj" && "$bin" test --output=TAP spec/app_spec.lua >"$work/tap.out" 2>&1) &&
   grep -q "^1\.\.3" "$work/tap.out"; then
  ok "busted arguments pass through"
else
  cat "$work/tap.out"; bad "busted arguments"
fi

cat >"$work/proj/spec/fail_spec.lua" <<'LUA'
describe("failing", function() it("fails", function() assert.equal(1, 2) end) end)
LUA
if (cd "$work/proj" && "$bin" test >"$work/fail.out" 2>&1); then
  bad "a failing spec must make switchyard test exit non-zero"
else
  grep -q "1 failure" "$work/fail.out" && ok "a failing spec fails the run" \
    || { cat "$work/fail.out"; bad "failing spec output"; }
fi
rm "$work/proj/spec/fail_spec.lua"

# The .busted file of the README: Lua 5.4 and switchyard's paths for plain `busted`.
cat >"$work/proj/.busted" <<LUA
return {
  default = {
    lua = "lua5.4",
    lpath = "$src/lua/?.lua;$src/lua/?/init.lua",
    cpath = "$(dirname "$bin")/lua/?.so",
  },
}
LUA
if (cd "$work/proj" && busted >"$work/dot.out" 2>&1) &&
   grep -q "3 successes / 0 failures / 0 errors" "$work/dot.out"; then
  ok "plain busted with the README's .busted file"
else
  cat "$work/dot.out"; bad ".busted file"
fi

# The README's example (app.lua and spec/app_spec.lua, the first two Lua blocks of "Testing
# your app") passes as written.
mkdir -p "$work/readme/spec"
awk '/^### Testing your app/ { on = 1 } on && /^```lua$/ { n++; inblock = 1; next }
     inblock && /^```$/ { inblock = 0; if (n == 2) exit; next }
     inblock && n == 1 { print > app } inblock && n == 2 { print > spec }' \
  app="$work/readme/app.lua" spec="$work/readme/spec/app_spec.lua" README.md
if (cd "$work/readme" && "$bin" test >"$work/readme.out" 2>&1) &&
   grep -q "4 successes / 0 failures / 0 errors" "$work/readme.out"; then
  ok "the README's example spec passes"
else
  cat "$work/readme.out"; bad "README example"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
