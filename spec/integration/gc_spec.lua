-- spec/integration/gc_spec.lua: Lua runs __gc finalizers with debug hooks off, so
-- app.lua.max_time cannot stop one: apps may not install finalizers. Each attack of
-- spec/apps/gc_attack.lua is refused where it is made, and the server keeps answering.
local H = require "helpers.server"

local APP = "spec/apps/gc_attack.lua"

-- Eight servers start here, one per attack: give each start a generous bound (under valgrind
-- on a busy machine one can take more than the default 5 s).
H.TIMEOUT = 30

describe("__gc finalizers in apps", function()
  after_each(H.close_all)

  -- rawset cannot be refused, but it lands in the read-only view the app was given, not in
  -- the metatable of io files: nothing runs.
  local expect = { ["/io-metatable-rawset"] = "^not refused" }
  for _, path in ipairs({ "/setmetatable", "/setmetatable-false", "/debug-setmetatable",
                          "/io-metatable", "/io-metatable-rawset", "/debug-getmetatable",
                          "/req-metatable" }) do
    it(path .. " is refused or harmless, and cannot stall the server", function()
      local srv = H.must_start(APP)
      local res, err = H.roundtrip(srv.port, H.get(path), { timeout = 20 })
      local canary = res and H.roundtrip(srv.port, H.get("/"), { timeout = 20 })
      local alive = srv:alive()
      local code = srv:stop()
      local log = srv:log()
      srv:cleanup()
      assert(res, "no answer to " .. path .. ": " .. tostring(err) .. "; log: " .. log)
      assert.are.equal(200, res.status)
      assert.matches(expect[path] or "^refused: .*__gc", res.body)
      assert(canary, "no answer to the canary; log: " .. log)
      assert.are.equal("fine\n", canary.body)
      assert.is_true(alive)
      assert.are.equal(0, code)
    end)
  end

  it("metatables without __gc, <close> and reading core metatables still work", function()
    local srv = H.must_start(APP)
    local res = H.must_roundtrip(srv.port, H.get("/plain"))
    srv:cleanup()
    assert.are.equal("x=1 close=true name=FILE* strindex=true\n", res.body)
  end)
end)
