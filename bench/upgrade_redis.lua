-- bench/upgrade_redis.lua: the app of bench/upgrade_redis.sh. With BENCH_REDIS=host:port,
-- app.upgrade looks the session up in Redis (one connect + GET + close per upgrade, through
-- switchyard.redis over sy.tcp) before accepting; without it, it accepts at once.
local sy = require "switchyard"
local redis = require "switchyard.redis"

local target = os.getenv("BENCH_REDIS")
local host, port = (target or ""):match("^(.*):(%d+)$")
port = tonumber(port)

local handlers = { message = function(ws, msg) ws:send(msg) end }
local app = {}

function app.upgrade(req)
  if host then
    local r, err = redis.connect(host, port, { timeout = 5 })
    if not r then
      sy.log("warn", "bench: redis: " .. tostring(err))
      return sy.reject(503)
    end
    local user = r:call("GET", "session:bench")
    r:close()
    if type(user) ~= "string" then return sy.reject(401) end
  end
  return sy.accept("websocket", handlers)
end

return app
