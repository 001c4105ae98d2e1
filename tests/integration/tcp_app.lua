-- tests/integration/tcp_app.lua: sy.tcp() driven by test_tcp_socket.py. GET /CASE?port=P&...
-- runs one case against the test's peer on 127.0.0.1:P and answers with what the socket
-- returned, as "a|b|c" (nil shown as "nil").
local sy = require "switchyard"

local load_error
do
  local ok, err = pcall(function() return sy.tcp():connect("127.0.0.1", 1) end)
  load_error = ok and "no error" or tostring(err)
end

local function q(req, k)
  return (req.query or ""):match("[?&]?" .. k .. "=([^&]*)")
end

local function show(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = tostring((select(i, ...))) end
  return table.concat(out, "|")
end

local cases = {}

function cases.lines(port)
  local s = sy.tcp()
  local ok, err = s:connect("127.0.0.1", port)
  if not ok then return show(ok, err) end
  assert(s:send("hello\n") == 6)
  local a = s:receive("*l")      -- "HELLO" (the peer upper-cases, CRLF ends the line)
  local b = s:receive(3)         -- 3 bytes
  local c = s:receive("*a")      -- the rest, until the peer closes
  local d, e = s:receive(1)
  s:close()
  return show(a, b, c, d, e)
end

function cases.name(port)
  local s = sy.tcp()
  local ok, err = s:connect("localhost", port, { timeout = 5 })
  if not ok then return show(ok, err) end
  s:send("x\n")
  local line = s:receive()
  s:close()
  return show(ok, line)
end

function cases.refused(port)
  return show(sy.tcp():connect("127.0.0.1", port))
end

function cases.timeout(port)
  local s = sy.tcp()
  assert(s:connect("127.0.0.1", port))
  s:settimeout(0.5)
  local r = { s:receive(100) }  -- the peer sends 2 bytes, then nothing
  s:close()
  return show(r[1], r[2], r[3])
end

function cases.partial(port)
  local s = sy.tcp()
  assert(s:connect("127.0.0.1", port))
  return show(s:receive(10))   -- the peer sends "abc" and closes
end

function cases.big(port)
  local s = sy.tcp()
  assert(s:connect("127.0.0.1", port))
  local data = string.rep("0123456789abcdef", 8 * 65536) -- 8 MiB, the peer reads slowly
  local n, err = s:send(data)
  local reply = s:receive("*l")                        -- the peer's byte count
  s:close()
  return show(n, err, reply)
end

function cases.tls(port, req)
  local s = sy.tcp()
  local opts = { tls = true, sni = q(req, "sni"), ca = q(req, "ca") }
  if q(req, "verify") == "0" then opts.verify = false end
  local ok, err = s:connect(q(req, "host") or "127.0.0.1", port, opts)
  if not ok then return show(ok, err) end
  s:send("ping\n")
  local line = s:receive("*l")
  s:close()
  return show(ok, line)
end

-- A timer closes the socket this hook waits on: the wait ends with nil, "closed".
function cases.closed_meanwhile(port)
  local s = sy.tcp()
  assert(s:connect("127.0.0.1", port))
  sy.after(0.2, function() s:close() end)
  local r = { s:receive(1) }
  return show(r[1], r[2], s:receive(1))
end

-- Waits on a silent peer; the test's client leaves meanwhile, and the peer sees the socket
-- close. The to-be-closed variable marks the hook's end.
local closed_by_leave = 0
function cases.leave(port)
  local mark <close> = setmetatable({}, { __close = function() closed_by_leave = closed_by_leave + 1 end })
  local s = sy.tcp()
  assert(s:connect("127.0.0.1", port))
  s:receive(1)
  return "not reached"
end

local app = {}

function app.request(req, res)
  local name = req.path:sub(2)
  if name == "load_error" then return res:send(200, load_error) end
  if name == "left" then return res:send(200, tostring(closed_by_leave)) end
  local f = cases[name]
  if not f then return res:send(404, "no case\n") end
  res:send(200, f(tonumber(q(req, "port")), req))
end

return app
