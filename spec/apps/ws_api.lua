-- spec/apps/ws_api.lua: fixture for spec/integration/ws_api_spec.lua (the Lua WebSocket API).
--
-- Handlers record what they see in a log that GET /log returns (one line per event; GET
-- /log?clear=1 also empties it). app.options sets max_message_size = 65536 app-wide.
-- WebSocket paths (commands are text messages):
--   /echo            echo; logs "open P", "ping D", "pong D", "close CODE REASON"
--   /big             echo with max_message_size = 200000 (overrides app.options)
--   /info            "info" -> "path=P sub=S addr=A data=T"; "count" -> ws.data.n (per conn)
--   /open-send       open: ws:send from open (logs its result), and from a 0.05 s timer
--   /open-close      open: ws:close(4000, "bye from open")
--   /relay           "whoami" -> "id N"; "to N TEXT" -> sends TEXT to connection N and
--                    answers "sent R E" with ws:send's results
--   /closed-api      the close handler logs what the ws methods answer on a closed ws, and a
--                    timer 0.1 s later logs ws:send's answer again
--   /error           "boom" raises in message; "ok" -> "fine"; ping handler raises
--   /error-open      open raises
--   /batch           for messages that arrive in one read: each is logged "msg D", then
--                    "close" -> ws:close(4001, "batch"); "boom" raises; "swap" replaces the
--                    message handler (the new one answers "swapped D"; "unswap" restores);
--                    else echo
--   /validated       drops the message, collects garbage, then ws:send of invalid UTF-8 of
--                    the same length as text: answers "refused" (raised) or "sent"
--   /error-close     close handler raises; "ok" -> "fine"
--   /cmd             "badtext" -> ws:send of invalid UTF-8 as text (answers "error ..." or
--                    "sent ..."); "badbin" -> the same bytes as binary; "close C R" ->
--                    ws:close(C, R) ("error ..." when it raises; C "-" for no code);
--                    "close-then-send" -> ws:close(), then logs ws:send's answer;
--                    "ping D" -> ws:ping(D); the pong handler sends "pong D";
--                    "buffered" -> ws:buffered()
--   /pubsub          "sub T", "unsub T", "pub T TEXT" (ws:publish), "spub T TEXT" (sy.publish),
--                    "pubbin T" (binary "\0\1\2"), "burst T N" (N publishes "T:i"); each answered
--   /flood?policy=drop|close&max=N   "flood": sends 64 KiB binary messages until ws:send
--                    answers nil (max_backpressure N), logs "flood true=a false=b end=E
--                    buffered=B"; drop policy: 5 more sends, logged as "after dropped=k";
--                    the drain handler logs "drain" and sends "after drain"
--   /idle            idle_timeout 0.5, no pings
--   /keepalive       ping_interval 0.3, idle_timeout 1.2; the pong handler logs "pong D"
--   /close-timeout   close_timeout 0.3; "bye" -> ws:close(1000, "bye")
-- A subprotocol is chosen when the client offers "chat" (else none).
local sy = require "switchyard"

local app = {}
app.options = { max_message_size = 65536 }

local log = {}
local function note(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  log[#log + 1] = table.concat(parts, " ")
end

local function query(req, name)
  for k, v in (req.query or ""):gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
  return nil
end

local function offers_chat(req)
  for p in (req.headers["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do
    if p == "chat" then return true end
  end
  return false
end

local function echo(ws, data, binary) ws:send(data, binary) end

local H = {}

H["/echo"] = {
  open = function(ws) note("open", ws.path) end,
  message = echo,
  ping = function(ws, data) note("ping", data) end,
  pong = function(ws, data) note("pong", data) end,
  close = function(ws, code, reason) note("close", code, reason) end,
}

H["/big"] = { message = echo }

H["/info"] = {
  message = function(ws, data)
    if data == "info" then
      ws:send(("path=%s sub=%s addr=%s data=%s"):format(ws.path, tostring(ws.subprotocol),
                                                       ws.remote_addr, type(ws.data)))
    elseif data == "count" then
      ws.data.n = (ws.data.n or 0) + 1
      ws:send(tostring(ws.data.n))
    end
  end,
}

H["/open-send"] = {
  open = function(ws)
    note("open-send", ws:send("from open"))
    sy.after(0.05, function() note("timer-send", ws:send("from timer")) end)
  end,
  message = echo,
}

H["/open-close"] = {
  open = function(ws) note("open-close", ws:close(4000, "bye from open")) end,
  close = function(ws, code, reason) note("close", code, reason) end,
}

local peers, next_id = {}, 0
H["/relay"] = {
  open = function(ws)
    next_id = next_id + 1
    ws.data.id = next_id
    peers[next_id] = ws -- kept after close on purpose: sends to it answer nil, "closed"
  end,
  message = function(ws, data)
    if data == "whoami" then
      ws:send("id " .. ws.data.id)
      return
    end
    local id, text = data:match("^to (%d+) (.*)$")
    if id then
      local r, e = peers[tonumber(id)]:send(text)
      ws:send(("sent %s %s"):format(tostring(r), tostring(e)))
    end
  end,
}

local function results(...)
  local t = table.pack(...)
  local parts = {}
  for i = 1, t.n do parts[i] = tostring(t[i]) end
  return table.concat(parts, ",")
end

H["/closed-api"] = {
  close = function(ws, code)
    note(("closed-api code=%d send=%s ping=%s close=%s subscribe=%s buffered=%s"):format(code,
      results(ws:send("x")), results(ws:ping("p")), results(ws:close(1000)),
      results(ws:subscribe("t")), results(ws:buffered())))
    sy.after(0.1, function() note("closed-api later send=" .. results(ws:send("y"))) end)
  end,
}

H["/error"] = {
  message = function(ws, data)
    if data == "boom" then error("boom in message") end
    ws:send("fine")
  end,
  ping = function(ws) error("boom in ping") end,
  close = function(ws, code) note("error-close", code) end,
}

local batch_message
batch_message = function(ws, data)
  note("msg", data)
  if data == "close" then
    ws:close(4001, "batch")
  elseif data == "boom" then
    error("boom in batch")
  elseif data == "swap" then
    H["/batch"].message = function(ws2, d)
      note("msg", d)
      if d == "unswap" then H["/batch"].message = batch_message end
      ws2:send("swapped " .. d)
    end
    ws:send("swap")
  else
    ws:send(data)
  end
end
H["/batch"] = { message = batch_message }

H["/validated"] = {
  message = function(ws, data)
    local n = #data
    data = nil -- luacheck: ignore (the string may now be collected)
    collectgarbage()
    collectgarbage()
    local ok = pcall(ws.send, ws, string.rep("\xff", n))
    ws:send(ok and "sent" or "refused")
  end,
}

H["/error-open"] = {
  open = function(ws) error("boom in open") end,
  message = echo,
}

H["/error-close"] = {
  message = function(ws) ws:send("fine") end,
  close = function(ws) error("boom in close") end,
}

H["/cmd"] = {
  message = function(ws, data)
    if data == "badtext" then
      local ok, r, e = pcall(ws.send, ws, "bad \255\254 text")
      ws:send(ok and ("sent " .. tostring(r) .. " " .. tostring(e)) or ("error " .. tostring(r)))
    elseif data == "badbin" then
      ws:send("bad \255\254 text", true)
    elseif data == "close-then-send" then
      ws:close()
      note("close-then-send", ws:send("x"))
    elseif data == "buffered" then
      ws:send(tostring(ws:buffered()))
    elseif data:match("^ping ") then
      ws:ping(data:sub(6))
    elseif data:match("^close ") then
      local code, reason = data:match("^close (%S+) ?(.*)$")
      local ok, err
      if code == "-" then
        ok, err = pcall(ws.close, ws)
      else
        ok, err = pcall(ws.close, ws, tonumber(code), reason)
      end
      if not ok then ws:send("error " .. tostring(err)) end
    end
  end,
  pong = function(ws, data) ws:send("pong " .. data) end,
  close = function(ws, code, reason) note("cmd-close", code, reason) end,
}

H["/pubsub"] = {
  message = function(ws, data)
    local cmd, topic, rest = data:match("^(%S+) (%S+) ?(.*)$")
    if cmd == "sub" then
      ws:send("subscribed " .. topic .. " " .. tostring(ws:subscribe(topic)))
    elseif cmd == "unsub" then
      ws:send("unsubscribed " .. topic .. " " .. tostring(ws:unsubscribe(topic)))
    elseif cmd == "pub" then
      ws:send("published " .. ws:publish(topic, rest))
    elseif cmd == "spub" then
      ws:send("spublished " .. sy.publish(topic, rest))
    elseif cmd == "pubbin" then
      ws:send("published " .. ws:publish(topic, "\0\1\2", true))
    elseif cmd == "burst" then
      for i = 1, tonumber(rest) do ws:publish(topic, topic .. ":" .. i) end
      ws:send("burst done")
    end
  end,
}

local CHUNK = string.rep("\7", 65536)
H["/flood"] = {
  message = function(ws, data)
    if data ~= "flood" then return end
    local t, f, last = 0, 0, "none"
    for _ = 1, 4000 do -- at most 250 MiB: bounded even if no limit applied
      local r, e = ws:send(CHUNK, true)
      if r == true then t = t + 1
      elseif r == false then f = f + 1
      else last = tostring(e); break end
    end
    note(("flood true=%d false=%d end=%s buffered=%s"):format(t, f, last,
         ws:buffered() > 1024 * 1024 and "over1MiB" or tostring(ws:buffered())))
    if last == "dropped" then
      local k = 0
      for _ = 1, 5 do
        local r, e = ws:send(CHUNK, true)
        if r == nil and e == "dropped" then k = k + 1 end
      end
      note("after dropped=" .. k)
    end
  end,
  drain = function(ws)
    note("drain")
    ws:send("after drain")
  end,
  close = function(ws, code) note("flood-close", code) end,
}

H["/idle"] = { message = echo, close = function(ws, code) note("idle-close", code) end }
H["/keepalive"] = {
  message = echo,
  pong = function(ws, data) note("pong", data) end,
  close = function(ws, code) note("keepalive-close", code) end,
}
H["/close-timeout"] = {
  message = function(ws, data) if data == "bye" then ws:close(1000, "bye") end end,
  close = function(ws, code) note("close-timeout-close", code) end,
}

local OPTIONS = {
  ["/big"] = { max_message_size = 200000 },
  ["/idle"] = { idle_timeout = 0.5, ping_interval = 0 },
  ["/keepalive"] = { ping_interval = 0.3, idle_timeout = 1.2 },
  ["/close-timeout"] = { close_timeout = 0.3 },
}

function app.upgrade(req)
  if not req:offers("websocket") then return sy.ignore() end
  local handlers = H[req.path]
  if not handlers then return sy.reject(404, "no such path\n") end
  local opts = {}
  for k, v in pairs(OPTIONS[req.path] or {}) do opts[k] = v end
  if req.path == "/flood" then
    opts.backpressure = query(req, "policy")
    opts.max_backpressure = tonumber(query(req, "max"))
  end
  if offers_chat(req) then opts.subprotocol = "chat" end
  return sy.accept("websocket", handlers, opts)
end

function app.request(req, res)
  if req.path == "/log" then
    local body = table.concat(log, "\n")
    if query(req, "clear") then log = {} end
    res:send(200, body, { ["content-type"] = "text/plain" })
  else
    res:send(404, "not found\n")
  end
end

return app
