-- tests/integration/h2_flow_app.lua: the app behind test_h2_flow.py: bodies of any size by
-- upgrade, prior knowledge or TLS, with a keep-alive timeout far longer than any of the tests,
-- so a connection that stalls shows as a client timing out, not as an idle close. Building a
-- 16 MiB body takes well under a second, but the time budget counts wall-clock time: on a
-- loaded machine under sanitizers it passed the default 2 s, so the budget here is generous.
local sy = require "switchyard"

local cache = {}

-- n bytes of 64 KiB blocks, block i made of "%07d|" with its number.
local function pattern(n)
  local b = cache[n]
  if b then return b end
  local t = {}
  for i = 0, n // 65536 do t[#t + 1] = ("%07d|"):format(i):rep(8192) end
  b = table.concat(t):sub(1, n)
  cache[n] = b
  return b
end

return {
  http = { keepalive_timeout = 120 },
  lua = { max_time = 60 },
  request = function(req, res)
    if req.path == "/bytes" then
      return res:send(200, pattern(tonumber(req.query) or 0),
                      { ["content-type"] = "application/octet-stream" })
    end
    res:send(200, "hello over HTTP/" .. req.version .. "\n", { ["content-type"] = "text/plain" })
  end,
  upgrade = function(req)
    if req:offers("h2c") then return sy.accept("h2c") end
    return nil
  end,
}
