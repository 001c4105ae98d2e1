-- spec/apps/metamethods.lua: fixture for spec/integration/metamethods_spec.lua. An app can
-- reach the C metamethods of the core's handles through getmetatable's read-only view and
-- call them with anything; each must refuse what is not its handle, and the server go on.
--   WebSocket /mm: a message "<field>" calls getmetatable(ws).__index with nil, 0 and a table
--     in place of the handle, then with ws itself; it answers "<how>=<result>|..." with
--     "refused: <error>" or "got <type>".
--   GET /tcp-gc-nil: getmetatable(sy.tcp()).__gc(nil).
--   GET /tcp-gc-waiting?port=<this server's>: a socket connected back to this server waits in receive while a
--     timer calls its __gc by hand; the receive must end with nil, "closed".
local sy = require "switchyard"

local app = {}

local function try(fn, ...)
  local ok, v = pcall(fn, ...)
  return ok and ("got " .. type(v)) or ("refused: " .. tostring(v))
end

local handlers = {
  message = function(ws, field)
    local index = getmetatable(ws).__index
    ws:send(("nil=%s|zero=%s|table=%s|self=%s"):format(try(index, nil, field),
      try(index, 0, field), try(index, {}, field), try(index, ws, field)))
  end,
}

function app.upgrade(req)
  if req.path == "/mm" then return sy.accept("websocket", handlers) end
  return sy.ignore()
end

local http = {
  ["/tcp-gc-nil"] = function()
    return try(getmetatable(sy.tcp()).__gc, nil)
  end,
  ["/tcp-gc-waiting"] = function(req)
    local port = tonumber(req.target:match("[?&]port=(%d+)"))
    local s = sy.tcp()
    s:settimeout(10)
    local ok, err = s:connect("127.0.0.1", port)
    if not ok then return "connect failed: " .. tostring(err) end
    local gc = getmetatable(s).__gc
    sy.after(0.05, function() gc(s) end)
    local line, rerr = s:receive("*l")
    return ("receive: %s %s"):format(tostring(line), tostring(rerr))
  end,
}

function app.request(req, res)
  local h = http[req.path]
  if h then
    res:send(200, h(req) .. "\n")
  else
    res:send(200, "fine\n")
  end
end

return app
