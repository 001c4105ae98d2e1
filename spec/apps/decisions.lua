-- spec/apps/decisions.lua: fixture for spec/integration/decisions_spec.lua. app.upgrade makes
-- mistakes with its decisions, by path:
--   /edit-kind    d = sy.accept("websocket"); d.kind = nil     /edit-token   d.token = nil
--   /edit-status  d = sy.reject(403); d.status = 42            /reject-42    sy.reject(42)
--   /bad-return   returns 42                                   /bad-table    returns {}
--   /edit-proto   d = sy.upgrade_required("x"); d.protocols = nil
--   /data         accepts the offered token (raw) or websocket with options.data
-- app.request answers "fine" (the connection is still usable after a mistake).
local sy = require "switchyard"

local app = {}

local raw = {
  open = function(conn) conn:write("user=" .. tostring(conn.data.user) .. "\n") end,
  data = function(conn, bytes) conn:write(bytes) end,
}

local ws = {
  open = function(ws) ws:send("user=" .. tostring(ws.data.user)) end,
}

local function try(f)
  local ok, err = pcall(f)
  return ok, err
end

function app.upgrade(req)
  local p = req.path
  if p == "/edit-kind" then
    local d = sy.accept("websocket")
    d.kind = nil
    return d
  elseif p == "/edit-token" then
    local d = sy.accept("websocket")
    d.token = nil
    return d
  elseif p == "/edit-status" then
    local d = sy.reject(403)
    d.status = 42
    return d
  elseif p == "/edit-proto" then
    local d = sy.upgrade_required("x")
    d.protocols = nil
    return d
  elseif p == "/caught-edit" then
    -- An app that swallows the error still returns an intact decision.
    local d = sy.reject(403, "intact")
    try(function() d.status = 42 end)
    return d
  elseif p == "/reject-42" then
    return sy.reject(42)
  elseif p == "/bad-return" then
    return 42
  elseif p == "/bad-table" then
    return {}
  elseif p == "/data" then
    if req:offers("websocket") then
      return sy.accept("websocket", ws, { data = { user = "ann" } })
    end
    return sy.accept(req.upgrades[1].name, raw, { data = { user = "bob" } })
  end
  return nil
end

function app.request(req, res)
  if req.path == "/tostring" then
    local r, a = sy.reject(403), sy.accept("websocket")
    res:send(200, ("%s %s %d\n%s %s %s\n"):format(tostring(r), r.kind, r.status, tostring(a),
                                                   a.kind, a.token))
    return
  end
  res:send(200, "fine\n")
end

return app
