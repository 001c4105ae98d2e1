-- tests/integration/gc_pacing_app.lua: counts the Lua collections that run while 16 KiB
-- messages are echoed (fixture of test_gc_pacing.py). A young table kept only by a weak
-- table is cleared by every collection, minor or major: a cleared slot is one collection.
local sy = require "switchyard"

local probe = setmetatable({}, { __mode = "v" })
local collections = 0

local handlers = {
  message = function(ws, data, binary)
    if probe[1] == nil then
      collections = collections + 1
      probe[1] = {}
    end
    if data == "count" then
      ws:send(tostring(collections))
    elseif data == "reset" then
      collections = 0
      probe[1] = {}
      ws:send("ok")
    else
      ws:send(data, binary)
    end
  end,
}

return {
  upgrade = function(req)
    if req:offers("websocket") then
      return sy.accept("websocket", handlers, { max_message_size = 1024 * 1024 })
    end
  end,
}
