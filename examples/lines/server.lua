-- examples/lines/server.lua: a tiny key-value line protocol prototyped over a raw Upgrade.
--
-- A client sends an ordinary HTTP/1.1 request with "Upgrade: lines/1" and
-- "Connection: Upgrade"; after "101 Switching Protocols" the socket carries lines (LF or CRLF):
--   SET key value   -> OK                 (value is the rest of the line, may hold spaces)
--   GET key         -> VALUE value | NOT_FOUND
--   DEL key         -> OK | NOT_FOUND
--   QUIT            -> BYE, then the server closes
--   anything else   -> ERR ...            (empty lines are ignored)
-- A line longer than MAX_LINE bytes gets "ERR line too long" and the connection is closed.
-- Lines may arrive split across any number of TCP segments; several may come in one.
-- The store is shared by every connection of the process. Plain requests get 426 advertising
-- lines/1 (RFC 9110 §15.5.22).
--
-- Run:   switchyard --listen 127.0.0.1:8080 examples/lines/server.lua
-- Try:   python3 examples/lines/client.py --port 8080                      (interactive)
--        python3 examples/lines/client.py --port 8080 -c 'SET a 1' -c 'GET a'
--        printf 'SET a 1\nGET a\nQUIT\n' | python3 examples/lines/client.py --port 8080
local sy = require "switchyard"
local framing = require "switchyard.framing"

local MAX_LINE = 1024 -- bytes, without the line end
local MAX_KEYS = 10000

local store, nkeys = {}, 0
local app = {}

local function reply(conn, text)
  conn:write(text .. "\n")
end

-- Runs one command line; returns false when the connection is done.
local function command(conn, line)
  if line == "" then return true end
  local cmd, rest = line:match("^(%S+)%s*(.-)$")
  if not cmd then
    reply(conn, "ERR empty command")
    return true
  end
  cmd = cmd:upper()
  if cmd == "SET" then
    local k, v = rest:match("^(%S+) (.*)$")
    if not k then
      reply(conn, "ERR usage: SET key value")
    elseif store[k] == nil and nkeys >= MAX_KEYS then
      reply(conn, "ERR store full")
    else
      if store[k] == nil then nkeys = nkeys + 1 end
      store[k] = v
      reply(conn, "OK")
    end
  elseif cmd == "GET" or cmd == "DEL" then
    local k = rest:match("^(%S+)$")
    if not k then
      reply(conn, "ERR usage: " .. cmd .. " key")
    elseif store[k] == nil then
      reply(conn, "NOT_FOUND")
    elseif cmd == "GET" then
      reply(conn, "VALUE " .. store[k])
    else
      store[k] = nil
      nkeys = nkeys - 1
      reply(conn, "OK")
    end
  elseif cmd == "QUIT" then
    reply(conn, "BYE")
    conn:close()
    return false
  else
    reply(conn, "ERR unknown command " .. cmd)
  end
  return true
end

local lines = {
  open = function(conn)
    conn.data.lines = framing.lines({ max = MAX_LINE })
    sy.log("info", "lines/1 open from", conn.remote_addr)
  end,

  data = function(conn, bytes)
    local msgs, err = conn.data.lines:feed(bytes)
    for _, line in ipairs(msgs) do
      if not command(conn, line) then return end
    end
    if err then
      reply(conn, "ERR " .. err)
      conn:close()
    end
  end,

  close = function(conn)
    sy.log("info", "lines/1 closed", conn.remote_addr)
  end,
}

function app.upgrade(req)
  if req:offers("lines/1") then
    return sy.accept("lines/1", lines)
  end
  return sy.upgrade_required("lines/1", "this server speaks lines/1\n")
end

function app.request(req, res)
  res:upgrade_required("lines/1", "this server speaks lines/1 (send Upgrade: lines/1)\n")
end

return app
