-- switchyard.redis: a Redis client (RESP2) for apps, over a socket that waits without blocking
-- the server (sy.tcp()). Commands, pipelining, AUTH/SELECT at connect; every failure is
-- `nil, err` (the connection's own, like "timeout" or "closed", or the server's error reply).
--
--   local redis = require "switchyard.redis"
--   local r, err = redis.connect("127.0.0.1", 6379, { timeout = 1, db = 0 })
--   if not r then return sy.reject(503) end
--   local user, err = r:call("GET", "session:" .. token)   -- redis.null when the key is absent
--   local res = r:pipeline({ { "INCR", "n" }, { "GET", "n" } })  -- { 1, "1" }
--   r:close()
--
-- Replies: a status ("OK") or bulk string is a Lua string, an integer a Lua integer, an array a
-- Lua table, Redis's nil (absent key, nil array) the unique value `redis.null`. An error reply
-- is `nil, "ERR ..."` from call; inside a pipeline's results it is `{ err = "ERR ..." }` (check
-- with redis.is_error), since one bad command does not spoil the others. A failure of the
-- connection itself (timeout, closed, a reply that is not RESP) closes the client: its later
-- calls answer `nil, "closed"`.
local M = {}

M.null = setmetatable({}, { __tostring = function() return "redis.null" end,
                            __newindex = function() error("redis.null is read-only", 2) end })

function M.is_error(v)
  return type(v) == "table" and v ~= M.null and type(v.err) == "string"
end

local Client = {}
Client.__index = function(_, k)
  local m = Client[k]
  if m then return m end
  -- r:get(k), r:set(k, v), ...: any other method name is the command of that name.
  if type(k) == "string" and k:match("^%a[%w_]*$") then
    local cmd = k:upper()
    return function(self, ...) return self:call(cmd, ...) end
  end
end

local MAX_DEPTH = 16

local function encode(args, out)
  out[#out + 1] = "*" .. #args .. "\r\n"
  for i = 1, #args do
    local a = args[i]
    local t = type(a)
    if t == "number" then
      a = math.type(a) == "integer" and string.format("%d", a) or string.format("%.17g", a)
    elseif t ~= "string" then
      error("redis: argument " .. i .. " of " .. tostring(args[1]) .. " is a " .. t
            .. " (strings and numbers only)", 3)
    end
    out[#out + 1] = "$" .. #a .. "\r\n"
    out[#out + 1] = a
    out[#out + 1] = "\r\n"
  end
end

-- Reads one reply. Returns value; or nil, err_reply, false (a Redis error reply: the stream is
-- fine); or nil, err, true (the connection failed).
local function read_reply(sock, depth)
  local line, err = sock:receive("*l")
  if not line then return nil, err, true end
  local kind, rest = line:sub(1, 1), line:sub(2)
  if kind == "+" then
    return rest
  elseif kind == "-" then
    return nil, rest, false
  elseif kind == ":" then
    local n = math.tointeger(tonumber(rest))
    if not n then return nil, "bad integer reply", true end
    return n
  elseif kind == "$" then
    local n = math.tointeger(tonumber(rest))
    if not n or n < -1 then return nil, "bad bulk length", true end
    if n == -1 then return M.null end
    local data, e = sock:receive(n + 2)
    if not data then return nil, e, true end
    if data:sub(-2) ~= "\r\n" then return nil, "bad bulk string", true end
    return data:sub(1, n)
  elseif kind == "*" then
    local n = math.tointeger(tonumber(rest))
    if not n or n < -1 then return nil, "bad array length", true end
    if n == -1 then return M.null end
    if depth >= MAX_DEPTH then return nil, "reply nested too deep", true end
    local arr = {}
    for i = 1, n do
      local v, e, fatal = read_reply(sock, depth + 1)
      if v == nil then
        if fatal then return nil, e, true end
        v = { err = e }
      end
      arr[i] = v
    end
    return arr
  end
  return nil, "not a RESP reply: " .. line:sub(1, 40), true
end

local function fail(self, err)
  self:close()
  return nil, err
end

-- Sends one command; returns its reply, or nil and the error reply or connection failure.
function Client:call(...)
  if not self._sock then return nil, "closed" end
  local out = {}
  encode({ ... }, out)
  local ok, err = self._sock:send(table.concat(out))
  if not ok then return fail(self, err) end
  local v, e, fatal = read_reply(self._sock, 0)
  if v == nil then
    if fatal then return fail(self, e) end
    return nil, e
  end
  return v
end

-- Sends every command in one write and reads every reply. cmds: a list of argument lists.
-- Returns the list of replies (an error reply as { err = "..." }), or nil, err when the
-- connection failed.
function Client:pipeline(cmds)
  if not self._sock then return nil, "closed" end
  if type(cmds) ~= "table" then error("redis: pipeline takes a list of commands", 2) end
  local out = {}
  for i = 1, #cmds do
    if type(cmds[i]) ~= "table" or #cmds[i] == 0 then
      error("redis: pipeline command " .. i .. " is not a non-empty list", 2)
    end
    encode(cmds[i], out)
  end
  if #cmds == 0 then return {} end
  local ok, err = self._sock:send(table.concat(out))
  if not ok then return fail(self, err) end
  local res = {}
  for i = 1, #cmds do
    local v, e, fatal = read_reply(self._sock, 0)
    if v == nil then
      if fatal then return fail(self, e) end
      v = { err = e }
    end
    res[i] = v
  end
  return res
end

function Client:settimeout(seconds)
  if self._sock then self._sock:settimeout(seconds) end
  return true
end

function Client:close()
  local s = self._sock
  self._sock = nil
  if s then s:close() end
  return true
end

-- Connects. opts: timeout (seconds for each operation; default 5), password (AUTH; with
-- username for Redis 6 ACLs), db (SELECT), tls, sni, verify, ca (passed to connect), socket (a
-- function returning a fresh socket with LuaSocket's methods; default sy.tcp).
function M.connect(host, port, opts)
  opts = opts or {}
  local new = opts.socket
  if not new then
    local ok, sy = pcall(require, "switchyard")
    if not ok or type(sy.tcp) ~= "function" then
      error("redis: no socket: pass opts.socket or run inside switchyard (sy.tcp)", 2)
    end
    new = sy.tcp
  end
  local sock = new()
  local timeout = opts.timeout or 5
  sock:settimeout(timeout)
  local ok, err = sock:connect(host, port or 6379, {
    timeout = timeout, tls = opts.tls, sni = opts.sni, verify = opts.verify, ca = opts.ca })
  if not ok then
    sock:close()
    return nil, err
  end
  local self = setmetatable({ _sock = sock }, Client)
  if opts.password then
    local _, e
    if opts.username then
      _, e = self:call("AUTH", opts.username, opts.password)
    else
      _, e = self:call("AUTH", opts.password)
    end
    if e then self:close() return nil, e end
  end
  if opts.db and opts.db ~= 0 then
    local _, e = self:call("SELECT", opts.db)
    if e then self:close() return nil, e end
  end
  return self
end

return M
