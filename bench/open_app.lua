-- bench/open_app.lua: bench/idle_app.lua (examples/echo.lua plus GET /gc) whose WebSockets have
-- an `open` handler, so every connection's handle is made at the upgrade, as in an app that
-- greets, subscribes or keeps its clients in open. For the cost of a handle that exists:
--   APP=bench/open_app.lua bench/idle.sh                    memory per idle WebSocket
--   CASES=upgrade WS_APP=bench/open_app.lua bench/compare.sh REV    CPU per upgrade
local sy = require "switchyard"
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local base = dofile(dir .. "/idle_app.lua")

local handlers = {
  open = function(ws) end, -- luacheck: ignore 212
  message = function(ws, data, binary) ws:send(data, binary) end,
}

local app = {}
for k, v in pairs(base) do app[k] = v end

function app.upgrade(req)
  if not req:offers("websocket") then return sy.ignore() end
  return sy.accept("websocket", handlers, { max_message_size = 16 * 1024 * 1024 })
end

return app
