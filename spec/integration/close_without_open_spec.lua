-- spec/integration/close_without_open_spec.lua: clients that reset the connection right after
-- sending an upgrade request (before or while the server switches) never get a close handler
-- run without open: per handler set, closes == opens once all are gone. Against
-- spec/apps/raw_events.lua. tests/test_proto_switch.c drives the exact window in C.
local H = require "helpers.server"

local function stats(port)
  local t = H.kv(H.must_roundtrip(port, H.get("/stats")).body)
  for k, v in pairs(t) do t[k] = tonumber(v) or v end
  return t
end

local WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="

describe("close without open", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/raw_events.lua")

  it("an upgrade request followed by a reset runs close only where open ran", function()
    for i = 1, 40 do
      local c = H.must_connect(srv.port)
      local req
      if i % 2 == 0 then
        req = H.request("GET", "/", { "Upgrade: abrupt/1", "Connection: Upgrade" })
      else
        req = H.request("GET", "/abrupt", { "Upgrade: websocket", "Connection: Upgrade",
                                             "Sec-WebSocket-Key: " .. WS_KEY,
                                             "Sec-WebSocket-Version: 13" })
      end
      c:send(req)
      c.sock:setoption("linger", { on = true, timeout = 0 }) -- close sends RST
      if i % 4 < 2 then H.sleep(0.01) end -- some after the 101, some before it
      c:close()
    end
    -- Every connection goes (reset or EOF); then opens and closes match per handler set.
    assert.truthy(H.wait_for(function()
      local s = stats(srv.port)
      return (s.opens_abrupt or 0) == (s.closes_abrupt or 0)
         and (s.opens_wsabrupt or 0) == (s.closes_wsabrupt or 0)
    end, 20), "closes differ from opens")
    local s = stats(srv.port)
    assert.is_true((s.closes_abrupt or 0) <= 20 and (s.closes_wsabrupt or 0) <= 20)
  end)
end)
