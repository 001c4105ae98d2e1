-- spec/apps/ws_defaults.lua: fixture for spec/integration/ws_api_spec.lua: a WebSocket echo
-- with no options at all (neither app.options nor accept options), to check the defaults.
local sy = require "switchyard"

local app = {}

function app.upgrade(req)
  if not req:offers("websocket") then return sy.ignore() end
  return sy.accept("websocket", { message = function(ws, data, binary) ws:send(data, binary) end })
end

return app
