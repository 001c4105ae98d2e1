-- bench/fanout_app.lua: the server side of `wsload -m fanout`. A WebSocket on /sub joins the
-- topic "fan"; every message on /pub is published to it (sy.publish: framed once per process,
-- passed to the other workers with --workers and to other processes with --redis).
local sy = require "switchyard"

local sub = { open = function(ws) ws:subscribe("fan") end }
local pub = { message = function(ws, data, binary) sy.publish("fan", data, binary) end }

return {
  options = { idle_timeout = 0, ping_interval = 0 },
  upgrade = function(req)
    if not req:offers("websocket") then return nil end
    if req.path == "/sub" then return sy.accept("websocket", sub) end
    if req.path == "/pub" then return sy.accept("websocket", pub) end
    return sy.reject(404)
  end,
}
