-- spec/apps/jwt.lua: fixture for spec/integration/jwt_spec.lua, which copies it into a temp
-- directory next to keys.lua ({ secret =, rsa_pub =, ec_pub = }, made at spec time).
--   upgrade to "echo/1" with ?token=JWT[&key=hs|rs|es]: 101 when the token verifies (the conn
--     then answers each line with "sub=<claims.sub>"), else 401 with the reason as the body
--     and WWW-Authenticate: Bearer
--   GET /token?sub=NAME[&ttl=S]  an HS256 token made by jwt.sign inside the server
--   GET /preload                 "preloaded" when switchyard.crypto comes from package.preload
local sy = require "switchyard"
local jwt = require "switchyard.jwt"
local crypto = require "switchyard.crypto"
local keys = require "keys"

local KEY = { hs = keys.secret, rs = keys.rsa_pub, es = keys.ec_pub }

local function param(req, name)
  for k, v in (req.query or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
end

local app = {}

function app.upgrade(req)
  if not req:offers("echo/1") then return nil end
  local key = KEY[param(req, "key") or "hs"]
  local claims, why = jwt.verify(param(req, "token"), key, { audience = "chat" })
  if not claims then
    return sy.reject(401, why .. "\n", { ["WWW-Authenticate"] = 'Bearer error="invalid_token"' })
  end
  return sy.accept("echo/1", {
    data = function(conn, bytes)
      for _ in bytes:gmatch("[^\n]*\n") do conn:write("sub=" .. conn.data.sub .. "\n") end
    end,
  }, { data = { sub = claims.sub } })
end

function app.request(req, res)
  if req.path == "/token" then
    local ttl = tonumber(param(req, "ttl") or "60")
    res:send(200, jwt.sign({ sub = param(req, "sub"), aud = "chat", exp = os.time() + ttl },
                           keys.secret))
  elseif req.path == "/preload" then
    local from = package.preload["switchyard.crypto"] and "preloaded" or "searched"
    res:send(200, from .. " " .. crypto.base64url_encode(crypto.sha256("abc")))
  else
    res:send(404, "not found\n")
  end
end

return app
