-- tests/integration/send_anchors_app.lua: strings sent with ws:send are queued by reference
-- and let go once written (fixture of test_send_anchors.py). "big" and "many" send strings
-- made now; "mem" answers the bytes the Lua heap holds after full collections.
local sy = require "switchyard"

local handlers = {
  message = function(ws, data)
    if data == "big" then
      ws:send(string.rep("b", 1024 * 1024))
    elseif data == "many" then
      for i = 1, 1000 do
        ws:send(string.rep(string.char(97 + i % 26), 1000) .. i)
      end
    elseif data == "mem" then
      collectgarbage("collect")
      collectgarbage("collect")
      ws:send(string.format("%d", math.floor(collectgarbage("count") * 1024)))
    else
      ws:send(data)
    end
  end,
}

return {
  upgrade = function(req)
    if req:offers("websocket") then
      return sy.accept("websocket", handlers)
    end
  end,
}
