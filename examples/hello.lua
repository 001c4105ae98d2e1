-- examples/hello.lua: the smallest switchyard app. Every plain request gets "hello\n"; an
-- upgrade offer is declined (sy.ignore) and the request is answered as ordinary HTTP/1.1.
--
-- Run:   switchyard --listen 127.0.0.1:8080 examples/hello.lua
-- Try:   curl -i http://127.0.0.1:8080/
--        curl -i -H 'Connection: Upgrade' -H 'Upgrade: foo/1' http://127.0.0.1:8080/   # 200, no 101
-- Check: switchyard --check examples/hello.lua
local sy = require "switchyard"

local app = {}

-- Made once, not per request: res:send only reads it.
local TEXT = { ["content-type"] = "text/plain" }

function app.request(req, res)
  res:send(200, "hello\n", TEXT)
end

function app.upgrade(req)
  return sy.ignore() -- same as returning nil: app.request answers
end

return app
