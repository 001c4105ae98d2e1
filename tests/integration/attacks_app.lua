-- tests/integration/attacks_app.lua: fixture app for test_attacks.py (hostile and idle clients).
--
-- HTTP: header_timeout 2 s; every request is answered "ok".
-- WebSocket paths:
--   /frag      echo; max_fragments 1000
--   /noanswer  the first message is answered with ws:close(1000, "bye"); close_timeout 1 s
--   /idle      ping_interval 0.5 s, idle_timeout 1.5 s
--   /fanout    joins topic "all"; a message "go N" publishes N bytes to every member and then
--              answers "sent" to the sender
local sy = require "switchyard"

local OPTIONS = {
  ["/frag"] = { max_fragments = 1000 },
  ["/noanswer"] = { close_timeout = 1 },
  ["/idle"] = { ping_interval = 0.5, idle_timeout = 1.5 },
  ["/fanout"] = {},
}

local HANDLERS = {
  ["/frag"] = {
    message = function(ws, data, binary) ws:send(data, binary) end,
  },
  ["/noanswer"] = {
    message = function(ws) ws:close(1000, "bye") end,
  },
  ["/idle"] = {},
  ["/fanout"] = {
    open = function(ws) ws:subscribe("all") end,
    message = function(ws, data)
      local n = tonumber(data:match("^go (%d+)$"))
      if n then
        sy.publish("all", string.rep("m", n))
        ws:send("sent")
      end
    end,
  },
}

return {
  http = { header_timeout = 2 },
  upgrade = function(req)
    if req:offers("websocket") and HANDLERS[req.path] then
      return sy.accept("websocket", HANDLERS[req.path], OPTIONS[req.path])
    end
    return nil
  end,
  request = function(req, res) res:send(200, "ok\n") end,
}
