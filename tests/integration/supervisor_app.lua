-- tests/integration/supervisor_app.lua: the app of test_supervisor.py. GET / answers with the
-- worker's pid; GET /stuck runs a backtracking pattern on a short string, which blocks its
-- worker inside one C call (string.find) for far longer than any test waits; every WebSocket
-- is an echo.
local sy = require "switchyard"

local function pid()
  local f = io.open("/proc/self/stat")
  local line = f and f:read("l") or ""
  if f then f:close() end
  return line:match("^(%d+)") or "?"
end

return {
  request = function(req, res)
    if req.path == "/stuck" then
      local found = string.find(string.rep("a", 40), ".-.-.-.-.-.-.-.-.-.-.-.-b")
      res:send(200, tostring(found))
      return
    end
    res:send(200, "pid " .. pid() .. "\n")
  end,
  upgrade = function(req)
    return sy.accept("websocket", {
      message = function(ws, data, binary) ws:send(data, binary) end,
    })
  end,
}
