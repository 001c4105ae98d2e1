-- spec/integration/raw_idle_spec.lua: the idle timeout of raw connections (accept option
-- idle_timeout), against spec/apps/raw_events.lua. Waits are bounded by generous caps; nothing
-- asserts speed.
local H = require "helpers.server"

local APP = "spec/apps/raw_events.lua"

local upgrade, stat = H.must_upgrade, H.stat

describe("raw idle timeout", function()
  after_each(H.close_all)
  local srv = H.serve(APP)

  it("closes a connection that sends nothing for idle_timeout, and runs close", function()
    local c = upgrade(srv.port, "idle/1")
    local t0 = H.now()
    c:send("x\n")
    assert.are.equal("x", c:line())
    local ok, what = c:expect_closed(20)
    assert.is_true(ok, "not closed within 20 s of silence (idle_timeout = 1): " .. tostring(what))
    assert.is_true(H.now() - t0 >= 0.5, "closed before its idle_timeout")
    assert.truthy(H.wait_for(function() return stat(srv.port, "closes_idle") == 1 end, 10),
                  "close handler not called after the idle timeout")
  end)

  it("counts time from the peer's last bytes", function()
    local c = upgrade(srv.port, "idlelive/1")
    -- 4 s of traffic every 0.25 s under idle_timeout = 3: never 3 s of silence.
    local t0 = H.now()
    local i = 0
    while H.now() - t0 < 4 do
      i = i + 1
      assert(c:send(i .. "\n"))
      assert.are.equal(tostring(i), c:line(), "closed while the peer was talking")
      H.sleep(0.25)
    end
    assert.are.equal(0, stat(srv.port, "closes_idlelive"))
    local ok = c:expect_closed(20)
    assert.is_true(ok, "not closed after the traffic stopped")
  end)

  it("idle_timeout = 0 keeps a silent connection", function()
    local c = upgrade(srv.port, "idleoff/1")
    H.sleep(1.5)
    c:send("still\n")
    assert.are.equal("still", c:line())
    assert.are.equal(0, stat(srv.port, "closes_idleoff"))
  end)

  it("a bad idle_timeout is an app error: 500", function()
    local c = H.must_connect(srv.port)
    c:send(H.request("GET", "/", { "Upgrade: badidle/1", "Connection: Upgrade" }))
    local res = c:must_response()
    assert.are.equal(500, res.status)
    assert.truthy(srv:log():find("idle_timeout", 1, true))
  end)
end)
