-- tests/integration/bounds_app.lua: fixture app for the bounded-input tests
-- (test_ws_ping_flood.py, test_ws_inflate_ratio.py, test_input_budget.py).
--
-- HTTP: buffered input of the whole server limited to 4 MiB, bodies to 1 MiB, a body that
-- makes no progress for 3 s gets 408 (keep-alive stays at its 60 s default). Every request is
-- answered with the size of its body.
-- WebSocket paths (all echo):
--   /echo      defaults
--   /deflate   compression = "shared" (permessage-deflate without context takeover)
--   /stall     idle_timeout 3 s, ping_interval 0: a message that stops arriving is cut
local sy = require "switchyard"

local echo = { message = function(ws, data, binary) ws:send(data, binary) end }

local OPTIONS = {
  ["/echo"] = {},
  ["/deflate"] = { compression = "shared" },
  ["/stall"] = { idle_timeout = 3, ping_interval = 0 },
}

return {
  http = { max_buffered_total = 4 * 1024 * 1024, body_timeout = 3, max_body = 1024 * 1024 },
  upgrade = function(req)
    if req:offers("websocket") and OPTIONS[req.path] then
      return sy.accept("websocket", echo, OPTIONS[req.path])
    end
    return nil
  end,
  request = function(req, res) res:send(200, tostring(#(req.body or "")) .. "\n") end,
}
