-- tests/integration/slow_reader_app.lua: fixture app for test_slow_reader.py.
--
-- keepalive_timeout 1 s and send_timeout 10 s: a client that reads a large answer steadily takes
-- longer than the keep-alive timeout, never as long as the send timeout between two writes (the
-- kernel reports room for the next write only once half of the send buffer, up to a few MiB, has
-- drained: the send timeout is generous so that a slow client on a busy machine still passes).
-- /big answers 16 MiB (built when the app loads, so no hook runs long); "?close" asks for
-- Connection: close.
local BIG = ("0123456789abcdef"):rep(1024 * 1024)

return {
  http = { keepalive_timeout = 1, send_timeout = 10 },
  request = function(req, res)
    if req.path == "/big" then
      local h = { ["content-type"] = "application/octet-stream" }
      if req.query == "close" then h.connection = "close" end
      return res:send(200, BIG, h)
    end
    res:send(200, "ok\n")
  end,
}
