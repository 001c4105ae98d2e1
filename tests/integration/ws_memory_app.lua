-- tests/integration/ws_memory_app.lua: a small Lua memory bound and a large message bound, for
-- test_ws_memory_message.py: one message can be larger than the Lua state may hold.
local sy = require "switchyard"
return {
  lua = { max_memory = 4 * 1024 * 1024 },
  options = { max_message_size = 16 * 1024 * 1024 },
  request = function(req, res) res:send(200, "ok\n") end,
  upgrade = function(req)
    return sy.accept("websocket", { message = function(ws, data) ws:send(#data .. "") end })
  end,
}
