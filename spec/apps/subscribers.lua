-- spec/apps/subscribers.lua: fixture for spec/integration/subscribers_spec.lua.
-- WebSocket on any path; text commands, each answered with one text message:
--   "sub T" / "unsub T"  ws:subscribe / ws:unsubscribe, answers "ok"
--   "count T"            sy.subscribers(T), answers the number
--   "close-count T"      starts this connection's closing handshake, then answers (before
--                        the close frame) with sy.subscribers(T) as it is now
--   "bad"                sy.subscribers() without a topic: answers the error
local sy = require "switchyard"

return {
  upgrade = function(req)
    return sy.accept("websocket", {
      message = function(ws, m)
        local cmd, t = m:match("^(%S+) ?(.*)$")
        if cmd == "sub" then
          ws:subscribe(t)
          ws:send("ok")
        elseif cmd == "unsub" then
          ws:unsubscribe(t)
          ws:send("ok")
        elseif cmd == "count" then
          ws:send(tostring(sy.subscribers(t)))
        elseif cmd == "close-count" then
          local before = sy.subscribers(t)
          ws:close(1000, "bye")
          sy.publish("report", before .. " " .. sy.subscribers(t))
        elseif cmd == "bad" then
          local ok, err = pcall(sy.subscribers)
          ws:send(tostring(ok) .. " " .. tostring(err))
        end
      end,
    })
  end,
}
