-- spec/apps/wait.lua: hooks and handlers that wait (sy.sleep), for spec/integration/wait_spec.lua
-- and tests/integration/test_wait_leave.py. Gates make the order of events explicit: a hook
-- waits until a request to /open?g=NAME opens its gate, so a test asserts what was served
-- meanwhile without depending on timing.
local sy = require "switchyard"

local app = { lua = { max_time = 0.5 } }

local counters = {}
local gates = {}
local kept -- a res kept by a hook whose client left

local function count(name) counters[name] = (counters[name] or 0) + 1 end

-- A to-be-closed value that counts when it is closed.
local function closer(name)
  return setmetatable({}, { __close = function() count(name) end })
end

local function wait_gate(name)
  while not gates[name] do sy.sleep(0.005) end
end

local function arg(req, key, default)
  local v = req.query and req.query:match(key .. "=([^&]+)")
  return v or default
end

local ws_handlers = {
  message = function(ws, data, binary)
    local cmd, rest = data:match("^(%S+)%s*(.*)$")
    if cmd == "sleep" then
      local c <close> = closer("ws_closed")
      sy.sleep(tonumber(rest))
      count("ws_after")
      ws:send("woke " .. rest)
    elseif cmd == "gate" then
      local c <close> = closer("ws_closed")
      wait_gate(rest)
      count("ws_after")
      ws:send("opened " .. rest)
    elseif cmd == "data" then
      ws:send(tostring(ws.data.who))
    elseif cmd == "fail" then
      sy.sleep(0.01)
      error("ws handler failed after its wait")
    else
      ws:send(data, binary)
    end
  end,
}

local raw_handlers = {
  data = function(conn, bytes)
    local n = tonumber(bytes:match("^sleep (%S+)\n"))
    if n then
      local c <close> = closer("raw_closed")
      sy.sleep(n)
      count("raw_after")
      conn:write("woke\n")
    elseif bytes == "data\n" then
      conn:write(tostring(conn.data.who) .. "\n")
    else
      conn:write(bytes)
    end
  end,
}

function app.upgrade(req)
  local p = req.path
  if p == "/slow-upgrade" then
    local c <close> = closer("upgrade_closed")
    local g = arg(req, "g")
    if g then wait_gate(g) else sy.sleep(tonumber(arg(req, "s", "0.05"))) end
    count("upgrade_after")
    return sy.accept("websocket", ws_handlers, { data = { who = "slow" } })
  end
  if p == "/slow-reject" then
    sy.sleep(0.02)
    return sy.reject(403, "rejected after a wait\n")
  end
  if p == "/slow-ignore" then
    sy.sleep(0.02)
    return nil
  end
  if p == "/slow-fail" then
    sy.sleep(0.02)
    error("upgrade hook failed after its wait")
  end
  if req:offers("websocket") then
    return sy.accept("websocket", ws_handlers, { data = { who = arg(req, "who", "nobody") } })
  end
  if req:offers("raw-wait") then
    return sy.accept("raw-wait", raw_handlers, { data = { who = arg(req, "who", "nobody") } })
  end
end

function app.request(req, res)
  local p = req.path
  if p == "/now" then
    return res:send(200, "now\n")
  elseif p == "/open" then
    gates[arg(req, "g")] = true
    return res:send(200, "opened\n")
  elseif p == "/counters" then
    local t = {}
    for k, v in pairs(counters) do t[#t + 1] = k .. "=" .. v end
    table.sort(t)
    return res:send(200, table.concat(t, "\n") .. "\n")
  elseif p == "/slow-ignore" then
    return res:send(200, "ignored, then served\n")
  elseif p == "/sleep" then
    sy.sleep(tonumber(arg(req, "s", "0.05")))
    return res:send(200, "slept\n")
  elseif p == "/gate" then
    local c <close> = closer("request_closed")
    kept = res
    wait_gate(arg(req, "g"))
    count("request_after")
    return res:send(200, "opened\n")
  elseif p == "/kept" then
    local ok, err = kept:send(200, "late\n")
    return res:send(200, tostring(ok) .. " " .. tostring(err) .. "\n")
  elseif p == "/answer-then-wait" then
    res:send(200, "answered\n")
    local c <close> = closer("after_answer_closed")
    sy.sleep(tonumber(arg(req, "s", "0.05")))
    count("after_answer_done")
    return
  elseif p == "/sleep-past-max-time" then
    -- 0.9 s of waiting against a max_time of 0.5 s: waiting is not running.
    for _ = 1, 3 do sy.sleep(0.3) end
    return res:send(200, "fine\n")
  elseif p == "/loop-after-sleep" then
    sy.sleep(0.01)
    while true do end
  elseif p == "/own-coroutine" then
    local ok, err = pcall(coroutine.wrap(function() sy.sleep(0.01) end))
    return res:send(200, tostring(ok) .. " " .. tostring(err) .. "\n")
  elseif p == "/own-coroutine-yields" then
    -- An app's coroutine yields to the hook, which waits on its behalf.
    local gen = coroutine.wrap(function()
      for i = 1, 3 do coroutine.yield(i) end
    end)
    local sum = 0
    for _ = 1, 3 do
      sum = sum + gen()
      sy.sleep(0.001)
    end
    return res:send(200, "sum " .. sum .. "\n")
  elseif p == "/sort" then
    local ok, err = pcall(table.sort, { 3, 2, 1 }, function(a, b)
      sy.sleep(0)
      return a < b
    end)
    return res:send(200, tostring(ok) .. " " .. tostring(err) .. "\n")
  elseif p == "/resume-hook" then
    local me = coroutine.running()
    local ok, err = coroutine.resume(me)
    local ok2, err2 = pcall(coroutine.close, me)
    return res:send(200, tostring(ok) .. " " .. tostring(err) .. "|" .. tostring(ok2) .. " " ..
                         tostring(err2) .. "\n")
  elseif p == "/yield" then
    coroutine.yield()
    return res:send(200, "never\n")
  elseif p == "/fail" then
    sy.sleep(0.01)
    error("request hook failed after its wait")
  elseif p == "/timer" then
    sy.after(0, function()
      sy.sleep(0.01)
      count("timer_after")
    end)
    return res:send(200, "started\n")
  end
  res:send(404, "not found\n")
end

return app
