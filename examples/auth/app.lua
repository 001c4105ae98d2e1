-- examples/auth/app.lua: a WebSocket that only opens for a known session. The upgrade hook
-- waits on Redis (switchyard.redis over sy.tcp) without holding up anyone else:
--   - the token comes from the query (?token=...) or the `session` cookie;
--   - a token found in Redis as `session:<token>` opens the WebSocket (the value is the user's
--     name, kept as ws.data.user); an unknown or missing token gets 401;
--   - Redis down or too slow: 503 and a log line naming the cause.
-- Every other request is answered at once: GET /health says "ok" while checks wait on Redis.
--
-- Run:  AUTH_REDIS=127.0.0.1:6379 switchyard --listen 127.0.0.1:8080 examples/auth/app.lua
--       redis-cli SET session:abc alice
--       then open ws://127.0.0.1:8080/ws?token=abc (e.g. python3 -m websockets ...)
local sy = require "switchyard"
local redis = require "switchyard.redis"

local REDIS_HOST, REDIS_PORT = (os.getenv("AUTH_REDIS") or "127.0.0.1:6379"):match("^(.*):(%d+)$")
REDIS_PORT = tonumber(REDIS_PORT)
local TIMEOUT = tonumber(os.getenv("AUTH_REDIS_TIMEOUT") or "2")

local function unescape(s)
  return (s:gsub("+", " "):gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The token of a request: ?token=... first, else the `session` cookie.
local function token_of(req)
  for k, v in (req.query or ""):gmatch("([^&=]+)=([^&]*)") do
    if unescape(k) == "token" then return unescape(v) end
  end
  for k, v in (req.headers.cookie or ""):gmatch("([^=;%s]+)=([^;]*)") do
    if k == "session" then return v end
  end
end

-- The user of a token: the name, false when unknown, or nil, err when Redis cannot say.
local function lookup(token)
  local r, err = redis.connect(REDIS_HOST, REDIS_PORT, { timeout = TIMEOUT })
  if not r then return nil, err end
  local user
  user, err = r:call("GET", "session:" .. token)
  r:close()
  if user == nil then return nil, err end
  return user ~= redis.null and user
end

local handlers = {
  open = function(ws)
    ws:send("hello " .. ws.data.user)
  end,
  message = function(ws, msg)
    ws:send(ws.data.user .. ": " .. msg)
  end,
}

local app = {}

function app.upgrade(req)
  if req.path ~= "/ws" or not req:offers("websocket") then return sy.reject(404) end
  local token = token_of(req)
  if not token or token == "" then return sy.reject(401, "no session\n") end
  local user, err = lookup(token)
  if user == nil then
    sy.log("warn", "auth: session store unavailable (" .. REDIS_HOST .. ":" .. REDIS_PORT
           .. "): " .. tostring(err))
    return sy.reject(503, "session store unavailable\n")
  end
  if not user then return sy.reject(401, "unknown session\n") end
  return sy.accept("websocket", handlers, { data = { user = user } })
end

function app.request(req, res)
  if req.path == "/health" then return res:send(200, "ok\n") end
  res:send(404, "not found\n")
end

return app
