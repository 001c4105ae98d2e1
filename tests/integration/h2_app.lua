-- tests/integration/h2_app.lua: the app behind the HTTP/2 tests (test_h2*.py, test_h2_clients.sh).
local sy = require "switchyard"

local held = {}   -- responses parked by /hold/NAME, answered or probed later

local function info(req)
  local names = {}
  for k in pairs(req.headers) do names[#names + 1] = k end
  table.sort(names)
  return table.concat({
    "version=" .. req.version, "method=" .. req.method, "path=" .. req.path,
    "query=" .. tostring(req.query), "target=" .. req.target, "scheme=" .. req.scheme,
    "body=" .. tostring(req.body), "host=" .. tostring(req.headers.host),
    "x-a=" .. tostring(req.headers["x-a"]), "cookie=" .. tostring(req.headers.cookie),
    "names=" .. table.concat(names, ","),
  }, "\n") .. "\n"
end

-- n bytes of 64 KiB blocks, block i made of "%07d|" with its number: loss, reordering and
-- shifts all show.
local function pattern(n)
  local t = {}
  for i = 0, n // 65536 do t[#t + 1] = ("%07d|"):format(i):rep(8192) end
  return table.concat(t):sub(1, n)
end
local big

return {
  http = { max_body = 64 * 1024 },
  request = function(req, res)
    local p = req.path
    if p == "/bytes" then
      local n = tonumber(req.query) or 0
      if n == 16 * 1024 * 1024 then
        big = big or pattern(n)
        return res:send(200, big)
      end
      return res:send(200, pattern(n))
    elseif p == "/later" then
      local ms = tonumber(req.query) or 100
      sy.after(ms / 1000, function() res:send(200, "later " .. ms .. "\n") end)
    elseif p:match("^/hold/") then
      held[p:sub(7)] = res
    elseif p:match("^/probe/") then
      -- Answers the held response and reports what res:send said.
      local r = held[p:sub(8)]
      if not r then return res:send(404, "nothing held\n") end
      local ok, err = r:send(200, "released\n")
      res:send(200, tostring(ok) .. " " .. tostring(err) .. "\n")
    elseif p == "/echo" then
      res:send(200, req.body or "", { ["content-type"] = "application/octet-stream" })
    elseif p == "/headers" then
      res:send(201, "h\n", { ["x-one"] = "1", ["set-cookie"] = { "a=1", "b=2" },
                             connection = "close", ["keep-alive"] = "5", upgrade = "foo" })
    elseif p == "/error" then
      error("boom")
    elseif p == "/nocontent" then
      res:send(204)
    else
      res:send(200, info(req), { ["content-type"] = "text/plain" })
    end
  end,
  upgrade = function(req)
    if req:offers("h2c") then return sy.accept("h2c") end
    return nil
  end,
}
