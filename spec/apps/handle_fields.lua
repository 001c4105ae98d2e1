-- spec/apps/handle_fields.lua: fixture for spec/integration/handle_fields_spec.lua.
--   raw token fields/1: open sets conn.user; each data chunk answers
--     "user=<conn.user> seen=<n> <errors>\n"
--   WebSocket /fields: open sets ws.user; each message answers
--     "user=<ws.user> count=<n> send=<type(ws.send)> <face> <errors>"
--     <face>: "type=<type(ws)> own=<ws's own keys> back=<ws.send after ws.send = nil is the
--     method> mt=<what getmetatable, setmetatable and debug do with ws's metatable>"
-- <errors>: what assigning each of a few built-in names raised, "name:<message>|...", each
-- message with the file:line of the assignment.
local sy = require "switchyard"

local app = {}

local function write_errors(h, names)
  local out = {}
  for _, k in ipairs(names) do
    local ok, err = pcall(function() h[k] = 1 end)
    out[#out + 1] = k .. ":" .. (ok and "allowed" or tostring(err))
  end
  return table.concat(out, "|")
end

local raw_fields = {
  open = function(conn) conn.user = "alice" end,
  data = function(conn, bytes)
    conn.seen = (conn.seen or 0) + 1
    conn:write(("user=%s seen=%d %s\n"):format(tostring(conn.user), conn.seen,
      write_errors(conn, { "path", "write", "data", "remote_addr" })))
  end,
}

-- send is the handle's own field (a table lookup finds it): assigning it replaces it for that
-- handle, and nil brings the method back through the metatable.
local function face(ws)
  local own = {}
  for k in pairs(ws) do own[#own + 1] = tostring(k) end
  local method = ws.send
  ws.send = nil
  local back = ws.send == method
  ws.send = method
  local mt = getmetatable(ws)
  local dmt = debug.getmetatable(ws)
  local set_ok = pcall(setmetatable, ws, {})
  local dset_ok = pcall(debug.setmetatable, ws, {})
  return ("type=%s own=%s back=%s mt=%s,%s,%s,%s,%s"):format(type(ws), table.concat(own, ","),
    tostring(back), type(mt), tostring(rawget(mt, "__gc")), tostring(rawget(dmt, "__gc")),
    set_ok and "set" or "refused", dset_ok and "set" or "refused")
end

local ws_fields = {
  open = function(ws) ws.user = "bob" end,
  message = function(ws, data)
    ws.count = (ws.count or 0) + 1
    ws:send(("user=%s count=%d send=%s %s %s"):format(tostring(ws.user), ws.count, type(ws.send),
      face(ws), write_errors(ws, { "path", "ping", "data", "subprotocol" })))
  end,
}

function app.upgrade(req)
  if req:offers("websocket") and req.path == "/fields" then
    return sy.accept("websocket", ws_fields)
  end
  if req:offers("fields") then return sy.accept("fields/1", raw_fields) end
  return sy.ignore()
end

function app.request(req, res) res:send(200, "plain\n") end

return app
