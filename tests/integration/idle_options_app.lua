-- tests/integration/idle_options_app.lua: fixture app for test_idle_options.py.
--
-- app.options.idle_timeout = 0 (no idle limit) is the app-wide default of both raw
-- connections and WebSockets; a request body or a WebSocket message that stops growing is
-- still bounded by app.http.body_timeout (2 s here).
local sy = require "switchyard"

local echo = { message = function(ws, data, binary) ws:send(data, binary) end }
local lines = { data = function(conn, bytes) conn:write(bytes) end }

return {
  http = { body_timeout = 2 },
  options = { idle_timeout = 0, ping_interval = 0 },
  upgrade = function(req)
    if req:offers("websocket") then return sy.accept("websocket", echo) end
    if req:offers("lines") then return sy.accept("lines", lines) end
    return nil
  end,
  request = function(req, res) res:send(200, "ok\n") end,
}
