-- spec/apps/ws_face.lua: fixture for spec/integration/ws_face_spec.lua. A WebSocket handle is
-- a table (its face) whose state the core keeps while the face lives.
--   WebSocket /keep: the app keeps every face in `kept`; each message is echoed.
--   WebSocket /plain: echo; the app keeps nothing.
--   GET /count: after two full collections, "faces=<n> states=<n> alive=<n> weak=<n>": faces
--     and states anchored in the registry (a state for each open connection), faces not yet
--     collected, and states kept by their face through a weak-keyed table of the core's
--     (closed faces only).
--   GET /kept: for every kept face, "<path>,<data.n>,<what send answers>,<tostring closed?>".
--   GET /drop: the app lets go of the kept faces.
--   WebSocket /nap: echo once a second /nap message came too (both handlers wait at once, so the
--     pool has two tasks).
--   WebSocket /self: the handle refers to itself (ws.me, ws.data.owner, a closure in ws.reply).
--   WebSocket /upvalue: a handler set per connection whose closures hold the handle.
--   WebSocket /fail-open: open sends past max_backpressure (1024), so the connection fails
--     with 1008 inside the handler, which then drops ws and collects: the handle must outlive
--     the handler (AddressSanitizer saw the state freed under it).
--   GET /zombies: after one full collection, every face still a key of a weak-keyed table
--     (a face with a finalizer would stay there until the next collection) as
--     "<what send answers>,<path>,<tostring closed?>" (a raised error instead if any).
local sy = require "switchyard"

local kept = {}
local alive = setmetatable({}, { __mode = "k" })
local sessions = setmetatable({}, { __mode = "k" })
local opened = 0
local napping = 0

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

local self_ref = {
  open = function(ws)
    alive[ws] = true
    sessions[ws] = true
    ws.me = ws
    ws.data.owner = ws
    ws.reply = function(m) return ws:send(m) end
  end,
  message = function(ws, data) ws.reply(data) end,
}

local app = {}

function app.upgrade(req)
  if req.path == "/keep" then return sy.accept("websocket", keep) end
  if req.path == "/plain" then return sy.accept("websocket", plain) end
  if req.path == "/self" then return sy.accept("websocket", self_ref) end
  if req.path == "/nap" then
    return sy.accept("websocket", {
      message = function(ws, data)
        napping = napping + 1
        for _ = 1, 200 do -- until the other one waits too (at most 10 s)
          if napping >= 2 then break end
          sy.sleep(0.05)
        end
        ws:send(data)
      end,
    })
  end
  if req.path == "/fail-open" then
    return sy.accept("websocket", {
      open = function(ws)
        local big = string.rep("x", 1024 * 1024)
        -- Until a send finds more than max_backpressure queued: closed with 1008 there (the
        -- socket's own buffers take a few MiB first).
        for _ = 1, 64 do
          if ws:send(big, true) == nil then break end
        end
        ws, big = nil, nil -- luacheck: ignore
        collectgarbage()
        collectgarbage()
      end,
    }, { max_backpressure = 1024 })
  end
  if req.path == "/upvalue" then
    local me
    return sy.accept("websocket", {
      open = function(ws)
        me = ws
        alive[ws] = true
        sessions[ws] = true
      end,
      message = function(_, data) me:send(data) end,
    })
  end
  return sy.ignore()
end

local function name_of(v)
  local mt = (type(v) == "table" or type(v) == "userdata") and debug.getmetatable(v)
  return type(mt) == "table" and mt.__name, mt
end

local function count()
  collectgarbage()
  collectgarbage()
  local faces, states, n, weak = 0, 0, 0, 0
  for _, v in pairs(debug.getregistry()) do
    local name, mt = name_of(v)
    if name == "switchyard.WebSocket" then faces = faces + 1 end
    if name == "switchyard.WebSocket.state" then states = states + 1 end
    if type(v) == "table" and type(mt) == "table" and mt.__mode == "k" then
      for _, s in pairs(v) do
        if name_of(s) == "switchyard.WebSocket.state" then weak = weak + 1 end
      end
    end
  end
  for _ in pairs(alive) do n = n + 1 end
  return ("faces=%d states=%d alive=%d weak=%d"):format(faces, states, n, weak)
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
  elseif req.path == "/zombies" then
    collectgarbage()
    local out = {}
    for ws in pairs(sessions) do
      local ok, v = pcall(function()
        local sent, err = ws:send("late")
        return ("%s %s,%s,%s"):format(tostring(sent), tostring(err), ws.path,
          tostring(tostring(ws):find("closed", 1, true) ~= nil))
      end)
      out[#out + 1] = ok and v or ("raised: " .. tostring(v))
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
