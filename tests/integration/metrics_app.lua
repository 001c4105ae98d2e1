-- The app of test_metrics.py: each path does one thing the metrics page must count.
local sy = require "switchyard"

local hits = sy.counter("app_hits_total", "Requests by path")
local again = sy.counter("app_hits_total", "Requests by path (declared twice)")
local rooms = sy.gauge("app_rooms", "Rooms open")
local level = sy.gauge("app_level")

local app = { lua = { max_time = 0.5 } }

local function echo(ws, data, binary)
  if data == "bye" then
    ws:close(1000, "done")
  else
    ws:send(data, binary)
  end
end

-- What misuse answers: each entry is "ok" when the call raised with the expected words.
local function checks()
  local out = {}
  local function expect(words, f, ...)
    local ok, err = pcall(f, ...)
    out[#out + 1] = (not ok and tostring(err):find(words, 1, true)) and "ok"
      or ("bad: " .. tostring(err))
  end
  expect("metric name", sy.counter, "bad-name", "x")
  expect("metric name", sy.gauge, "9lives")
  expect("switchyard_", sy.counter, "switchyard_mine_total")
  expect("another type", sy.gauge, "app_hits_total")
  expect("only goes up", function() hits:inc(-1) end)
  expect("set is for gauges", function() hits:set(1) end)
  expect("label name", function() hits:inc(1, { ["bad-label"] = "x" }) end)
  expect("finite", function() rooms:set(0 / 0) end)
  return table.concat(out, ",")
end

function app.request(req, res)
  local p = req.path
  hits:inc(1, { path = p })
  if p == "/" then
    again:inc(1, { path = "/again" }) -- the same family as hits
    return res:send(200, "hello\n")
  elseif p == "/err" then
    error("boom")
  elseif p == "/spin" then
    while true do end
  elseif p == "/pub" then
    return res:send(200, tostring(sy.publish("room", "news")))
  elseif p == "/gauges" then
    rooms:set(3)
    rooms:inc()
    rooms:dec(2, { kind = "x" })
    level:set(2.5, { a = 'q"uo\\te', b = 7 })
    return res:send(200, tostring(rooms:value()))
  elseif p == "/checks" then
    return res:send(200, checks())
  elseif p == "/ignore" then
    return res:send(200, "ignored\n")
  end
  res:send(404, "nf\n")
end

function app.upgrade(req)
  local p = req.path
  if p == "/echo" and req:offers("websocket") then
    return sy.accept("websocket", { message = echo })
  elseif p == "/chat" then
    return sy.accept("websocket", {
      open = function(ws) ws:subscribe("room") end,
      message = echo,
    })
  elseif p == "/raw" and req:offers("foo") then
    return sy.accept("foo", { data = function(c, d) c:write(d) end })
  elseif p == "/reject" then
    return sy.reject(403, "no\n")
  elseif p == "/426" then
    return sy.upgrade_required("websocket")
  elseif p == "/uerr" then
    error("upgrade boom")
  end
  return nil -- /ignore and the rest: served by app.request
end

return app
