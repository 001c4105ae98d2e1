-- spec/apps/upgrade.lua: fixture for spec/integration/upgrade_spec.lua.
-- app.upgrade records what it saw (req.upgrades, req:offers results); when it declines
-- (ignore/nil), the app.request that follows reports that record (otherwise
-- upgrade_called=no) and forgets it. Decision by path:
--   /ignore sy.ignore()     /nil nil          /tls-required sy.upgrade_required("TLS/1.3")
--   /reject sy.reject(403, "no")              /accept-other sy.accept("notoffered/1")
--   /raw    accept the offered "echo" token (any version) as a raw echo stream
--   /ws     accept websocket                  /ws-sub?proto=P accept websocket, subprotocol P
--   /upgrade-error  raises "boom-upgrade"     anything else: sy.ignore()
-- app.request: /stats counters; otherwise the record plus method and body.
local sy = require "switchyard"

local app = {}
local stats = { upgrade_calls = 0, ws_open = 0, raw_open = 0, raw_close = 0, ws_path = "" }
local last -- record of the last app.upgrade call, consumed by app.request

local function qparam(req, name)
  if not req.query then return nil end
  for k, v in req.query:gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
  return nil
end

local function token(o)
  if not o then return "nil" end
  return o.name .. (o.version and ("/" .. o.version) or "")
end

local function record(req)
  local names = {}
  for i, o in ipairs(req.upgrades or {}) do names[i] = token(o) end
  return table.concat({
    "upgrade_called=yes",
    "upgrade_path=" .. tostring(req.path),
    "upgrade_method=" .. tostring(req.method),
    "upgrades=" .. table.concat(names, ","),
    "offers_tls=" .. token(req:offers("tls")),
    "offers_TLS/1.2=" .. token(req:offers("TLS/1.2")),
    "offers_TLS/1.3=" .. token(req:offers("TLS/1.3")),
    "offers_FOO=" .. token(req:offers("FOO")),
    "offers_bar/1=" .. token(req:offers("bar/1")),
    "offers_h2=" .. token(req:offers("h2")),
    "offers_websocket=" .. token(req:offers("websocket")),
  }, "\n") .. "\n"
end

local echo = {
  open = function(conn) stats.raw_open = stats.raw_open + 1 end,
  data = function(conn, bytes) conn:write(bytes) end,
  close = function(conn) stats.raw_close = stats.raw_close + 1 end,
}

local ws_handlers = {
  open = function(ws)
    stats.ws_open = stats.ws_open + 1
    stats.ws_path = tostring(ws.path)
  end,
}

function app.upgrade(req)
  stats.upgrade_calls = stats.upgrade_calls + 1
  last = nil
  local rec = record(req)
  local p = req.path
  if p == "/ignore" then
    last = rec
    return sy.ignore()
  elseif p == "/nil" then
    last = rec
    return nil
  elseif p == "/tls-required" then
    return sy.upgrade_required("TLS/1.3")
  elseif p == "/reject" then
    return sy.reject(403, "no")
  elseif p == "/accept-other" then
    return sy.accept("notoffered/1", echo)
  elseif p == "/raw" then
    local o = req:offers("echo")
    if o then return sy.accept(token(o), echo) end
    last = rec
    return sy.ignore()
  elseif p == "/ws" then
    return sy.accept("websocket", ws_handlers)
  elseif p == "/ws-sub" then
    return sy.accept("websocket", ws_handlers, { subprotocol = qparam(req, "proto") })
  elseif p == "/upgrade-error" then
    error("boom-upgrade")
  end
  last = rec
  return sy.ignore()
end

function app.request(req, res)
  if req.path == "/stats" then
    res:send(200, ("upgrade_calls=%d\nws_open=%d\nws_path=%s\nraw_open=%d\nraw_close=%d\n"):format(
      stats.upgrade_calls, stats.ws_open, stats.ws_path, stats.raw_open, stats.raw_close))
    return
  end
  local rec = last or "upgrade_called=no\n"
  last = nil
  res:send(200, rec .. "method=" .. req.method .. "\npath=" .. req.path .. "\nbody="
                .. tostring(req.body) .. "\n", { ["content-type"] = "text/plain" })
end

return app
