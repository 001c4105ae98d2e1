-- examples/echo.lua: a WebSocket echo server, the target of the conformance tests
-- (tests/integration/test_ws_conformance.py) and a handy peer for any WebSocket client.
--
-- Every WebSocket message, text or binary, is sent back as it came, on any path. Messages up
-- to 16 MiB are accepted, also when they arrive in 64-byte fragments (16 MiB / 64 = 262144
-- fragments, so the fragment limit is raised to 300000). Pings are answered by the core with
-- a pong carrying the same payload; a client's close code is echoed. Protocol errors close
-- the connection with the RFC 6455 code (1002 protocol, 1007 bad UTF-8, 1009 too big).
-- A client offering the subprotocol "echo" gets it. Plain requests get 426 naming websocket.
--
-- Run:   switchyard --listen 127.0.0.1:8080 examples/echo.lua
--        (--listen 127.0.0.1:0 picks a free port; the `listening on` line names it)
-- Try:   python3 -m websockets ws://127.0.0.1:8080/      (Debian: python3-websockets)
--        curl -i http://127.0.0.1:8080/                   # 426, Upgrade: websocket
-- Check: switchyard --check examples/echo.lua
local sy = require "switchyard"

local MIB = 1024 * 1024

local app = {}

local handlers = {
  message = function(ws, data, binary)
    ws:send(data, binary)
  end,
}

local function offered(req, name)
  local list = req.headers["sec-websocket-protocol"]
  if not list then return false end
  for p in list:gmatch("[^,%s]+") do
    if p == name then return true end
  end
  return false
end

function app.upgrade(req)
  if not req:offers("websocket") then return sy.ignore() end
  return sy.accept("websocket", handlers, {
    subprotocol = offered(req, "echo") and "echo" or nil,
    max_message_size = 16 * MIB,
    max_fragments = 300000,
  })
end

function app.request(req, res)
  res:upgrade_required("websocket", "this is a WebSocket echo server\n")
end

return app
