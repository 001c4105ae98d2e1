-- spec/helpers/redis.lua: a real redis-server on a loopback port, started and stopped by the
-- spec. Only the PID started here is ever signalled; every wait is bounded.
--
--   local R = require "helpers.redis"
--   local rs = R.start({ "--requirepass", "pw" })   -- rs.port, rs.pid
--   ...
--   rs:stop()
local socket = require "socket"
local H = require "helpers.server"

local M = {}

local function free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

local function pinged(port, password)
  local c = socket.tcp()
  c:settimeout(1)
  if not c:connect("127.0.0.1", port) then
    c:close()
    return false
  end
  if password then c:send("AUTH " .. password .. "\r\n"); c:receive("*l") end
  c:send("PING\r\n")
  local line = c:receive("*l")
  c:close()
  return line == "+PONG"
end

local Redis = {}
Redis.__index = Redis

-- Starts redis-server with no persistence on a free port; extra: more arguments. Returns the
-- instance, or raises with redis-server's output.
function M.start(extra, port)
  local password
  for i, a in ipairs(extra or {}) do
    if a == "--requirepass" then password = extra[i + 1] end
  end
  for _ = 1, 5 do
    local p = port or free_port()
    local log = os.tmpname()
    local argv = { "--port", tostring(p), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                   "no", "--daemonize", "no", "--enable-debug-command", "local" }
    for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
    local q = {}
    for i, a in ipairs(argv) do q[i] = H.shquote(a) end
    local script = 'echo $$; log=$1; shift; exec redis-server "$@" >"$log" 2>&1'
    local proc = assert(io.popen("exec sh -c " .. H.shquote(script) .. " sh " .. H.shquote(log)
                                 .. " " .. table.concat(q, " "), "r"))
    local pid = tonumber(proc:read("l"))
    local r = setmetatable({ pid = pid, proc = proc, port = p, log_path = log,
                             password = password }, Redis)
    if H.wait_for(function() return not H.alive(pid) or pinged(p, password) end, 10)
       and H.alive(pid) then
      return r
    end
    local out = H.read_file(log) or ""
    r:stop()
    if port or not out:find("in use", 1, true) then
      error("redis-server did not start on port " .. p .. ": " .. out)
    end
  end
  error("redis-server: no free port after 5 tries")
end

function Redis:alive() return self.code == nil and H.alive(self.pid) end

-- SIGTERM (or sig), bounded wait, then SIGKILL; reaps the process.
function Redis:stop(sig)
  if self.code ~= nil then return self.code end
  if H.alive(self.pid) then os.execute("kill -" .. (sig or "TERM") .. " " .. self.pid) end
  if not H.wait_for(function() return not H.alive(self.pid) end, 10) then
    os.execute("kill -KILL " .. self.pid)
  end
  local _, how, code = self.proc:close()
  self.code = how == "exit" and code or ("signal " .. tostring(code))
  os.remove(self.log_path)
  return self.code
end

return M
