-- spec/apps/raw.lua: fixture for spec/integration/raw_spec.lua. Raw tokens (any version):
--   echo    echoes every data chunk
--   info    on open writes "addr=<conn.remote_addr> data=<type(conn.data)>\n"
--   count   per data chunk: conn.data.n += #bytes, writes "n=<total>\n"
--   closer  on open writes "bye\n" then conn:close()
--   quit    echoes; "QUIT\n" in the data makes it write "bye\n" and conn:close()
--   big     writes 64 KiB blocks until conn:write returns false (at most 512 blocks), then on
--           drain writes "\nEND blocks=N saw_false=B drains=D\n"; block i is 65536 times
--           the letter ("A".."Z")[i % 26 + 1]
-- app.request: /stats counters; anything else 200 "plain\n".
local sy = require "switchyard"

local app = {}
local stats = { opens = 0, closes = 0, drains = 0 }
local BLOCK = 65536

local function with_counts(h)
  local open, close, drain = h.open, h.close, h.drain
  h.open = function(conn)
    stats.opens = stats.opens + 1
    if open then open(conn) end
  end
  h.close = function(conn)
    stats.closes = stats.closes + 1
    if close then close(conn) end
  end
  h.drain = function(conn)
    stats.drains = stats.drains + 1
    if drain then drain(conn) end
  end
  return h
end

local handlers = {
  echo = with_counts { data = function(conn, bytes) conn:write(bytes) end },
  info = with_counts {
    open = function(conn)
      conn:write("addr=" .. tostring(conn.remote_addr) .. " data=" .. type(conn.data) .. "\n")
    end,
  },
  count = with_counts {
    data = function(conn, bytes)
      conn.data.n = (conn.data.n or 0) + #bytes
      conn:write("n=" .. conn.data.n .. "\n")
    end,
  },
  closer = with_counts {
    open = function(conn)
      conn:write("bye\n")
      conn:close()
    end,
  },
  quit = with_counts {
    data = function(conn, bytes)
      conn.data.buf = (conn.data.buf or "") .. bytes
      if conn.data.buf:find("QUIT\n", 1, true) then
        conn:write("bye\n")
        conn:close()
      else
        conn:write(bytes)
      end
    end,
  },
  big = with_counts {
    open = function(conn)
      local d = conn.data
      d.blocks, d.saw_false, d.drains, d.ended = 0, false, 0, false
      while d.blocks < 512 do
        local letter = string.char(65 + d.blocks % 26)
        d.blocks = d.blocks + 1
        if conn:write(string.rep(letter, BLOCK)) == false then
          d.saw_false = true
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
  },
}

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
    res:send(200, ("opens=%d\ncloses=%d\ndrains=%d\n"):format(stats.opens, stats.closes,
                                                              stats.drains))
  else
    res:send(200, "plain\n")
  end
end

return app
