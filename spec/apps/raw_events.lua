-- spec/apps/raw_events.lua: fixture for spec/integration/raw_idle_spec.lua. Raw tokens:
--   idle/1      echo, accept option idle_timeout = 1 (s)
--   idlelive/1  echo, idle_timeout = 3
--   idleoff/1   echo, idle_timeout = 0 (none)
--   badidle/1   idle_timeout = "soon": an app error (500)
-- app.request: /stats (opens_<name>, closes_<name>, eofs_<name> and the values above).
local sy = require "switchyard"

local app = {}
local stats = {}

local function bump(k) stats[k] = (stats[k] or 0) + 1 end

local function counted(name, h)
  local open, close, eof = h.open, h.close, h.eof
  h.open = function(conn)
    bump("opens_" .. name)
    if open then open(conn) end
  end
  h.close = function(conn)
    bump("closes_" .. name)
    if close then close(conn) end
  end
  if eof then
    h.eof = function(conn)
      bump("eofs_" .. name)
      eof(conn)
    end
  end
  return h
end

local function echo(conn, bytes) conn:write(bytes) end

local raw = {
  idle = { counted("idle", { data = echo }), { idle_timeout = 1 } },
  idlelive = { counted("idlelive", { data = echo }), { idle_timeout = 3 } },
  idleoff = { counted("idleoff", { data = echo }), { idle_timeout = 0 } },
  badidle = { counted("badidle", { data = echo }), { idle_timeout = "soon" } },
}

function app.upgrade(req)
  for _, o in ipairs(req.upgrades) do
    local r = raw[o.name:lower()]
    if r then
      return sy.accept(o.name .. (o.version and ("/" .. o.version) or ""), r[1], r[2])
    end
  end
  return sy.ignore()
end

function app.request(req, res)
  if req.path == "/stats" then
    local out = {}
    for k, v in pairs(stats) do out[#out + 1] = k .. "=" .. tostring(v) .. "\n" end
    res:send(200, table.concat(out))
  else
    res:send(200, "plain\n")
  end
end

return app
