-- examples/chat/server.lua: a chat room. GET / serves the page (index.html beside this file);
-- the page opens a WebSocket on /chat; every message is published to the "room" topic, framed
-- once for all members. permessage-deflate is on with the "shared" preset: no compression state
-- per member, and each published message is compressed once for the whole room.
--
-- Members across processes: every event carries this process's id and its local member count
-- (sy.subscribers counts this process only); with --workers N or --redis a room spans several
-- processes, so each one also announces its count every 2 s ("presence") and the page adds up
-- the latest count of every process it heard from in the last 6 s.
--
-- Run:  switchyard --listen 127.0.0.1:8080 examples/chat/server.lua
-- Then open http://127.0.0.1:8080/ in two browser tabs.
local sy = require "switchyard"
local router = require "switchyard.router"
local http = require "switchyard.http"
local json = require "switchyard.json"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local page do
  local f = assert(io.open(here .. "index.html", "rb"))
  page = f:read("a")
  f:close()
end

local MAX_NAME, MAX_TEXT = 32, 2000
local members = 0 -- in this process

-- This process's id for the page's member count: the pid (Linux's /proc/self/stat).
local process do
  local f = io.open("/proc/self/stat")
  process = f and f:read("l"):match("^(%d+)") or tostring(math.random(1, 1e9))
  if f then f:close() end
end

local function event(kind, name, text)
  return json.encode({ type = kind, name = name, text = text or "", process = process,
                       members = members, time = sy.now() })
end

sy.every(2, function()
  if members > 0 then sy.publish("room", event("presence", "")) end
end)

local r = router.new()

-- GET (and HEAD) /: the page; other methods get 405, other paths 404.
r:get("/", function(_, res)
  res:send(200, page, { ["content-type"] = "text/html; charset=utf-8",
                        ["cache-control"] = "no-store" })
end)

local room = {
  open = function(ws)
    -- The name comes from the query string (?name=...), cleaned and bounded.
    local name = (ws.data.name or "guest"):sub(1, MAX_NAME)
    ws.data.name = name
    members = members + 1
    ws:subscribe("room")
    sy.publish("room", event("join", name))
  end,
  message = function(ws, text, binary)
    if binary then return ws:close(4003, "text only") end
    if #text > MAX_TEXT then text = text:sub(1, MAX_TEXT) end
    sy.publish("room", event("message", ws.data.name, text))
  end,
  close = function(ws)
    members = members - 1
    sy.publish("room", event("leave", ws.data.name or "guest"))
  end,
}

r:upgrade("/chat", "websocket", function(req)
  local name = http.parse_query(req.query).name
  name = name and name:gsub("[^%w%s%-_%.]", ""):match("^%s*(.-)%s*$")
  return sy.accept("websocket", {
    open = function(ws)
      ws.data.name = (name and #name > 0) and name or "guest"
      room.open(ws)
    end,
    message = room.message,
    close = room.close,
  }, { max_message_size = 64 * 1024, compression = "shared" })
end)

return { request = r:request_handler(), upgrade = r:upgrade_handler() }
