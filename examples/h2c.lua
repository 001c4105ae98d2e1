-- examples/h2c.lua: HTTP/2 over cleartext, by upgrade (h2c) or with prior knowledge.
--
--   switchyard --listen 127.0.0.1:8080 examples/h2c.lua
--   curl --http2 http://127.0.0.1:8080/                   # HTTP/1.1 + Upgrade: h2c -> 101 -> h2
--   curl --http2-prior-knowledge http://127.0.0.1:8080/   # HTTP/2 from the first byte
--   nghttp -uv http://127.0.0.1:8080/                     # the upgrade, frame by frame
--
-- Every HTTP/2 stream (stream 1 of the upgrade included) reaches app.request with
-- req.version == "2"; the same code answers HTTP/1.1 requests.
local sy = require "switchyard"
local app = {}

function app.upgrade(req)
  if req:offers("h2c") then return sy.accept("h2c") end
  return nil                                   -- anything else: answered as HTTP/1.1
end

function app.request(req, res)
  if req.path == "/slow" then
    -- Streams are independent: this one answers later while others go on.
    sy.after(0.5, function() res:send(200, "slow " .. req.version .. "\n") end)
    return
  end
  if req.path == "/echo" then
    return res:send(200, req.body or "", { ["content-type"] = "application/octet-stream" })
  end
  res:send(200, ("hello over HTTP/%s (%s %s)\n"):format(req.version, req.method, req.path),
           { ["content-type"] = "text/plain" })
end

return app
