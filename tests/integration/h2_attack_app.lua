-- tests/integration/h2_attack_app.lua: the app behind test_h2_attacks.py: a 1 MiB body for
-- clients that never open their window, and a short keep-alive timeout (2 s), which is also how
-- long an HTTP/2 response may make no progress before the connection is closed.
local big = ("0123456789abcdef"):rep(65536)   -- 1 MiB, made once

return {
  http = { keepalive_timeout = 2, send_timeout = 2 },
  request = function(req, res)
    if req.path == "/big" then return res:send(200, big) end
    res:send(200, "ok " .. req.path .. "\n", { ["content-type"] = "text/plain" })
  end,
}
