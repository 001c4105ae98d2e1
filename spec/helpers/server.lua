-- spec/helpers/server.lua: start the real switchyard binary and talk to it over loopback.
--
-- Every wait here is bounded (default 5 s) so that a broken server fails a test instead of
-- hanging it. Only the PIDs started here are ever signalled.
--
--   local H = require "helpers.server"
--   local srv = H.start("spec/apps/basic.lua")        -- --listen 127.0.0.1:0
--   local c = H.connect(srv.port)
--   c:send(H.get("/"))
--   local res = c:read_response()                     -- res.status, res.headers, res.body
--   c:close()
--   assert.are.equal(0, srv:stop())                   -- SIGTERM, wait, exit code
local socket = require "socket"

local M = {}

M.TIMEOUT = 5        -- seconds: bound for every single wait
M.STOP_TIMEOUT = 8   -- seconds: SIGTERM grace (the server may wait 5 s for WebSocket peers)

function M.bin()
  local b = os.getenv("SWITCHYARD_BIN")
  assert(b and b ~= "", "SWITCHYARD_BIN is not set (path to the built switchyard binary)")
  return b
end

function M.shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- A fresh temporary directory (removed by M.rmdir).
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/sy-spec.XXXXXX")
  local d = p:read("l")
  p:close()
  assert(d and d ~= "", "mktemp -d failed")
  return d
end

function M.rmdir(d)
  if d and d:match("^/tmp/sy%-spec%.") then os.execute("rm -rf " .. M.shquote(d)) end
end

-- Process state letter from /proc (nil when the process is gone).
local function proc_state(pid)
  local s = M.read_file("/proc/" .. pid .. "/stat")
  if not s or s == "" then return nil end
  return s:match(".*%) (%a)")
end

-- True while pid runs (a zombie, exited but not yet reaped by us, does not count).
function M.alive(pid)
  local st = proc_state(pid)
  return st ~= nil and st ~= "Z"
end

function M.sleep(sec) socket.sleep(sec) end
function M.now() return socket.gettime() end

-- Polls fn() every 20 ms until it returns a truthy value or timeout passes; returns that value.
function M.wait_for(fn, timeout)
  local deadline = socket.gettime() + (timeout or M.TIMEOUT)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.02)
  until socket.gettime() >= deadline
  return fn()
end

local Server = {}
Server.__index = Server

-- A server that is never stopped (a spec died before its teardown, or dropped the object) is
-- signalled by its guard's finalizer: at garbage collection, or when the Lua state closes
-- (busted exits with os.exit(code, true)). The guard is created after the popen handle, so it
-- is finalized first; the handle's own finalizer then reaps the process.
local function guard(srv)
  return setmetatable({}, { __gc = function()
    if srv.code == nil and M.alive(srv.pid) then
      os.execute("kill -TERM " .. srv.pid)
      local deadline = socket.gettime() + M.STOP_TIMEOUT
      while M.alive(srv.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
      if M.alive(srv.pid) then os.execute("kill -KILL " .. srv.pid) end
    end
    os.remove(srv.out_path)
    os.remove(srv.log_path)
  end })
end

-- Starts `switchyard [--listen L]... [args...] APP` with stdout and stderr to temp files.
-- opts.listen: list of HOST:PORT (default { "127.0.0.1:0" }); opts.args: extra arguments.
-- opts.expect_lines: number of `listening on` lines to wait for (default #listen).
-- Returns the server (srv.port, srv.ports, srv.urls, srv.pid) or nil, message, server.
function M.start(app, opts)
  opts = opts or {}
  local bin = M.bin()
  local listen = opts.listen or { "127.0.0.1:0" }
  local out, log = os.tmpname(), os.tmpname()
  local argv = {}
  for _, l in ipairs(listen) do
    argv[#argv + 1] = "--listen"
    argv[#argv + 1] = l
  end
  for _, a in ipairs(opts.args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = app
  local quoted = {}
  for i, a in ipairs(argv) do quoted[i] = M.shquote(a) end
  -- The popen child execs an sh that prints its PID and execs the server: the server is our own
  -- child, so its PID stays reserved (zombie) until srv:stop() reaps it.
  local script = 'echo $$; out=$1; log=$2; shift 2; exec "$SWITCHYARD_BIN" "$@" >"$out" 2>"$log"'
  local cmd = "exec sh -c " .. M.shquote(script) .. " sh " .. M.shquote(out) .. " "
              .. M.shquote(log) .. " " .. table.concat(quoted, " ")
  local proc = assert(io.popen(cmd, "r"))
  local pidline = proc:read("l")
  local pid = tonumber(pidline)
  assert(pid, "could not read the server PID (got " .. tostring(pidline) .. ")")
  local srv = setmetatable({ pid = pid, proc = proc, out_path = out, log_path = log, bin = bin,
                             app = app, ports = {}, urls = {} }, Server)
  srv.guard = guard(srv)
  local want = opts.expect_lines or #listen
  local deadline = socket.gettime() + M.TIMEOUT
  while true do
    local text = M.read_file(out) or ""
    local urls, ports = {}, {}
    for line in text:gmatch("[^\n]*\n") do
      local url = line:match("^listening on (https?://[^\r\n]+)\r?\n$")
      if url then
        urls[#urls + 1] = url
        ports[#ports + 1] = tonumber(url:match(":(%d+)$"))
      end
    end
    if #urls >= want then
      srv.urls, srv.ports, srv.port = urls, ports, ports[1]
      break
    end
    if not M.alive(pid) then
      local code = srv:stop()
      return nil, "server exited (" .. tostring(code) .. ") before listening; stdout: "
                  .. text .. " stderr: " .. (srv:log() or ""), srv
    end
    if socket.gettime() >= deadline then
      srv:stop()
      return nil, "no `listening on` line within " .. M.TIMEOUT .. " s; stdout: " .. text
                  .. " stderr: " .. (srv:log() or ""), srv
    end
    socket.sleep(0.02)
  end
  return srv
end

-- Like M.start but raises on failure.
function M.must_start(app, opts)
  local srv, err = M.start(app, opts)
  assert(srv, err)
  return srv
end

function Server:log() return M.read_file(self.log_path) or "" end
function Server:stdout() return M.read_file(self.out_path) or "" end
function Server:alive() return self.code == nil and M.alive(self.pid) end

-- Sends sig (default TERM), waits up to M.STOP_TIMEOUT, then KILLs. Returns the exit code
-- (number), "signal N" when killed by a signal, or "timeout" when it had to be killed.
-- Idempotent: later calls return the first result.
function Server:stop(sig)
  if self.code ~= nil then return self.code end
  if M.alive(self.pid) then os.execute("kill -" .. (sig or "TERM") .. " " .. self.pid) end
  local deadline = socket.gettime() + M.STOP_TIMEOUT
  while M.alive(self.pid) and socket.gettime() < deadline do socket.sleep(0.02) end
  local timed_out = false
  if M.alive(self.pid) then
    os.execute("kill -KILL " .. self.pid)
    timed_out = true
  end
  local _, how, code = self.proc:close()
  if timed_out then
    self.code = "timeout"
  elseif how == "exit" then
    self.code = code
  else
    self.code = "signal " .. tostring(code)
  end
  return self.code
end

-- Removes the temp files (call after the last :log()).
function Server:cleanup()
  self:stop()
  os.remove(self.out_path)
  os.remove(self.log_path)
end

-- Called inside a describe block: starts `app` (opts as for M.start) in that block's lazy_setup
-- and, in its lazy_teardown, stops it, removes its temp files and asserts it exited 0. Returns
-- the server as a proxy whose fields and methods are those of the running server (srv.port,
-- srv:log(), srv:alive(), ...); touching it before the setup ran raises.
--
--   describe("HTTP/1.1", function()
--     local srv = H.serve("spec/apps/basic.lua")
--     it("answers", function() H.must_roundtrip(srv.port, H.get("/")) end)
--   end)
function M.serve(app, opts)
  local busted = require "busted"
  local luassert = require "luassert"
  local cur
  local function running()
    return assert(cur, "server for " .. app .. " is not running (use it inside its describe)")
  end
  busted.lazy_setup(function() cur = M.must_start(app, opts) end)
  busted.lazy_teardown(function()
    if cur then
      local code = cur:stop()
      cur:cleanup()
      luassert.are.equal(0, code)
    end
  end)
  return setmetatable({}, {
    __index = function(_, k) return running()[k] end,
    __newindex = function(_, k, v) running()[k] = v end,
  })
end

-- Runs a command line to completion (bounded by `timeout`), returns code, stdout, stderr.
function M.run(args, timeout)
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = M.shquote(a) end
  local err = os.tmpname()
  local p = io.popen("timeout -k 2 " .. (timeout or 10) .. " " .. table.concat(quoted, " ")
                     .. " 2>" .. M.shquote(err))
  local stdout = p:read("a")
  local _, how, code = p:close()
  local stderr = M.read_file(err) or ""
  os.remove(err)
  if how ~= "exit" then code = "signal " .. tostring(code) end
  return code, stdout, stderr
end

------------------------------------------------------------------------------------------------
-- Client connections

local Conn = {}
Conn.__index = Conn

-- Every connection opened here, until M.close_all() (busted keeps only one `finally` per test,
-- so specs close their connections with after_each(H.close_all)).
local open_conns = {}

function M.close_all()
  for i = #open_conns, 1, -1 do
    open_conns[i].sock:close()
    open_conns[i] = nil
  end
end

-- Connects to 127.0.0.1:port. Returns a Conn or nil, err.
function M.connect(port, host)
  local s = assert(socket.tcp())
  s:settimeout(M.TIMEOUT)
  local ok, err = s:connect(host or "127.0.0.1", port)
  if not ok then
    s:close()
    return nil, err
  end
  local c = setmetatable({ sock = s }, Conn)
  open_conns[#open_conns + 1] = c
  return c
end

function M.must_connect(port)
  local c, err = M.connect(port)
  assert(c, "connect to 127.0.0.1:" .. tostring(port) .. " failed: " .. tostring(err))
  return c
end

function Conn:close() self.sock:close() end

-- Half-close: no more bytes from us (the peer reads EOF).
function Conn:shutdown_write() self.sock:shutdown("send") end

function Conn:send(data)
  self.sock:settimeout(M.TIMEOUT)
  local i, err, last = self.sock:send(data)
  if not i then return nil, err, last end
  return true
end

local function closed_err(err)
  return err == "closed" or (err and err:find("reset")) ~= nil
end

-- One line (LF-terminated, CR dropped), or nil, err ("closed"/"timeout"), partial.
function Conn:line(timeout)
  self.sock:settimeout(timeout or M.TIMEOUT)
  return self.sock:receive("*l")
end

-- Exactly n bytes, or nil, err, partial.
function Conn:read_n(n, timeout)
  if n == 0 then return "" end
  self.sock:settimeout(timeout or M.TIMEOUT)
  return self.sock:receive(n)
end

-- Reads until `marker` (plain) appears; returns everything read so far (including the marker),
-- or nil, err, partial.
function Conn:read_until(marker, timeout)
  local deadline = socket.gettime() + (timeout or M.TIMEOUT)
  local parts, tail = {}, ""
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return nil, "timeout", table.concat(parts) end
    self.sock:settimeout(math.min(left, 0.05))
    local data, err, partial = self.sock:receive(65536)
    local got = data or partial or ""
    if #got > 0 then
      parts[#parts + 1] = got
      local window = tail .. got
      if window:find(marker, 1, true) then return table.concat(parts) end
      local keep = #marker - 1
      tail = keep > 0 and window:sub(-keep) or ""
    end
    if err and err ~= "timeout" then return nil, err, table.concat(parts) end
  end
end

-- Everything until the peer closes (or timeout): returns data, "closed" or data, "timeout".
function Conn:read_all(timeout)
  local deadline = socket.gettime() + (timeout or M.TIMEOUT)
  local parts = {}
  while true do
    local left = deadline - socket.gettime()
    if left <= 0 then return table.concat(parts), "timeout" end
    self.sock:settimeout(math.min(left, 0.05))
    local data, err, partial = self.sock:receive(65536)
    local got = data or partial or ""
    if #got > 0 then parts[#parts + 1] = got end
    if err and err ~= "timeout" then
      return table.concat(parts), closed_err(err) and "closed" or err
    end
  end
end

-- Whatever arrives within `timeout` seconds (default 0.3), without waiting for more.
function Conn:read_available(timeout)
  local data = self:read_all(timeout or 0.3)
  return data
end

-- True when the peer closes within timeout with no further bytes; else false, what-we-saw.
function Conn:expect_closed(timeout)
  local data, how = self:read_all(timeout or M.TIMEOUT)
  if how == "closed" and data == "" then return true end
  return false, ("got %q then %s"):format(data, how)
end

-- Reads one HTTP response. opts.head: a response to HEAD (no body).
-- Returns { version=, status=, reason=, headers = { lower-name = value (repeats joined ", ") },
-- count = { lower-name = n }, list = { {name, value}... }, body=, raw_head= }
-- or nil, err, partial.
function Conn:read_response(opts)
  opts = opts or {}
  local deadline = socket.gettime() + (opts.timeout or M.TIMEOUT)
  local function left() return math.max(0.001, deadline - socket.gettime()) end
  local status_line, err, partial = self:line(left())
  if not status_line then return nil, "no status line: " .. tostring(err), partial end
  local version, status, reason = status_line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
  if not version then return nil, "bad status line: " .. status_line end
  local res = { version = version, status = tonumber(status), reason = reason, headers = {},
                count = {}, list = {}, status_line = status_line }
  local raw = { status_line }
  while true do
    local line, e2, p2 = self:line(left())
    if not line then return nil, "head cut: " .. tostring(e2), table.concat(raw, "\n") .. (p2 or "") end
    if line == "" then break end
    raw[#raw + 1] = line
    local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
    if not name then return nil, "bad header line: " .. line end
    local k = name:lower()
    res.list[#res.list + 1] = { name, value }
    res.count[k] = (res.count[k] or 0) + 1
    res.headers[k] = res.headers[k] and (res.headers[k] .. ", " .. value) or value
  end
  res.raw_head = table.concat(raw, "\r\n")
  local st = res.status
  if opts.head or (st >= 100 and st < 200) or st == 204 or st == 304 then
    res.body = ""
  elseif res.headers["transfer-encoding"] then
    local body = {}
    while true do
      local size_line, e3 = self:line(left())
      if not size_line then return nil, "chunk size: " .. tostring(e3) end
      local size = tonumber(size_line:match("^%x+"), 16)
      if not size then return nil, "bad chunk size line: " .. size_line end
      if size == 0 then
        repeat
          local tl = self:line(left())
        until tl == nil or tl == ""
        break
      end
      local data, e4 = self:read_n(size, left())
      if not data then return nil, "chunk data: " .. tostring(e4) end
      body[#body + 1] = data
      self:line(left())
    end
    res.body = table.concat(body)
  elseif res.headers["content-length"] then
    local n = tonumber(res.headers["content-length"])
    if not n then return nil, "bad content-length: " .. res.headers["content-length"] end
    local data, e5, p5 = self:read_n(n, left())
    if not data then return nil, "body cut: " .. tostring(e5), p5 end
    res.body = data
  else
    local data, how = self:read_all(left())
    if how ~= "closed" then return nil, "body without length did not end: " .. how end
    res.body = data
  end
  return res
end

function Conn:must_response(opts)
  local res, err, partial = self:read_response(opts)
  assert(res, "no response: " .. tostring(err) .. (partial and (" (partial " .. ("%q"):format(partial) .. ")") or ""))
  return res
end

------------------------------------------------------------------------------------------------
-- Request builders and one-shot helpers

-- Builds a raw request. headers: list of "Name: value" strings (order kept); Host is added
-- unless opts.no_host or a Host line is given. body: appended as is (set Content-Length yourself
-- or use opts.cl = true).
function M.request(method, target, headers, body, opts)
  opts = opts or {}
  local lines = { ("%s %s HTTP/%s"):format(method, target, opts.version or "1.1") }
  local has_host = false
  for _, h in ipairs(headers or {}) do
    if h:lower():match("^host:") then has_host = true end
  end
  if not has_host and not opts.no_host then lines[#lines + 1] = "Host: 127.0.0.1" end
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  if opts.cl and body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end

function M.get(target, headers) return M.request("GET", target, headers) end

-- Opens a connection, sends raw, reads one response, closes. Returns res or nil, err.
function M.roundtrip(port, raw, opts)
  local c, err = M.connect(port)
  if not c then return nil, err end
  local ok, e2 = c:send(raw)
  if not ok then
    c:close()
    return nil, "send: " .. tostring(e2)
  end
  local res, e3, partial = c:read_response(opts)
  c:close()
  return res, e3, partial
end

function M.must_roundtrip(port, raw, opts)
  local res, err, partial = M.roundtrip(port, raw, opts)
  assert(res, "no response: " .. tostring(err) .. (partial and (" (partial " .. ("%q"):format(partial) .. ")") or ""))
  return res
end

-- Parses "key=value" lines (as the fixture apps print them) into a table.
function M.kv(body)
  local t = {}
  for line in (body or ""):gmatch("[^\n]+") do
    local k, v = line:match("^(.-)=(.*)$")
    if k then t[k] = v end
  end
  return t
end

-- The IMF-fixdate form of RFC 9110 5.6.7: "Sun, 06 Nov 1994 08:49:37 GMT".
function M.is_http_date(s)
  return type(s) == "string"
         and s:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$") ~= nil
end

-- Asserts the framing every response must have: Date, and Content-Length unless 1xx/204/304.
-- Returns true or false, why.
function M.std_headers(res)
  if not M.is_http_date(res.headers["date"]) then
    return false, "Date missing or malformed: " .. tostring(res.headers["date"])
  end
  local st = res.status
  local no_cl = (st >= 100 and st < 200) or st == 204 or st == 304
  if no_cl then
    if res.headers["content-length"] then
      return false, "Content-Length on a " .. st .. " response"
    end
  else
    if res.count["content-length"] ~= 1 or not res.headers["content-length"]:match("^%d+$") then
      return false, "Content-Length missing or malformed: " .. tostring(res.headers["content-length"])
    end
  end
  return true
end

-- Sends an upgrade request for token and asserts the 101; returns the connection.
function M.must_upgrade(port, token)
  local c = M.must_connect(port)
  c:send(M.request("GET", "/", { "Upgrade: " .. token, "Connection: Upgrade" }))
  local res = c:must_response()
  require("luassert").are.equal(101, res.status, "upgrade to " .. token .. " refused")
  return c
end

-- The app's GET /stats ("key value" lines) as a table of strings; M.stat reads one as a
-- number (a missing one reads 0).
function M.stats(port) return M.kv(M.must_roundtrip(port, M.get("/stats")).body) end
function M.stat(port, key) return tonumber(M.stats(port)[key]) or 0 end

return M
