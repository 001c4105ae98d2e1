-- examples/require_tls.lua: insist on TLS with the mandatory advertisement of RFC 2817 §4.2,
-- then accept the client's in-place upgrade (RFC 2817 §3).
--   GET /         200 "public\n" (plain HTTP is fine here)
--   /secret       over cleartext: 426 Upgrade Required, "Upgrade: TLS/1.3", "Connection:
--                 Upgrade"; over TLS (req.scheme == "https"): 200 "secret\n"
--   any request offering an upgrade other than TLS/1.3: 426 the same way
--   a request offering TLS/1.3: accepted: 101 with "Upgrade: TLS/1.3, HTTP/1.1", the TLS
--   handshake runs on the same socket (TLS 1.3 at least) and the request is then answered
--   over TLS by app.request; the connection goes on as HTTP/1.1 over TLS.
--
-- Run:   switchyard --listen 127.0.0.1:8080 --cert cert.pem --key key.pem examples/require_tls.lua
--        (without --cert/--key accepting the upgrade is an app error: 500)
-- Try:   curl -i http://127.0.0.1:8080/                 # 200
--        curl -i http://127.0.0.1:8080/secret           # 426, Upgrade: TLS/1.3
--        ipptool and tests/integration/test_tls.py speak the upgrade itself.
--
-- Never reuse a certificate that an HTTPS service also serves (see README, Opossum).
local sy = require "switchyard"

local app = {}

function app.request(req, res)
  if req.path == "/secret" then
    if req.scheme ~= "https" then
      return res:upgrade_required("TLS/1.3", "this resource needs TLS/1.3\n")
    end
    res:send(200, "secret\n", { ["content-type"] = "text/plain" })
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
