-- spec/integration/upgrade_spec.lua: the Upgrade rules of DESIGN.md ("Decisions returned by
-- app.upgrade", "What the core answers by itself"), against spec/apps/upgrade.lua.
local H = require "helpers.server"

local srv

local WS_KEYS = { -- key -> Sec-WebSocket-Accept (RFC 6455 4.2.2; the first is the RFC's sample)
  ["dGhlIHNhbXBsZSBub25jZQ=="] = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
  ["x3JJHMbDL1EzLkh9GBhXDw=="] = "HSmrc0sMlYUkAGmm5OPpG2HaGWk=",
  ["AQIDBAUGBwgJCgsMDQ4PEA=="] = "C/0nmHhBztSRGR1CwL6Tf4ZjwpY=",
}

local function std(res)
  local ok, why = H.std_headers(res)
  assert(ok, why)
end

local function up(path, token, extra, opts)
  local headers = { "Upgrade: " .. token, "Connection: Upgrade" }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return H.request((opts and opts.method) or "GET", path, headers, opts and opts.body, opts)
end

local function ws(path, key, extra, opts)
  local headers = { "Sec-WebSocket-Key: " .. key }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return up(path, "websocket", headers, opts)
end

-- Connection lists the "upgrade" option (a 101/426 may add others, e.g. "close").
local function is_upgrade_conn(v)
  if type(v) ~= "string" then return false end
  for tok in v:gmatch("[^,%s]+") do
    if tok:lower() == "upgrade" then return true end
  end
  return false
end

local function stats()
  return H.kv(H.must_roundtrip(srv.port, H.get("/stats")).body)
end

-- The connection is still usable as HTTP/1.1: another request on it gets an answer.
local function still_http(c)
  c:send(H.get("/plain-check"))
  local res = c:must_response()
  assert.are.equal(200, res.status)
  local kv = H.kv(res.body)
  assert.are.equal("/plain-check", kv.path)
  assert.are.equal("no", kv.upgrade_called)
end

describe("Upgrade", function()
  after_each(H.close_all)

  srv = H.serve("spec/apps/upgrade.lua")

  describe("raw token accepted", function()
    it("answers 101 with the token as offered and Connection: Upgrade", function()
      local c = H.must_connect(srv.port)
      c:send(up("/raw", "echo/1"))
      local res = c:must_response()
      assert.are.equal(101, res.status)
      assert.are.equal("HTTP/1.1 101 Switching Protocols", res.status_line)
      assert.are.equal("echo/1", res.headers["upgrade"])
      assert.is_true(is_upgrade_conn(res.headers["connection"]), tostring(res.headers["connection"]))
      -- then the stream is the raw protocol
      c:send("ping\n")
      assert.are.equal("ping", c:line())
    end)

    it("sends no Content-Length with the 101", function()
      local res = H.must_roundtrip(srv.port, up("/raw", "echo/1"))
      assert.are.equal(101, res.status)
      assert.is_nil(res.headers["content-length"])
    end)

    it("sends Date with the 101 (responses always carry Date)", function()
      local res = H.must_roundtrip(srv.port, up("/raw", "echo/1"))
      assert.are.equal(101, res.status)
      assert.truthy(H.is_http_date(res.headers["date"]), tostring(res.headers["date"]))
    end)

    it("keeps the case and version of the offered token in the 101", function()
      local res = H.must_roundtrip(srv.port, up("/raw", "Echo/2.5"))
      assert.are.equal(101, res.status)
      assert.are.equal("Echo/2.5", res.headers["upgrade"])
    end)

    it("picks the accepted token out of several offers", function()
      local res = H.must_roundtrip(srv.port, up("/raw", "foo/2, echo/1, bar"))
      assert.are.equal(101, res.status)
      assert.are.equal("echo/1", res.headers["upgrade"])
    end)

    it("delivers bytes sent in the same write as the request to the data handler", function()
      local c = H.must_connect(srv.port)
      c:send(up("/raw", "echo/1") .. "early-bytes\n")
      local res = c:must_response()
      assert.are.equal(101, res.status)
      assert.are.equal("early-bytes", c:line())
    end)

    it("works with Connection: keep-alive, Upgrade", function()
      local c = H.must_connect(srv.port)
      c:send(H.request("GET", "/raw", { "Upgrade: echo/1", "Connection: keep-alive, Upgrade" }))
      local res = c:must_response()
      assert.are.equal(101, res.status)
      c:send("x\n")
      assert.are.equal("x", c:line())
    end)

    it("matches Connection and Upgrade tokens case-insensitively", function()
      local res = H.must_roundtrip(srv.port,
        H.request("GET", "/raw", { "upgrade: ECHO/1", "connection: UPGRADE" }))
      assert.are.equal(101, res.status)
      assert.are.equal("ECHO/1", res.headers["upgrade"])
    end)
  end)

  describe("app decisions", function()
    it("sy.ignore(): app.request answers as HTTP/1.1 and the connection stays usable", function()
      local c = H.must_connect(srv.port)
      c:send(up("/ignore", "echo/1"))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      std(res)
      local kv = H.kv(res.body)
      assert.are.equal("yes", kv.upgrade_called)
      assert.are.equal("/ignore", kv.path)
      still_http(c)
    end)

    it("nil: same as sy.ignore()", function()
      local c = H.must_connect(srv.port)
      c:send(up("/nil", "echo/1"))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("yes", H.kv(res.body).upgrade_called)
      still_http(c)
    end)

    it("ignored upgrade with a Content-Length body: body read by its framing", function()
      local c = H.must_connect(srv.port)
      c:send(up("/ignore", "echo/1", {}, { method = "POST", body = "hello", cl = true }))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      local kv = H.kv(res.body)
      assert.are.equal("POST", kv.method)
      assert.are.equal("hello", kv.body)
      still_http(c)
    end)

    it("ignored upgrade with a chunked body: body read by its framing", function()
      local c = H.must_connect(srv.port)
      c:send(up("/ignore", "echo/1", { "Transfer-Encoding: chunked" },
                { method = "POST", body = "4\r\nwxyz\r\n0\r\n\r\n" }))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("wxyz", H.kv(res.body).body)
      still_http(c)
    end)

    it("sy.upgrade_required: 426 with Upgrade and Connection: Upgrade, connection stays open", function()
      local c = H.must_connect(srv.port)
      c:send(up("/tls-required", "echo/1"))
      local res = c:must_response()
      assert.are.equal(426, res.status)
      std(res)
      assert.are.equal("TLS/1.3", res.headers["upgrade"])
      assert.is_true(is_upgrade_conn(res.headers["connection"]), tostring(res.headers["connection"]))
      still_http(c)
    end)

    it("sy.reject(403, 'no'): 403 with body, connection stays HTTP/1.1", function()
      local c = H.must_connect(srv.port)
      c:send(up("/reject", "echo/1"))
      local res = c:must_response()
      assert.are.equal(403, res.status)
      std(res)
      assert.are.equal("no", res.body)
      assert.is_nil(res.headers["kind"]) -- no decision fields leak into the answer
      assert.is_nil(res.headers["upgrade"])
      still_http(c)
    end)

    it("accepting a token the client did not offer: 500", function()
      local res = H.must_roundtrip(srv.port, up("/accept-other", "echo/1"))
      assert.are.equal(500, res.status)
      std(res)
      assert.truthy(H.wait_for(function() return srv:log() ~= "" end, 2), "nothing logged")
    end)

    it("an error raised in app.upgrade: 500, and the server goes on", function()
      local res = H.must_roundtrip(srv.port, up("/upgrade-error", "echo/1"))
      assert.are.equal(500, res.status)
      std(res)
      assert.truthy(H.wait_for(function() return srv:log():find("boom-upgrade", 1, true) end, 2),
                    "stderr: " .. srv:log())
      local again = H.must_roundtrip(srv.port, up("/raw", "echo/1"))
      assert.are.equal(101, again.status)
    end)
  end)

  describe("what app.upgrade sees", function()
    it("req.upgrades in client order with names as sent and versions", function()
      local res = H.must_roundtrip(srv.port, up("/ignore", "foo/2, TLS/1.3, bar"))
      local kv = H.kv(res.body)
      assert.are.equal("yes", kv.upgrade_called)
      assert.are.equal("foo/2,TLS/1.3,bar", kv.upgrades)
      assert.are.equal("/ignore", kv.upgrade_path)
      assert.are.equal("GET", kv.upgrade_method)
    end)

    it("req:offers matches names case-insensitively, versions when given", function()
      local kv = H.kv(H.must_roundtrip(srv.port, up("/ignore", "foo/2, TLS/1.3, bar")).body)
      assert.are.equal("TLS/1.3", kv["offers_tls"])
      assert.are.equal("nil", kv["offers_TLS/1.2"])
      assert.are.equal("TLS/1.3", kv["offers_TLS/1.3"])
      assert.are.equal("foo/2", kv["offers_FOO"])
      assert.are.equal("nil", kv["offers_bar/1"])
    end)

    it("h2 over cleartext is dropped from the offers", function()
      local kv = H.kv(H.must_roundtrip(srv.port, up("/ignore", "h2, echo/1")).body)
      assert.are.equal("yes", kv.upgrade_called)
      assert.are.equal("echo/1", kv.upgrades)
      assert.are.equal("nil", kv.offers_h2)
    end)

    it("an h2 offer alone leaves no usable offer: app.upgrade is not called", function()
      local res = H.must_roundtrip(srv.port, up("/ignore", "h2"))
      assert.are.equal(200, res.status)
      assert.are.equal("no", H.kv(res.body).upgrade_called)
    end)

    it("Upgrade in HTTP/1.0 is ignored: app.request answers", function()
      local res = H.must_roundtrip(srv.port, up("/raw", "echo/1", {}, { version = "1.0" }))
      assert.are.equal(200, res.status)
      assert.are.equal("no", H.kv(res.body).upgrade_called)
    end)

    it("Upgrade without `upgrade` in Connection is ignored", function()
      local c = H.must_connect(srv.port)
      c:send(H.request("GET", "/raw", { "Upgrade: echo/1" }))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("no", H.kv(res.body).upgrade_called)
      c:send(H.request("GET", "/raw", { "Upgrade: echo/1", "Connection: keep-alive" }))
      local res2 = c:must_response()
      assert.are.equal(200, res2.status)
      assert.are.equal("no", H.kv(res2.body).upgrade_called)
    end)

    it("a websocket offer with a bad key next to another offer is dropped, not answered 400", function()
      local res = H.must_roundtrip(srv.port, H.request("GET", "/ignore", {
        "Upgrade: websocket, echo/1", "Connection: Upgrade", "Sec-WebSocket-Key: short",
        "Sec-WebSocket-Version: 13" }))
      assert.are.equal(200, res.status)
      local kv = H.kv(res.body)
      assert.are.equal("echo/1", kv.upgrades)
      assert.are.equal("nil", kv.offers_websocket)
    end)
  end)

  describe("websocket handshake", function()
    for key, accept in pairs(WS_KEYS) do
      it("answers 101 with Sec-WebSocket-Accept for key " .. key, function()
        local before = tonumber(stats().ws_open)
        local c = H.must_connect(srv.port)
        c:send(ws("/ws", key, { "Sec-WebSocket-Version: 13" }))
        local res = c:must_response()
        assert.are.equal(101, res.status)
        assert.are.equal(accept, res.headers["sec-websocket-accept"])
        assert.are.equal("websocket", res.headers["upgrade"]:lower())
        assert.is_true(is_upgrade_conn(res.headers["connection"]), tostring(res.headers["connection"]))
        assert.is_nil(res.headers["sec-websocket-protocol"])
        -- open(ws) runs
        assert.truthy(H.wait_for(function() return tonumber(stats().ws_open) == before + 1 end, 3),
                      "open(ws) did not run")
        assert.are.equal("/ws", stats().ws_path)
      end)
    end

    it("sends Sec-WebSocket-Protocol when the app picks an offered subprotocol", function()
      local res = H.must_roundtrip(srv.port, ws("/ws-sub?proto=superchat", "dGhlIHNhbXBsZSBub25jZQ==",
        { "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: chat, superchat" }))
      assert.are.equal(101, res.status)
      assert.are.equal("superchat", res.headers["sec-websocket-protocol"])
      assert.are.equal("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", res.headers["sec-websocket-accept"])
    end)

    it("500 when the app picks a subprotocol the client did not offer", function()
      local res = H.must_roundtrip(srv.port, ws("/ws-sub?proto=other", "dGhlIHNhbXBsZSBub25jZQ==",
        { "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: chat, superchat" }))
      assert.are.equal(500, res.status)
      std(res)
    end)

    it("400 then close for a bad Sec-WebSocket-Key", function()
      local c = H.must_connect(srv.port)
      c:send(ws("/ws", "not-a-valid-key", { "Sec-WebSocket-Version: 13" }))
      local res = c:must_response()
      assert.are.equal(400, res.status)
      std(res)
      assert(c:expect_closed(3))
    end)

    it("400 then close for a missing Sec-WebSocket-Key", function()
      local c = H.must_connect(srv.port)
      c:send(up("/ws", "websocket", { "Sec-WebSocket-Version: 13" }))
      local res = c:must_response()
      assert.are.equal(400, res.status)
      assert(c:expect_closed(3))
    end)

    it("400 then close for a websocket offer on POST", function()
      local c = H.must_connect(srv.port)
      c:send(ws("/ws", "dGhlIHNhbXBsZSBub25jZQ==", { "Sec-WebSocket-Version: 13", "Content-Length: 0" },
                { method = "POST" }))
      local res = c:must_response()
      assert.are.equal(400, res.status)
      std(res)
      assert(c:expect_closed(3))
    end)

    it("426 with Sec-WebSocket-Version: 13 when the version is missing, then close", function()
      local c = H.must_connect(srv.port)
      c:send(ws("/ws", "dGhlIHNhbXBsZSBub25jZQ=="))
      local res = c:must_response()
      assert.are.equal(426, res.status)
      std(res)
      assert.are.equal("13", res.headers["sec-websocket-version"])
      assert.are.equal("websocket", res.headers["upgrade"])
      assert.is_true(is_upgrade_conn(res.headers["connection"]), tostring(res.headers["connection"]))
      assert(c:expect_closed(3))
    end)

    it("426 with Sec-WebSocket-Version: 13 when the version is 8", function()
      local res = H.must_roundtrip(srv.port, ws("/ws", "dGhlIHNhbXBsZSBub25jZQ==",
                                                 { "Sec-WebSocket-Version: 8" }))
      assert.are.equal(426, res.status)
      assert.are.equal("13", res.headers["sec-websocket-version"])
      assert.are.equal("websocket", res.headers["upgrade"])
      assert.is_true(is_upgrade_conn(res.headers["connection"]), tostring(res.headers["connection"]))
    end)

    it("does not call app.upgrade for a websocket offer the core refuses", function()
      local before = tonumber(stats().upgrade_calls)
      H.must_roundtrip(srv.port, ws("/ws", "bad", { "Sec-WebSocket-Version: 13" }))
      H.must_roundtrip(srv.port, ws("/ws", "dGhlIHNhbXBsZSBub25jZQ==", { "Sec-WebSocket-Version: 7" }))
      assert.are.equal(before, tonumber(stats().upgrade_calls))
    end)
  end)

  describe("after upgrades", function()
    it("the server still serves plain requests", function()
      local res = H.must_roundtrip(srv.port, H.get("/after"))
      assert.are.equal(200, res.status)
      assert.are.equal("no", H.kv(res.body).upgrade_called)
      assert.is_true(srv:alive())
    end)
  end)
end)
