-- tests/integration/topics_app.lua: topics across processes. A WebSocket on /ws?room=NAME
-- joins the room and gets "hello PID"; its text messages are commands:
--   pub TEXT     sy.publish(room, TEXT)             (every subscriber, the sender too)
--   wspub TEXT   ws:publish(room, TEXT)             (every other subscriber)
--   bin TEXT     sy.publish(room, TEXT, true)       (binary)
--   count        answers "count N": sy.subscribers(room), this process's subscribers
--   leave        ws:unsubscribe(room), answers "left"
--   stall PATH   creates PATH.on, then busy-waits (the loop does not turn) until PATH exists
--                (at most 120 s)
-- Connections queue up to 256 MiB before backpressure applies (the tests read large bursts).
-- Presence across processes: every 0.2 s each process publishes "here PID N" to each room it
-- has subscribers in (N local subscribers); a client sums the latest N of every PID.
local sy = require "switchyard"

local pid do
  local f = assert(io.open("/proc/self/stat"))
  pid = f:read("l"):match("^(%d+)")
  f:close()
end

local rooms = {} -- room -> true while this process has had subscribers there

sy.every(0.2, function()
  for room in pairs(rooms) do
    local n = sy.subscribers(room)
    sy.publish(room, "here " .. pid .. " " .. n)
    if n == 0 then rooms[room] = nil end
  end
end)

-- "stall" keeps the loop stopped on purpose: no time budget (and so no hard limit).
local app = { lua = { max_time = 0 } }

function app.upgrade(req)
  if not req:offers("websocket") then return nil end
  local room = req.query and req.query:match("room=([%w_%-]+)") or "room"
  return sy.accept("websocket", {
    open = function(ws)
      ws:subscribe(room)
      rooms[room] = true
      ws:send("hello " .. pid)
    end,
    message = function(ws, text, binary)
      local cmd, rest = text:match("^(%S+) ?(.*)$")
      if cmd == "pub" then
        sy.publish(room, rest)
      elseif cmd == "wspub" then
        ws:publish(room, rest)
      elseif cmd == "bin" then
        sy.publish(room, rest, true)
      elseif cmd == "count" then
        ws:send("count " .. sy.subscribers(room))
      elseif cmd == "stall" then
        assert(io.open(rest .. ".on", "w")):close()
        local give_up = os.time() + 120 -- never left stalled by a test that died
        while not io.open(rest) and os.time() < give_up do end
      elseif cmd == "leave" then
        ws:unsubscribe(room)
        ws:send("left")
      end
    end,
  }, { max_backpressure = 256 * 1024 * 1024 })
end

function app.request(req, res)
  res:send(200, pid .. "\n")
end

return app
