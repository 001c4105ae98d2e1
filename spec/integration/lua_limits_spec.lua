-- spec/integration/lua_limits_spec.lua: an endless loop or a memory hog in a hook is stopped
-- and answered 500; the server keeps serving; bad app.lua settings stop the load.
local H = require "helpers.server"
local socket = require "socket"
local W = require "helpers.ws"

describe("app.lua limits", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/lua_limits.lua")

  for _, path in ipairs({ "/loop", "/coroutine", "/pcall-loop" }) do
    it("stops an endless loop in " .. path .. " with 500 after max_time", function()
      local t0 = socket.gettime()
      local res = H.must_roundtrip(srv.port, H.get(path))
      local took = socket.gettime() - t0
      assert.are.equal(500, res.status)
      -- max_time counts the thread's CPU time: on a busy (or sanitized) machine the wall time
      -- to the 500 grows, so the bound only tells a stopped loop from one never stopped.
      assert.is_true(took < 20, "took " .. took .. " s")
      assert.truthy(srv:log():find("time budget", 1, true))
      assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
    end)
  end

  it("gives each WebSocket message of one read a whole time budget of its own", function()
    local c = W.open(srv.port, "/spin")
    -- Four handlers of 0.12 s, sent in one write: 0.48 s in all, each well under 0.3 s.
    local s = W.frame(W.TEXT, "0.12")
    assert(c:send(s .. s .. s .. s))
    for _ = 1, 4 do assert.are.same({ "text", "done 0.12" }, { W.read(c, 5) }) end
    W.text(c, "10")
    local kind, code = W.read(c, 5)
    assert.are.same({ "close", 1011 }, { kind, code })
    assert.truthy(srv:log():find("time budget", 1, true), srv:log())
  end)

  it("stops a hook that passes max_memory with 500 and a clear log line", function()
    local res = H.must_roundtrip(srv.port, H.get("/memory"))
    assert.are.equal(500, res.status)
    assert.truthy(srv:log():find("Lua memory limit reached", 1, true), srv:log())
    assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
  end)

  it("refuses bad app.lua settings and bounds a looping app file", function()
    local path = os.tmpname()
    for _, case in ipairs({
      { "return { lua = { max_tim = 1 } }", "unknown app.lua option 'max_tim'" },
      { "return { lua = { max_memory = 10 } }", "app.lua.max_memory out of range" },
      { "while true do end", "time budget" },
    }) do
      local f = assert(io.open(path, "w"))
      f:write(case[1])
      f:close()
      local p = io.popen(H.shquote(H.bin()) .. " --check " .. H.shquote(path) .. " 2>&1; echo rc=$?")
      local out = p:read("a")
      p:close()
      assert.truthy(out:find(case[2], 1, true), out)
      assert.truthy(out:find("rc=1", 1, true), out)
    end
    os.remove(path)
  end)
end)
