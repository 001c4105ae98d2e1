-- spec/apps/raw.lua: fixture for spec/integration/raw_spec.lua. Raw tokens (any version):
--   echo    echoes every data chunk
--   info    on open writes "addr=<conn.remote_addr> data=<type(conn.data)>\n"
--   count   per data chunk: conn.data.n += #bytes, writes "n=<total>\n"
--   closer  on open writes "bye\n" then conn:close()
--   quit    echoes; "QUIT\n" in the data makes it write "bye\n" and conn:close()
--   track1, track2, closer2   like echo, echo, closer (each used by one close test only)
--   big     writes 64 KiB blocks until conn:write returns false (at most 512 blocks; counted
--           in /stats as full_big), then on
--           drain writes "\nEND blocks=N saw_false=B drains=D\n"; block i is 65536 times
--           the letter ("A".."Z")[i % 26 + 1]
-- app.request: /stats counters (opens, closes, drains, and closes_<token> per token name);
-- anything else 200 "plain\n".
local sy = require "switchyard"

local app = {}
local stats = { opens = 0, closes = 0, drains = 0 }
local closes_by = {}
local BLOCK = 65536

local function with_counts(name, h)
  local open, close, drain = h.open, h.close, h.drain
  h.open = function(conn)
    stats.opens = stats.opens + 1
    if open then open(conn) end
  end
  h.close = function(conn)
    stats.closes = stats.closes + 1
    closes_by[name] = (closes_by[name] or 0) + 1
    if close then close(conn) end
  end
  h.drain = function(conn)
    stats.drains = stats.drains + 1
    if drain then drain(conn) end
  end
  return h
end

local function echo_data(conn, bytes) conn:write(bytes) end

local function closer_open(conn)
  conn:write("bye\n")
  conn:close()
end

local handlers = {}

handlers.echo = with_counts("echo", { data = echo_data })
handlers.track1 = with_counts("track1", { data = echo_data })
handlers.track2 = with_counts("track2", { data = echo_data })
handlers.closer = with_counts("closer", { open = closer_open })
handlers.closer2 = with_counts("closer2", { open = closer_open })

handlers.info = with_counts("info", {
  open = function(conn)
    conn:write("addr=" .. tostring(conn.remote_addr) .. " data=" .. type(conn.data) .. "\n")
  end,
})

handlers.count = with_counts("count", {
  data = function(conn, bytes)
    conn.data.n = (conn.data.n or 0) + #bytes
    conn:write("n=" .. conn.data.n .. "\n")
  end,
})

handlers.quit = with_counts("quit", {
  data = function(conn, bytes)
    conn.data.buf = (conn.data.buf or "") .. bytes
    if conn.data.buf:find("QUIT\n", 1, true) then
      conn:write("bye\n")
      conn:close()
    else
      conn:write(bytes)
    end
  end,
})

-- baddrain: fills the queue past the high-water mark (counted in /stats as full_baddrain), then
-- its drain handler raises.
handlers.baddrain = with_counts("baddrain", {
  open = function(conn)
    for _ = 1, 512 do
      if conn:write(string.rep("d", BLOCK)) == false then
        stats.full_baddrain = (stats.full_baddrain or 0) + 1 -- past the mark: /stats tells
        break
      end
    end
  end,
  drain = function(conn) error("boom in drain") end,
})

handlers.big = with_counts("big", {
  open = function(conn)
    local d = conn.data
    d.blocks, d.saw_false, d.drains, d.ended = 0, false, 0, false
    while d.blocks < 512 do
      local letter = string.char(65 + d.blocks % 26)
      d.blocks = d.blocks + 1
      if conn:write(string.rep(letter, BLOCK)) == false then
        d.saw_false = true
        stats.full_big = (stats.full_big or 0) + 1 -- past the mark: /stats tells
        break
      end
    end
    if not d.saw_false then
      d.ended = true
      conn:write(("\nEND blocks=%d saw_false=false drains=0\n"):format(d.blocks))
    end
  end,
  drain = function(conn)
    local d = conn.data
    d.drains = d.drains + 1
    if not d.ended then
      d.ended = true
      conn:write(("\nEND blocks=%d saw_false=%s drains=%d\n"):format(
        d.blocks, tostring(d.saw_false), d.drains))
    end
  end,
})

function app.upgrade(req)
  for _, o in ipairs(req.upgrades) do
    local h = handlers[o.name:lower()]
    if h then
      return sy.accept(o.name .. (o.version and ("/" .. o.version) or ""), h)
    end
  end
  return sy.ignore()
end

function app.request(req, res)
  if req.path == "/stats" then
    local out = { ("opens=%d\ncloses=%d\ndrains=%d\nfull_baddrain=%d\nfull_big=%d\n"):format(
                  stats.opens, stats.closes, stats.drains, stats.full_baddrain or 0,
                  stats.full_big or 0) }
    for n in pairs(handlers) do
      out[#out + 1] = ("closes_%s=%d\n"):format(n, closes_by[n] or 0)
    end
    res:send(200, table.concat(out))
  else
    res:send(200, "plain\n")
  end
end

return app
