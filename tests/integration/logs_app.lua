-- tests/integration/logs_app.lua: the app of test_logs.py. GET /log logs one line at each level
-- plus one with quotes, control characters and invalid UTF-8; GET /print calls print; other
-- requests get "hello\n". Upgrades by path: /ws a WebSocket echo, /raw a raw echo ("echo"
-- token), /ignore, /426, /reject (403) and /error (accepts a token the client did not offer).
local sy = require "switchyard"

local app = {}

function app.request(req, res)
  if req.path == "/log" then
    sy.log("debug", "debug-marker")
    sy.log("info", "info-marker")
    sy.log("warn", "warn-marker")
    sy.log("error", "error-marker")
    sy.log("info", 'odd-marker "q" back\\slash\n\ttab\1\127 bad:\255\254 end é')
    res:send(200, "logged\n")
    return
  end
  if req.path == "/print" then
    print("print-marker", 42, nil, true)
    res:send(200, "printed\n")
    return
  end
  res:send(200, "hello\n")
end

function app.upgrade(req)
  if req.path == "/ws" then
    return sy.accept("websocket", {
      message = function(ws, data, binary) ws:send(data, binary) end,
    })
  end
  if req.path == "/raw" then
    return sy.accept("echo", { data = function(conn, bytes) conn:write(bytes) end })
  end
  if req.path == "/426" then return sy.upgrade_required("websocket") end
  if req.path == "/reject" then return sy.reject(403, "no\n") end
  if req.path == "/error" then return sy.accept("nonsense") end
  return sy.ignore()
end

return app
