-- spec/integration/accept_memory_spec.lua: an app at its max_memory that accepts: every
-- upgrade request is answered (101, or 500 when Lua ran out of memory) or closed, the server
-- stays up, and no connection handle stays anchored once the connections are gone. Run it
-- in the ASan build too. (tests/test_lua_accept.c hits every allocation of an accept in turn.)
local H = require "helpers.server"

local function up(n, token, extra)
  local headers = { "Upgrade: " .. token, "Connection: Upgrade" }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return H.request("GET", "/fill?n=" .. n, headers)
end

describe("accepting at max_memory", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/accept_memory.lua")

  for _, case in ipairs({
    { "echo/1" },
    { "websocket", { "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13" } },
  }) do
    it("answers every " .. case[1] .. " accept with 101 or 500 and leaks no handle", function()
      local seen = {}
      for n = 0, 6000, 16 do
        local c = H.must_connect(srv.port)
        c:send(up(n, case[1], case[2]))
        local res, err = c:read_response({ timeout = 10 })
        assert(res or err:find("closed"), ("n=%d: no answer (%s); log: %s"):format(n, tostring(err), srv:log()))
        local st = res and res.status or "closed"
        assert(st == 101 or st == 500 or st == "closed", ("n=%d: %s"):format(n, tostring(st)))
        seen[st] = (seen[st] or 0) + 1
        c:close()
      end
      assert.is_true(srv:alive())
      assert.truthy(seen[101], "never accepted")
      assert.truthy(seen[500], "never ran out of memory")
      local left
      H.wait_for(function()
        local r = H.roundtrip(srv.port, H.get("/handles"))
        left = r and r.body
        return left == "0"
      end, 10)
      assert.are.equal("0", left, "handles left anchored: " .. tostring(left))
    end)
  end
end)
