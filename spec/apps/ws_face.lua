-- spec/apps/ws_face.lua: fixture for spec/integration/ws_face_spec.lua. A WebSocket handle is
-- a table (its face) whose state the core keeps while the face lives.
--   WebSocket /keep: the app keeps every face in `kept`; each message is echoed.
--   WebSocket /plain: echo; the app keeps nothing.
--   GET /count: after two full collections, "faces=<n> states=<n> alive=<n>": faces and
--     states anchored in the registry, and faces (of /keep and /plain) not yet collected.
--   GET /kept: for every kept face, "<path>,<data.n>,<what send answers>,<tostring closed?>".
--   GET /drop: the app lets go of the kept faces.
local sy = require "switchyard"

local kept = {}
local alive = setmetatable({}, { __mode = "k" })
local opened = 0

local function echo(ws, data) ws:send(data) end

local keep = {
  open = function(ws)
    opened = opened + 1
    ws.data.n = opened
    kept[#kept + 1] = ws
    alive[ws] = true
  end,
  message = echo,
}

local plain = {
  open = function(ws) alive[ws] = true end,
  message = echo,
}

local app = {}

function app.upgrade(req)
  if req.path == "/keep" then return sy.accept("websocket", keep) end
  if req.path == "/plain" then return sy.accept("websocket", plain) end
  return sy.ignore()
end

local function count()
  collectgarbage()
  collectgarbage()
  local faces, states, n = 0, 0, 0
  for _, v in pairs(debug.getregistry()) do
    local mt = (type(v) == "table" or type(v) == "userdata") and debug.getmetatable(v)
    local name = type(mt) == "table" and mt.__name
    if name == "switchyard.WebSocket" then faces = faces + 1 end
    if name == "switchyard.WebSocket.state" then states = states + 1 end
  end
  for _ in pairs(alive) do n = n + 1 end
  return ("faces=%d states=%d alive=%d"):format(faces, states, n)
end

function app.request(req, res)
  if req.path == "/count" then
    res:send(200, count())
  elseif req.path == "/kept" then
    local out = {}
    for _, ws in ipairs(kept) do
      local ok, err = ws:send("late")
      out[#out + 1] = ("%s,%d,%s %s,%s"):format(ws.path, ws.data.n, tostring(ok), tostring(err),
        tostring(tostring(ws):find("closed", 1, true) ~= nil))
    end
    res:send(200, table.concat(out, ";"))
  elseif req.path == "/drop" then
    kept = {}
    res:send(200, "dropped")
  else
    res:send(200, "fine\n")
  end
end

return app
