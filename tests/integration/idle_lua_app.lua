-- tests/integration/idle_lua_app.lua: an echo app (as examples/echo.lua) that reports its Lua
-- heap (fixture of test_idle_lua_memory.py). GET /mem answers collectgarbage("count") in
-- bytes; GET /full first runs a full collection.
local sy = require "switchyard"

local handlers = {
  message = function(ws, data, binary) ws:send(data, binary) end,
}

local function offered(req, name)
  local list = req.headers["sec-websocket-protocol"]
  if not list then return false end
  for p in list:gmatch("[^,%s]+") do
    if p == name then return true end
  end
  return false
end

return {
  upgrade = function(req)
    if not req:offers("websocket") then return sy.ignore() end
    return sy.accept("websocket", handlers, {
      subprotocol = offered(req, "echo") and "echo" or nil,
      max_message_size = 16 * 1024 * 1024,
    })
  end,
  request = function(req, res)
    if req.path == "/full" then collectgarbage() end
    res:send(200, string.format("%d\n", math.floor(collectgarbage("count") * 1024)))
  end,
}
