-- spec/helpers/ws.lua: a minimal WebSocket client (RFC 6455) over helpers.server connections,
-- for specs that drive the Lua ws API. Client frames are masked; every read is bounded.
--
--   local W = require "helpers.ws"
--   local c, res = W.open(srv.port, "/echo")           -- handshake checked (101, accept key)
--   W.text(c, "hi")                                    -- or W.binary, W.ping, W.pong, W.close
--   local kind, data = W.read(c)                       -- "text"/"binary", data
--                                                      -- "ping"/"pong", payload
--                                                      -- "close", code (nil if empty), reason
--                                                      -- nil, err ("timeout"/"closed"/...)
local H = require "helpers.server"

local M = {}

M.CONT, M.TEXT, M.BINARY, M.CLOSE, M.PING, M.PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

local GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

local function b64(s)
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    out[#out + 1] = chars:sub((n >> 18) + 1, (n >> 18) + 1)
    out[#out + 1] = chars:sub(((n >> 12) & 63) + 1, ((n >> 12) & 63) + 1)
    out[#out + 1] = b and chars:sub(((n >> 6) & 63) + 1, ((n >> 6) & 63) + 1) or "="
    out[#out + 1] = c and chars:sub((n & 63) + 1, (n & 63) + 1) or "="
  end
  return table.concat(out)
end

-- SHA-1 of s as a raw 20-byte string (for the Sec-WebSocket-Accept check).
local function sha1(s)
  local function rol(x, n) return ((x << n) | (x >> (32 - n))) & 0xffffffff end
  local h0, h1, h2, h3, h4 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0
  local ml = #s * 8
  s = s .. "\128" .. string.rep("\0", (55 - #s) % 64) .. string.pack(">I8", ml)
  for chunk = 1, #s, 64 do
    local w = {}
    for i = 0, 15 do w[i] = string.unpack(">I4", s, chunk + i * 4) end
    for i = 16, 79 do w[i] = rol(w[i - 3] ~ w[i - 8] ~ w[i - 14] ~ w[i - 16], 1) end
    local a, b, c, d, e = h0, h1, h2, h3, h4
    for i = 0, 79 do
      local f, k
      if i < 20 then f, k = (b & c) | ((~b) & d), 0x5A827999
      elseif i < 40 then f, k = b ~ c ~ d, 0x6ED9EBA1
      elseif i < 60 then f, k = (b & c) | (b & d) | (c & d), 0x8F1BBCDC
      else f, k = b ~ c ~ d, 0xCA62C1D6 end
      local t = (rol(a, 5) + (f & 0xffffffff) + e + k + w[i]) & 0xffffffff
      e, d, c, b, a = d, c, rol(b, 30), a, t
    end
    h0, h1 = (h0 + a) & 0xffffffff, (h1 + b) & 0xffffffff
    h2, h3 = (h2 + c) & 0xffffffff, (h3 + d) & 0xffffffff
    h4 = (h4 + e) & 0xffffffff
  end
  return string.pack(">I4I4I4I4I4", h0, h1, h2, h3, h4)
end

function M.accept_key(key) return b64(sha1(key .. GUID)) end

local function random_bytes(n)
  local t = {}
  for i = 1, n do t[i] = string.char(math.random(0, 255)) end
  return table.concat(t)
end

-- XOR-masks s with the 4-byte key (RFC 6455 5.3), four bytes at a time.
function M.mask(s, key)
  if key == "\0\0\0\0" or #s == 0 then return s end
  local k = string.unpack("<I4", key)
  local out, n = {}, #s
  local full = n - n % 4
  for i = 1, full, 4 do
    out[#out + 1] = string.pack("<I4", string.unpack("<I4", s, i) ~ k)
  end
  for i = full + 1, n do
    local j = (i - 1) % 4 + 1
    out[#out + 1] = string.char(s:byte(i) ~ key:byte(j))
  end
  return table.concat(out)
end

-- One client frame. opts: fin (default true), rsv (0..7), mask (default true), key (4 bytes).
function M.frame(opcode, payload, opts)
  opts = opts or {}
  payload = payload or ""
  local fin = opts.fin == nil and true or opts.fin
  local b0 = (fin and 0x80 or 0) | ((opts.rsv or 0) << 4) | opcode
  local mbit = opts.mask == false and 0 or 0x80
  local n = #payload
  local head
  if n < 126 then
    head = string.pack(">BB", b0, mbit | n)
  elseif n < 65536 then
    head = string.pack(">BBI2", b0, mbit | 126, n)
  else
    head = string.pack(">BBI8", b0, mbit | 127, n)
  end
  if mbit == 0 then return head .. payload end
  local key = opts.key or random_bytes(4)
  return head .. key .. M.mask(payload, key)
end

function M.close_payload(code, reason)
  if not code then return "" end
  return string.pack(">I2", code) .. (reason or "")
end

-- Connects and performs the handshake. headers: extra "Name: value" lines. Returns the
-- connection and the 101 response; raises when the answer is not a valid 101.
function M.open(port, path, headers)
  local c = H.must_connect(port)
  local key = b64(random_bytes(16))
  local lines = { "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " .. key,
                  "Sec-WebSocket-Version: 13" }
  for _, h in ipairs(headers or {}) do lines[#lines + 1] = h end
  assert(c:send(H.request("GET", path or "/", lines)))
  local res = c:must_response()
  assert(res.status == 101, "handshake answered " .. res.status .. ": " .. tostring(res.body))
  assert(res.headers["sec-websocket-accept"] == M.accept_key(key), "bad Sec-WebSocket-Accept")
  return c, res
end

function M.send(c, opcode, payload, opts) return assert(c:send(M.frame(opcode, payload, opts))) end
function M.text(c, s, opts) return M.send(c, M.TEXT, s, opts) end
function M.binary(c, s, opts) return M.send(c, M.BINARY, s, opts) end
function M.ping(c, s) return M.send(c, M.PING, s) end
function M.pong(c, s) return M.send(c, M.PONG, s) end
function M.close(c, code, reason) return M.send(c, M.CLOSE, M.close_payload(code, reason)) end

-- One server frame: opcode, payload, fin; or nil, err. Raises on a masked server frame.
function M.read_frame(c, timeout)
  local deadline = H.now() + (timeout or H.TIMEOUT)
  local function left() return math.max(0.001, deadline - H.now()) end
  local h, err = c:read_n(2, left())
  if not h then return nil, err end
  local b0, b1 = h:byte(1, 2)
  assert(b1 & 0x80 == 0, "server frame is masked")
  assert(b0 & 0x70 == 0, "server frame has RSV bits")
  local n = b1 & 0x7f
  if n == 126 then
    local ext, e2 = c:read_n(2, left())
    if not ext then return nil, e2 end
    n = string.unpack(">I2", ext)
  elseif n == 127 then
    local ext, e2 = c:read_n(8, left())
    if not ext then return nil, e2 end
    n = string.unpack(">I8", ext)
  end
  local payload, e3 = c:read_n(n, left())
  if not payload then return nil, e3 end
  return b0 & 0x0f, payload, (b0 & 0x80) ~= 0
end

-- One event (a whole message, a control frame) as described at the top; nil, err otherwise.
function M.read(c, timeout)
  local deadline = H.now() + (timeout or H.TIMEOUT)
  local parts, kind = {}, nil
  while true do
    local op, payload, fin = M.read_frame(c, math.max(0.001, deadline - H.now()))
    if not op then return nil, payload end
    if op == M.CLOSE then
      if #payload < 2 then return "close", nil, payload end
      return "close", string.unpack(">I2", payload), payload:sub(3)
    elseif op == M.PING then
      return "ping", payload
    elseif op == M.PONG then
      return "pong", payload
    end
    if op ~= M.CONT then kind = op == M.TEXT and "text" or "binary" end
    parts[#parts + 1] = payload
    if fin then return kind, table.concat(parts) end
  end
end

-- Reads one event and checks it is a text message; returns its data.
function M.must_text(c, timeout)
  local kind, data = M.read(c, timeout)
  assert(kind == "text", ("want a text message, got %s %q"):format(tostring(kind), tostring(data)))
  return data
end

-- Exchanges one text message: sends s, returns the next text message.
function M.call(c, s, timeout)
  M.text(c, s)
  return M.must_text(c, timeout)
end

-- True when TCP is closed by the server within timeout with no further bytes.
function M.eof(c, timeout)
  return c:expect_closed(timeout)
end

return M
