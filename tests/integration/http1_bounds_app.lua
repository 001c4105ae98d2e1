-- tests/integration/http1_bounds_app.lua: fixture app for test_http1_bounds.py.
--
-- HTTP: send_timeout 2 s (a queue that makes no progress that long closes the connection);
-- high_water from SY_TEST_HIGH_WATER (bytes) when set.
--   /          "ok"
--   /big       a 1 MiB body
--   /late      keeps res unanswered (until /release)
--   /release   answers every kept res and reports "closed=N sent=M" (what res:send returned)
--   /len       the request body's length
--   /host      req.headers.host
--   /status?N  res:send(N): "raised" when res:send raises
-- Upgrades (client never reads, to meet the send timeout on each protocol):
--   websocket /flood   8 messages of 1 MiB on open
--   "flood"            raw: 8 MiB written on open
--   h2c / prior knowledge: /big as above
local sy = require "switchyard"

local BIG = string.rep("b", 1024 * 1024)
local kept = {}

local function flood_ws(ws)
  for _ = 1, 8 do ws:send(BIG, true) end
end

return {
  http = {
    header_timeout = 5,
    send_timeout = 2,
    high_water = tonumber(os.getenv("SY_TEST_HIGH_WATER")),
  },
  upgrade = function(req)
    if req:offers("websocket") and req.path == "/flood" then
      return sy.accept("websocket", { open = flood_ws })
    end
    if req:offers("flood") then
      return sy.accept("flood", {
        open = function(conn) for _ = 1, 8 do conn:write(BIG) end end,
      })
    end
    if req:offers("h2c") then return sy.accept("h2c") end
    return nil
  end,
  request = function(req, res)
    local p = req.path
    if p == "/big" then
      res:send(200, BIG)
    elseif p == "/late" then
      kept[#kept + 1] = res
    elseif p == "/release" then
      local closed, sent = 0, 0
      for i = 1, #kept do
        local ok, err = kept[i]:send(200, "late\n")
        if ok then sent = sent + 1 elseif err == "closed" then closed = closed + 1 end
      end
      kept = {}
      res:send(200, string.format("closed=%d sent=%d\n", closed, sent))
    elseif p == "/len" then
      res:send(200, tostring(#(req.body or "")))
    elseif p == "/host" then
      res:send(200, tostring(req.headers.host))
    elseif p == "/status" then
      local ok = pcall(res.send, res, tonumber(req.query), "x")
      if not ok then res:send(200, "raised") end
    else
      res:send(200, "ok\n")
    end
  end,
}
