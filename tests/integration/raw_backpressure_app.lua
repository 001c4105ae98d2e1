-- tests/integration/raw_backpressure_app.lua: fixture app for test_raw_backpressure.py.
--
-- Raw token "bulk": every line from the client is answered with 4 MiB, so the queue passes the
-- high-water mark (1 MiB) and reading pauses until the client has read it down. The idle
-- timeout is 1 s.
local sy = require "switchyard"

local CHUNK = ("0123456789abcdef"):rep(256 * 1024)

return {
  upgrade = function(req)
    if not req:offers("bulk") then return nil end
    return sy.accept("bulk", {
      data = function(conn, bytes)
        for _ in bytes:gmatch("\n") do conn:write(CHUNK) end
      end,
    }, { idle_timeout = 1 })
  end,
}
