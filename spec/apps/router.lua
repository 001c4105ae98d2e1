-- spec/apps/router.lua: an app routed by switchyard.router, answering JSON through
-- switchyard.json (so the server's Lua state must find lua-cjson), for
-- spec/integration/router_spec.lua.
local sy = require "switchyard"
local router = require "switchyard.router"
local http = require "switchyard.http"
local json = require "switchyard.json"
local framing = require "switchyard.framing"

local r = router.new()
local JSON = { ["content-type"] = "application/json" }

r:get("/rooms/:id", function(req, res, params)
  res:send(200, json.encode({ room = params.id, query = http.parse_query(req.query) }), JSON)
end)
r:get("/rooms/new", function(_, res) res:send(200, json.encode({ new = true }), JSON) end)
r:post("/rooms/:id", function(req, res, params)
  local form = http.parse_form(req) or {}
  res:send(201, json.encode({ room = params.id, form = form }), JSON)
end)
r:get("/files/*path", function(_, res, params) res:send(200, params.path) end)

r:get("/chat", function(_, res) res:send(200, "the chat page\n") end)
r:upgrade("/chat/:room", "websocket", function(_, params)
  return sy.accept("websocket", {
    open = function(ws) ws:send("joined " .. ws.data.room) end,
    message = function(ws, text) ws:send(ws.data.room .. ": " .. text) end,
  }, { data = { room = params.room } })
end)
r:upgrade("/lines", "lines/1", function()
  return sy.accept("lines/1", {
    open = function(conn) conn.data.f = framing.lines({ max = 16 }) end,
    data = function(conn, bytes)
      local msgs, err = conn.data.f:feed(bytes)
      for _, m in ipairs(msgs) do conn:write(conn.data.f.encode(m:upper())) end
      if err then
        conn:write("ERR " .. err .. "\n")
        conn:close()
      end
    end,
  })
end)

return { request = r:request_handler(), upgrade = r:upgrade_handler() }
