-- tests/integration/ws_backpressure_app.lua: fixture app for test_ws_backpressure.py.
--
-- A WebSocket with idle_timeout 1 s and no pings of its own: the message "go" is answered with
-- 4 MiB (binary), any other message is echoed.
local sy = require "switchyard"

local BIG = ("0123456789abcdef"):rep(256 * 1024)

return {
  upgrade = function(req)
    if not req:offers("websocket") then return nil end
    return sy.accept("websocket", {
      message = function(ws, data, binary)
        if data == "go" then ws:send(BIG, true) else ws:send(data, binary) end
      end,
    }, { idle_timeout = 1, ping_interval = 0 })
  end,
}
