-- examples/require_tls.lua: insist on TLS with the mandatory advertisement of RFC 2817 §4.2.
--   GET /         200 "public\n" (plain HTTP is fine here)
--   /secret       426 Upgrade Required, "Upgrade: TLS/1.3", "Connection: Upgrade"
--   any request offering an upgrade other than TLS/1.3: 426 the same way
--   a request offering TLS/1.3: accepted, the TLS handshake runs on the same socket and the
--   request is then answered over TLS by app.request (needs --cert and --key).
--
-- Run:   switchyard --listen 127.0.0.1:8080 examples/require_tls.lua
--        (to accept the TLS/1.3 upgrade as well: add --cert cert.pem --key key.pem)
-- Try:   curl -i http://127.0.0.1:8080/                 # 200
--        curl -i http://127.0.0.1:8080/secret           # 426, Upgrade: TLS/1.3
--        curl -i -H 'Connection: Upgrade' -H 'Upgrade: websocket' http://127.0.0.1:8080/  # 426
--
-- Never reuse a certificate that an HTTPS service also serves (see README, Opossum).
local sy = require "switchyard"

local app = {}

function app.request(req, res)
  if req.path == "/secret" then
    res:upgrade_required("TLS/1.3", "this resource needs TLS/1.3\n")
  elseif req.path == "/" and (req.method == "GET" or req.method == "HEAD") then
    res:send(200, "public\n", { ["content-type"] = "text/plain" })
  else
    res:send(404, "not found\n", { ["content-type"] = "text/plain" })
  end
end

function app.upgrade(req)
  if req:offers("TLS/1.3") then
    return sy.accept("TLS/1.3")
  end
  return sy.upgrade_required("TLS/1.3", "only TLS/1.3 is offered here\n")
end

return app
