-- switchyard.framing: messages out of a byte stream, for raw protocols.
--
--   local framing = require "switchyard.framing"
--   data = function(conn, bytes)
--     local msgs, err = conn.data.lines:feed(bytes)   -- complete messages, in order
--     for _, line in ipairs(msgs) do ... end
--     if err then conn:write("ERR " .. err .. "\n"); conn:close() end
--   end
--
-- A framer keeps partial input between feeds, so a message may arrive in any number of pieces
-- and several may arrive in one. f:feed(bytes) returns the list of messages that are now
-- complete, plus an error string once a limit is broken; after an error the framer is spent:
-- every later feed returns {}, err (close the connection). f:messages(bytes) is the same as an
-- iterator: `for msg in f:messages(bytes) do ... end` (it raises on a broken limit).
-- f:buffered() is the number of bytes held. f.encode(msg) frames one outgoing message.
--
-- framing.lines{ max = 4096, eol = "\n" }: messages end with LF; a CR before the LF is dropped
--   (so CRLF and LF both work). max: the longest line in bytes, without its line end
--   (default 4096); a longer line, complete or not, is an error "line too long". eol: what
--   f.encode appends ("\n" or "\r\n").
-- framing.length(n, { max = 1048576 }): each message is an n-byte (1, 2 or 4) big-endian length
--   followed by that many bytes. A declared length over max is an error "message too large"
--   (found as soon as the header arrives, before the body is buffered). f.encode(msg) raises
--   when msg does not fit in n bytes or is over max.
local M = {}

local Framer = {}
Framer.__index = Framer

-- Partial input is kept as a list of pieces (self._parts, self._have bytes in all) and joined
-- only when a message can be complete, so a large message fed in small pieces costs linear
-- time, not quadratic.
local function spent(self, err)
  self._err = err
  self._parts, self._have = {}, 0
  return err
end

local function hold(self, bytes)
  self._parts[#self._parts + 1] = bytes
  self._have = self._have + #bytes
end

local function take(self, bytes)
  local parts = self._parts
  parts[#parts + 1] = bytes
  local buf = table.concat(parts)
  self._parts, self._have = {}, 0
  return buf
end

-- A partial line of more than max bytes (+1 for a CR that may precede the coming LF) is too
-- long whatever follows.
local function partial_too_long(have, max, last)
  return have > max + 1 or (have == max + 1 and last ~= 13)
end

local function feed_lines(self, bytes)
  local out, max = {}, self.max
  if not bytes:find("\n", 1, true) then
    hold(self, bytes)
    if partial_too_long(self._have, max, bytes:byte(-1)) then
      return out, spent(self, "line too long")
    end
    return out
  end
  local buf = take(self, bytes)
  local pos = 1
  while true do
    local nl = buf:find("\n", pos, true)
    if not nl then break end
    local stop = nl - 1
    if stop >= pos and buf:byte(stop) == 13 then stop = stop - 1 end
    if stop - pos + 1 > max then return out, spent(self, "line too long") end
    out[#out + 1] = buf:sub(pos, stop)
    pos = nl + 1
  end
  if pos <= #buf then
    hold(self, buf:sub(pos))
    if partial_too_long(self._have, max, buf:byte(-1)) then
      return out, spent(self, "line too long")
    end
  end
  return out
end

local FMT = { [1] = ">I1", [2] = ">I2", [4] = ">I4" }

local function feed_length(self, bytes)
  local out = {}
  -- self._need: bytes the current message needs in all (header + body), once its header is in.
  if self._need and self._have + #bytes < self._need then
    hold(self, bytes)
    return out
  end
  local buf = take(self, bytes)
  local pos, n, max = 1, self.n, self.max
  self._need = nil
  while #buf - pos + 1 >= n do
    local len = string.unpack(FMT[n], buf, pos)
    if len > max then return out, spent(self, "message too large") end
    if #buf - pos + 1 - n < len then
      self._need = n + len
      break
    end
    out[#out + 1] = buf:sub(pos + n, pos + n + len - 1)
    pos = pos + n + len
  end
  if pos <= #buf then hold(self, buf:sub(pos)) end
  return out
end

--- Adds bytes; returns the messages now complete, plus an error once a limit is broken.
function Framer:feed(bytes)
  if self._err then return {}, self._err end
  if type(bytes) ~= "string" then error("feed: string expected, got " .. type(bytes), 2) end
  if bytes == "" then return {} end
  return self._feed(self, bytes)
end

--- Iterator over the messages complete after adding bytes; raises on a broken limit.
function Framer:messages(bytes)
  local msgs, err = self:feed(bytes)
  if err then error(err, 2) end
  local i = 0
  return function()
    i = i + 1
    return msgs[i]
  end
end

--- Bytes held for an incomplete message.
function Framer:buffered() return self._have end

--- The error that spent this framer, or nil.
function Framer:error() return self._err end

local function check_opts(opts, known, who)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(who .. ": opts must be a table", 3) end
  for k in pairs(opts) do
    if not known[k] then error(("%s: unknown option %q"):format(who, tostring(k)), 3) end
  end
  return opts
end

local function check_max(v, default, who)
  if v == nil then return default end
  if math.type(v) ~= "integer" or v < 0 then
    error(who .. ": max must be a non-negative integer", 3)
  end
  return v
end

--- Line framing; see the top of this file.
function M.lines(opts)
  opts = check_opts(opts, { max = true, eol = true }, "framing.lines")
  local max = check_max(opts.max, 4096, "framing.lines")
  local eol = opts.eol or "\n"
  if eol ~= "\n" and eol ~= "\r\n" then error('framing.lines: eol must be "\\n" or "\\r\\n"', 2) end
  local f = setmetatable({ _parts = {}, _have = 0, _feed = feed_lines, max = max }, Framer)
  f.encode = function(msg)
    if type(msg) ~= "string" then error("encode: string expected, got " .. type(msg), 2) end
    if msg:find("[\r\n]") then error("encode: a line cannot hold CR or LF", 2) end
    return msg .. eol
  end
  return f
end

--- Length-prefixed framing with an n-byte (1, 2 or 4) big-endian length; see the top.
function M.length(n, opts)
  if not FMT[n] then error("framing.length: n must be 1, 2 or 4", 2) end
  opts = check_opts(opts, { max = true }, "framing.length")
  local limit = (1 << (8 * n)) - 1
  local max = math.min(check_max(opts.max, 1024 * 1024, "framing.length"), limit)
  local f = setmetatable({ _parts = {}, _have = 0, _feed = feed_length, n = n, max = max }, Framer)
  f.encode = function(msg)
    if type(msg) ~= "string" then error("encode: string expected, got " .. type(msg), 2) end
    if #msg > max then
      error(("encode: message of %d bytes is over the limit of %d"):format(#msg, max), 2)
    end
    return string.pack(FMT[n], #msg) .. msg
  end
  return f
end

return M
