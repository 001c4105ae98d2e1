-- spec/apps/lua_limits.lua: app.lua bounds each hook's run time and the state's memory.
local sy = require "switchyard"
local socket = require "socket"

-- WebSocket /spin: each message "S" spins S seconds of wall time, then answers "done S".
local spin = {
  message = function(ws, data)
    local t0 = socket.gettime()
    while socket.gettime() - t0 < tonumber(data) do end
    ws:send("done " .. data)
  end,
}

return {
  -- max_memory small enough that passing it is quick under sanitizers and a loaded machine.
  lua = { max_time = 0.3, max_memory = 8 * 1024 * 1024 },
  upgrade = function(req)
    if req.path == "/spin" and req:offers("websocket") then return sy.accept("websocket", spin) end
    return sy.ignore()
  end,
  request = function(req, res)
    if req.path == "/loop" then while true do end end
    if req.path == "/coroutine" then coroutine.wrap(function() while true do end end)() end
    if req.path == "/pcall-loop" then
      -- Swallowing the budget error does not help: past the deadline it is raised again at
      -- every check, and sooner or later outside the pcall.
      while true do pcall(function() while true do end end) end
    end
    if req.path == "/memory" then
      local keep = {}
      for i = 1, 10 do keep[i] = string.rep("x", 2 * 1024 * 1024) .. i end
    end
    res:send(200, "fine\n")
  end,
}
