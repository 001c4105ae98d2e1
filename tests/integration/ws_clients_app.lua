-- tests/integration/ws_clients_app.lua: fixture app for the real-client WebSocket tests
-- (test_ws_clients.py with Python websockets, test_ws_node.sh with Node ws).
--
-- WebSocket paths:
--   /echo                   echo text and binary (16 MiB messages, 300000 fragments); the
--                           close handler records the peer's code and reason for /last-close
--   /info                   any message is answered "path=P subprotocol=S" (S "none" when none
--                           was chosen)
--   /close?code=N&reason=R  the first message is answered with ws:close(N, R)
--   /keepalive              ping_interval 0.2 s: the app's pong handler sends "pong:DATA", its
--                           ping handler sends "ping:DATA"
-- Every WebSocket path picks the subprotocol by the server's preference: "v2.switchyard", then
-- "v1.switchyard", among those the client offered; none otherwise.
-- HTTP: GET /last-close answers "code=N reason=R" of the last /echo close (or "none").
local sy = require "switchyard"

local MIB = 1024 * 1024
local PREFERENCE = { "v2.switchyard", "v1.switchyard" }

local app = {}
local last_close = "none"

local function query(req, name)
  for k, v in (req.query or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
  return nil
end

local function choose_subprotocol(req)
  local offered = {}
  for p in (req.headers["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do
    offered[p] = true
  end
  for _, p in ipairs(PREFERENCE) do
    if offered[p] then return p end
  end
  return nil
end

local echo = {
  message = function(ws, data, binary) ws:send(data, binary) end,
  close = function(ws, code, reason) last_close = ("code=%d reason=%s"):format(code, reason) end,
}

local info = {
  message = function(ws)
    ws:send(("path=%s subprotocol=%s"):format(ws.path, ws.subprotocol or "none"))
  end,
}

local keepalive = {
  pong = function(ws, data) ws:send("pong:" .. data) end,
  ping = function(ws, data) ws:send("ping:" .. data) end,
}

function app.upgrade(req)
  if not req:offers("websocket") then return sy.ignore() end
  local opts = { subprotocol = choose_subprotocol(req) }
  if req.path == "/echo" then
    opts.max_message_size = 16 * MIB
    opts.max_fragments = 300000
    return sy.accept("websocket", echo, opts)
  elseif req.path == "/info" then
    return sy.accept("websocket", info, opts)
  elseif req.path == "/close" then
    local code = tonumber(query(req, "code")) or 1000
    local reason = query(req, "reason") or ""
    return sy.accept("websocket", { message = function(ws) ws:close(code, reason) end }, opts)
  elseif req.path == "/keepalive" then
    opts.ping_interval = 0.2
    opts.idle_timeout = 10
    return sy.accept("websocket", keepalive, opts)
  end
  return sy.reject(404, "no such WebSocket path\n")
end

function app.request(req, res)
  if req.path == "/last-close" then
    res:send(200, last_close, { ["content-type"] = "text/plain" })
  else
    res:send(404, "not found\n")
  end
end

return app
