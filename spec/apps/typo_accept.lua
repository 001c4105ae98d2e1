-- Mistakes sy.accept catches when it is called (a 500 and a log line naming the app's line).
local sy = require "switchyard"

local app = {}

local ws_handlers = { open = function() end, mesage = function() end }
local good = { message = function(ws, data) ws:send(data) end, _notes = "the app's own" }

function app.request(req, res)
  res:send(200, "fine\n")
end

function app.upgrade(req)
  if req.path == "/handler" then
    return sy.accept("websocket", ws_handlers)
  elseif req.path == "/raw-handler" then
    return sy.accept("echo", { dta = function() end })
  elseif req.path == "/option" then
    return sy.accept("websocket", good, { max_mesage_size = 10 })
  elseif req.path == "/raw-option" then
    return sy.accept("echo", {}, { idle_timout = 5 })
  elseif req.path == "/compression" then
    return sy.accept("websocket", good, { compression = "bogus" })
  elseif req.path == "/good" then
    return sy.accept("websocket", good, { compression = "small", data = {} })
  end
end

return app
