-- spec/apps/raw_events.lua: fixture for spec/integration/raw_idle_spec.lua and
-- spec/integration/raw_halfclose_spec.lua. Raw tokens:
--   idle/1      echo, accept option idle_timeout = 1 (s)
--   idlelive/1  echo, idle_timeout = 3
--   idleoff/1   echo, idle_timeout = 0 (none)
--   badidle/1   idle_timeout = "soon": an app error (500)
--   half/1      counts bytes; eof(conn) writes "got N bytes\n" and closes
--   halflater/1 eof(conn) answers 0.2 s later from a timer ("late N\n"), then closes
--   noeof/1     echo without an eof handler (the peer's EOF closes, as before)
--   shut/1      open writes "hello\n" and calls conn:shutdown(); data is counted in /stats
--               (shut_got), the result of a write after the shutdown too (shut_write)
--   stop/1      shutdown(conn) at server stop writes "bye\n" and closes
--   linger/1    echo; shutdown(conn) writes "stopping\n" and leaves the connection open
--   abrupt/1    echo (open and close counted); WebSocket /abrupt likewise (as wsabrupt)
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

local function add(conn, bytes) conn.data.n = (conn.data.n or 0) + #bytes end

local raw = {
  idle = { counted("idle", { data = echo }), { idle_timeout = 1 } },
  idlelive = { counted("idlelive", { data = echo }), { idle_timeout = 3 } },
  idleoff = { counted("idleoff", { data = echo }), { idle_timeout = 0 } },
  badidle = { counted("badidle", { data = echo }), { idle_timeout = "soon" } },
  half = { counted("half", {
    data = add,
    eof = function(conn)
      conn:write(("got %d bytes\n"):format(conn.data.n or 0))
      conn:close()
    end,
  }) },
  halflater = { counted("halflater", {
    data = add,
    eof = function(conn)
      sy.after(0.2, function()
        stats.halflater_write = tostring(conn:write(("late %d\n"):format(conn.data.n or 0)))
        conn:close()
      end)
    end,
  }) },
  noeof = { counted("noeof", { data = echo }) },
  shut = { counted("shut", {
    open = function(conn)
      conn:write("hello\n")
      conn:shutdown()
      local ok, err = conn:write("more\n")
      stats.shut_write = tostring(ok) .. " " .. tostring(err)
    end,
    data = function(conn, bytes) stats.shut_got = (stats.shut_got or "") .. bytes end,
    eof = function(conn) end,
  }) },
  stop = { counted("stop", {
    data = echo,
    shutdown = function(conn)
      bump("shutdowns_stop")
      conn:write("bye\n")
      conn:close()
    end,
  }) },
  abrupt = { counted("abrupt", { data = echo }) },
  linger = { counted("linger", {
    data = echo,
    shutdown = function(conn) conn:write("stopping\n") end,
  }) },
}

local ws_abrupt = counted("wsabrupt", {})

function app.upgrade(req)
  if req:offers("websocket") and req.path == "/abrupt" then
    return sy.accept("websocket", ws_abrupt)
  end
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
