-- spec/integration/http1_spec.lua: HTTP/1.1 framing, persistence and the core's own error
-- answers, against spec/apps/basic.lua.
local H = require "helpers.server"

local srv

local function std(res)
  local ok, why = H.std_headers(res)
  assert(ok, why)
end

-- Sends raw on a fresh connection, expects `status`, standard headers, then the close.
local function expect_error_and_close(raw, status)
  local c = H.must_connect(srv.port)
  c:send(raw)
  local res = c:must_response()
  assert.are.equal(status, res.status)
  std(res)
  assert(c:expect_closed(3))
  -- The server still serves afterwards.
  local again = H.must_roundtrip(srv.port, H.get("/"))
  assert.are.equal(200, again.status)
  assert.are.equal("hello\n", again.body)
end

describe("HTTP/1.1", function()
  after_each(H.close_all)

  srv = H.serve("spec/apps/basic.lua")

  describe("responses", function()
    it("answers GET with status, body, Date and Content-Length", function()
      local res = H.must_roundtrip(srv.port, H.get("/"))
      assert.are.equal("1.1", res.version)
      assert.are.equal(200, res.status)
      assert.are.equal("hello\n", res.body)
      assert.are.equal("6", res.headers["content-length"])
      assert.are.equal("text/plain", res.headers["content-type"])
      std(res)
    end)

    it("sends the app's headers", function()
      local res = H.must_roundtrip(srv.port, H.get("/headers"))
      assert.are.equal("yes", res.headers["x-custom"])
      assert.are.equal("text/x-test", res.headers["content-type"])
      std(res)
    end)

    it("answers HEAD with the headers of GET and no body", function()
      local c = H.must_connect(srv.port)
      -- A GET pipelined behind the HEAD: if a body followed the HEAD response, the next
      -- response would not start where it should.
      c:send(H.request("HEAD", "/") .. H.get("/fast"))
      local head = c:must_response({ head = true })
      assert.are.equal(200, head.status)
      assert.are.equal("6", head.headers["content-length"])
      std(head)
      local nxt = c:must_response()
      assert.are.equal(200, nxt.status)
      assert.are.equal("fast", nxt.body)
    end)

    it("sends no Content-Length and no body with 204", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/status?code=204") .. H.get("/fast"))
      local res = c:must_response()
      assert.are.equal(204, res.status)
      std(res)
      local nxt = c:must_response()
      assert.are.equal("fast", nxt.body)
    end)

    it("sends no Content-Length and no body with 304", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/status?code=304") .. H.get("/fast"))
      local res = c:must_response()
      assert.are.equal(304, res.status)
      std(res)
      assert.are.equal("fast", c:must_response().body)
    end)

    it("sends Content-Length: 0 for an empty 200", function()
      local res = H.must_roundtrip(srv.port, H.get("/status?code=200"))
      assert.are.equal(200, res.status)
      assert.are.equal("0", res.headers["content-length"])
      std(res)
    end)

    it("sends a large body whole", function()
      local res = H.must_roundtrip(srv.port, H.get("/big?n=3000000"))
      assert.are.equal(200, res.status)
      assert.are.equal(3000000, #res.body)
      assert.are.equal(string.rep("x", 3000000), res.body)
    end)

    it("answers 404 from the app for an unknown path", function()
      local res = H.must_roundtrip(srv.port, H.get("/nowhere"))
      assert.are.equal(404, res.status)
      std(res)
    end)
  end)

  describe("persistence", function()
    it("keeps a 1.1 connection open by default", function()
      local c = H.must_connect(srv.port)
      for i = 1, 3 do
        c:send(H.get("/fast"))
        local res = c:must_response()
        assert.are.equal(200, res.status, "request " .. i)
        assert.are.equal("fast", res.body)
      end
      local extra = c:read_available(0.2)
      assert.are.equal("", extra)
    end)

    it("closes after the response with Connection: close", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/", { "Connection: close" }))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("hello\n", res.body)
      assert(c:expect_closed(3))
    end)

    it("closes an HTTP/1.0 connection after the response", function()
      local c = H.must_connect(srv.port)
      c:send(H.request("GET", "/", {}, nil, { version = "1.0", no_host = true }))
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("hello\n", res.body)
      assert(c:expect_closed(3))
    end)

    it("keeps an HTTP/1.0 connection with Connection: keep-alive", function()
      local c = H.must_connect(srv.port)
      local req = H.request("GET", "/fast", { "Connection: keep-alive" }, nil, { version = "1.0" })
      c:send(req)
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("fast", res.body)
      c:send(req)
      local res2 = c:must_response()
      assert.are.equal("fast", res2.body)
    end)

    it("answers pipelined requests in order", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/fast") .. H.get("/") .. H.get("/fast", { "Connection: close" }))
      assert.are.equal("fast", c:must_response().body)
      assert.are.equal("hello\n", c:must_response().body)
      assert.are.equal("fast", c:must_response().body)
      assert(c:expect_closed(3))
    end)

    it("keeps pipelined order when the first answer comes later from a timer", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/later?ms=300") .. H.get("/fast"))
      local first = c:must_response()
      assert.are.equal(200, first.status)
      assert.are.equal("later", first.body)
      local second = c:must_response()
      assert.are.equal("fast", second.body)
    end)

    it("serves pipelined requests split at odd offsets", function()
      local c = H.must_connect(srv.port)
      local all = H.get("/fast") .. H.request("POST", "/body", {}, "abc", { cl = true })
      for i = 1, #all, 7 do
        c:send(all:sub(i, i + 6))
        H.sleep(0.002)
      end
      assert.are.equal("fast", c:must_response().body)
      assert.are.equal("abc", c:must_response().body)
    end)
  end)

  describe("request bodies", function()
    it("reads a Content-Length body", function()
      local res = H.must_roundtrip(srv.port, H.request("POST", "/body", {}, "hello body", { cl = true }))
      assert.are.equal(200, res.status)
      assert.are.equal("hello body", res.body)
      assert.are.equal("string", res.headers["x-body-type"])
    end)

    it("gives req.body nil when there is no body", function()
      local res = H.must_roundtrip(srv.port, H.get("/body"))
      assert.are.equal("nil", res.headers["x-body-type"])
    end)

    it("accepts a body of exactly 1 MiB", function()
      local body = string.rep("0123456789abcdef", 65536)
      local res = H.must_roundtrip(srv.port, H.request("POST", "/len", {}, body, { cl = true }))
      assert.are.equal(200, res.status)
      assert.are.equal("len=1048576", res.body)
    end)

    it("delivers a chunked body whole in req.body", function()
      local raw = H.request("POST", "/body", { "Transfer-Encoding: chunked" },
                            "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
      local res = H.must_roundtrip(srv.port, raw)
      assert.are.equal(200, res.status)
      assert.are.equal("hello world", res.body)
    end)

    it("decodes chunk extensions, upper-case hex and trailers", function()
      local raw = H.request("POST", "/body", { "Transfer-Encoding: chunked" },
                            "A;ext=1\r\n0123456789\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n")
      local res = H.must_roundtrip(srv.port, raw)
      assert.are.equal(200, res.status)
      assert.are.equal("0123456789!", res.body)
    end)

    it("reads a chunked body that arrives in pieces, then keeps the connection", function()
      local c = H.must_connect(srv.port)
      c:send(H.request("POST", "/body", { "Transfer-Encoding: chunked" }))
      for _, piece in ipairs({ "3\r", "\nabc", "\r\n", "2\r\nde\r\n0", "\r\n\r\n" }) do
        H.sleep(0.02)
        c:send(piece)
      end
      local res = c:must_response()
      assert.are.equal("abcde", res.body)
      c:send(H.get("/fast"))
      assert.are.equal("fast", c:must_response().body)
    end)

    it("answers Expect: 100-continue with 100 before the body is sent", function()
      local c = H.must_connect(srv.port)
      c:send(H.request("POST", "/body", { "Content-Length: 5", "Expect: 100-continue" }))
      local interim = c:must_response({ timeout = 3 })
      assert.are.equal(100, interim.status)
      assert.are.equal("HTTP/1.1 100 Continue", interim.status_line)
      c:send("hello")
      local res = c:must_response()
      assert.are.equal(200, res.status)
      assert.are.equal("hello", res.body)
    end)
  end)

  describe("bad input (answer, then close)", function()
    it("400 for a malformed request line", function()
      expect_error_and_close("GARBAGE\r\n\r\n", 400)
    end)

    it("400 for an unknown HTTP version", function()
      expect_error_and_close("GET / HTTP/9.9\r\nHost: x\r\n\r\n", 400)
    end)

    it("400 for a header line without a colon", function()
      expect_error_and_close("GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n", 400)
    end)

    it("400 for whitespace before the colon", function()
      expect_error_and_close("GET / HTTP/1.1\r\nHost: x\r\nX-A : b\r\n\r\n", 400)
    end)

    it("400 for an obs-fold continuation line", function()
      expect_error_and_close("GET / HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n", 400)
    end)

    it("431 for a header block over 16 KiB", function()
      local fill = string.rep("a", 17 * 1024)
      expect_error_and_close("GET / HTTP/1.1\r\nHost: x\r\nX-Fill: " .. fill .. "\r\n\r\n", 431)
    end)

    it("serves a header block of 12 KiB", function()
      local fill = string.rep("a", 12 * 1024)
      local res = H.must_roundtrip(srv.port, H.get("/", { "X-Fill: " .. fill }))
      assert.are.equal(200, res.status)
    end)

    it("414 for a request line over 16 KiB", function()
      local target = "/" .. string.rep("a", 17 * 1024)
      expect_error_and_close("GET " .. target .. " HTTP/1.1\r\nHost: x\r\n\r\n", 414)
    end)

    it("413 for a Content-Length over 1 MiB (before the body is sent)", function()
      expect_error_and_close(H.request("POST", "/body", { "Content-Length: 2097152" }), 413)
    end)

    it("501 for Transfer-Encoding gzip", function()
      expect_error_and_close(H.request("POST", "/body", { "Transfer-Encoding: gzip" }), 501)
    end)

    it("400 for Content-Length together with Transfer-Encoding", function()
      expect_error_and_close(H.request("POST", "/body", { "Content-Length: 5",
                                                         "Transfer-Encoding: chunked" },
                                       "0\r\n\r\n"), 400)
    end)

    it("400 for an invalid Content-Length", function()
      expect_error_and_close(H.request("POST", "/body", { "Content-Length: abc" }), 400)
    end)

    it("400 for conflicting Content-Length fields", function()
      expect_error_and_close(H.request("POST", "/body", { "Content-Length: 3",
                                                         "Content-Length: 4" }, "abcd"), 400)
    end)

    it("400 for a bad chunk size", function()
      expect_error_and_close(H.request("POST", "/body", { "Transfer-Encoding: chunked" },
                                       "zz\r\nhello\r\n0\r\n\r\n"), 400)
    end)

    it("400 for chunk data without its CRLF", function()
      expect_error_and_close(H.request("POST", "/body", { "Transfer-Encoding: chunked" },
                                       "3\r\nabcXY0\r\n\r\n"), 400)
    end)

    it("400 for a missing Host in HTTP/1.1", function()
      expect_error_and_close("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400)
    end)

    it("400 for two Host fields", function()
      expect_error_and_close("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)
    end)

    it("serves HTTP/1.0 without Host", function()
      local res = H.must_roundtrip(srv.port, "GET / HTTP/1.0\r\n\r\n")
      assert.are.equal(200, res.status)
      assert.are.equal("hello\n", res.body)
    end)

    it("answers the good request before a bad one on the same connection", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/fast") .. "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
      assert.are.equal("fast", c:must_response().body)
      assert.are.equal(400, c:must_response().status)
      assert(c:expect_closed(3))
    end)
  end)

  describe("after errors", function()
    it("still serves many requests after a burst of bad ones", function()
      for _ = 1, 10 do
        local res = H.must_roundtrip(srv.port, "BAD\r\n\r\n")
        assert.are.equal(400, res.status)
      end
      for _ = 1, 10 do
        assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
      end
      assert.is_true(srv:alive())
    end)

    it("survives a client that disconnects mid-request", function()
      local c = H.must_connect(srv.port)
      c:send("POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
      c:close()
      local c2 = H.must_connect(srv.port)
      c2:send("GET / HTTP/1.1\r\nHo")
      c2:close()
      H.sleep(0.1)
      assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
    end)
  end)
end)

describe("an app without a request hook", function()
  it("answers 404 with standard headers", function()
    local s = H.must_start("spec/apps/noreq.lua")
    finally(function() s:cleanup() end)
    local res = H.must_roundtrip(s.port, H.get("/"))
    assert.are.equal(404, res.status)
    std(res)
    assert.are.equal(0, s:stop())
  end)
end)
