-- tests/integration/ws_deflate_app.lua: the permessage-deflate tests' server
-- (test_ws_deflate.py, test_ws_clients.py, test_ws_node.sh).
--
-- /echo/<preset>[/<threshold>]: echoes every message; <preset> is the `compression` option
--   ("off", "shared", "small", "default" or "true"), <threshold> the compression_threshold.
--   "app" leaves the option out: app.options sets compression = "small".
-- /room/<preset>: joins the topic "room"; every message is published to all of the room
--   (the sender included) with sy.publish.
-- /bad/<n>: accepts with an invalid compression value (an app error: 500).
-- Messages up to 1 MiB (decompressed).
local sy = require "switchyard"

local presets = { off = false, ["true"] = true, shared = "shared", small = "small",
                  default = "default" }

local echo = { message = function(ws, data, binary) ws:send(data, binary) end }
local room = {
  open = function(ws) ws:subscribe("room") end,
  message = function(ws, data, binary) sy.publish("room", data, binary) end,
}

local bad = { "fast", 1, {} }

return {
  options = { compression = "small" },
  upgrade = function(req)
    if not req:offers("websocket") then return nil end
    local n = req.path:match("^/bad/(%d)$")
    if n then return sy.accept("websocket", echo, { compression = bad[tonumber(n)] }) end
    local kind, preset, threshold = req.path:match("^/(%a+)/(%a+)/?(%d*)$")
    if presets[preset] == nil and preset ~= "app" then
      return sy.reject(404, "no such preset\n")
    end
    return sy.accept("websocket", kind == "room" and room or echo, {
      compression = presets[preset],
      compression_threshold = tonumber(threshold),
      max_message_size = 1024 * 1024,
    })
  end,
}
