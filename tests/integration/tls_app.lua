-- tests/integration/tls_app.lua: the app behind tests/integration/test_tls.py.
--   app.request answers "METHOD TARGET SCHEME SNI BODYLEN" (SNI "-" when none; for OPTIONS in
--   an x-seen field, with no body); /big sends
--   1 MiB; /close answers with Connection: close; POST with an IPP body gets a minimal IPP
--   response (for ipptool).
--   app.upgrade: /tls13 accepts "TLS/1.3"; any other TLS offer is accepted as the client sent
--   it; /need-tls answers 426 with "Upgrade: TLS/1.3"; websocket on /ws echoes, and a message
--   "pub:X" publishes X to the other subscribers of "room".
local sy = require "switchyard"

local app = { http = { header_timeout = 3 } }

local function ipp_response(body)
  local major, minor, _, reqid = string.unpack(">BBHI4", body)
  local function attr(tag, name, value) return string.pack(">Bs2s2", tag, name, value) end
  return string.pack(">BBHI4", major, minor, 0, reqid)
    .. "\1" .. attr(0x47, "attributes-charset", "utf-8")
    .. attr(0x48, "attributes-natural-language", "en")
    .. "\4" .. attr(0x42, "printer-name", "switchyard")
    .. "\3"
end

function app.request(req, res)
  if req.path == "/big" then
    return res:send(200, string.rep("0123456789abcdef", 65536))
  end
  if req.method == "POST" and req.headers["content-type"] == "application/ipp" then
    sy.log("info", "ipp request over " .. req.scheme)
    return res:send(200, ipp_response(req.body), { ["content-type"] = "application/ipp" })
  end
  local line = table.concat({ req.method, req.target, req.scheme, req.sni or "-",
                              tostring(#(req.body or "")) }, " ")
  if req.method == "OPTIONS" then
    -- No body: CUPS leaves the body of its OPTIONS * upgrade request unread.
    return res:send(200, nil, { ["x-seen"] = line })
  end
  res:send(200, line .. "\n", { connection = req.path == "/close" and "close" or nil })
end

function app.upgrade(req)
  if req.path == "/need-tls" then
    return sy.upgrade_required("TLS/1.3", "TLS/1.3 required here\n")
  end
  if req.path == "/tls13" and req:offers("TLS/1.3") then
    return sy.accept("TLS/1.3")
  end
  local tls = req:offers("TLS")
  if tls then
    return sy.accept(tls.version and (tls.name .. "/" .. tls.version) or tls.name)
  end
  if req:offers("websocket") and req.path == "/ws" then
    return sy.accept("websocket", {
      open = function(ws) ws:subscribe("room") end,
      message = function(ws, data, binary)
        if not binary and data:sub(1, 4) == "pub:" then
          ws:publish("room", data:sub(5))
        else
          ws:send(data, binary)
        end
      end,
    })
  end
end

return app
