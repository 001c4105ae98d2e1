-- spec/integration/ws_api_spec.lua: the Lua WebSocket API end to end (handlers open, message,
-- close, ping, pong, drain; ws.data/path/subprotocol/remote_addr; ws:send, ws:ping, ws:close,
-- ws:buffered; pub/sub; backpressure policies; idle timeout and keepalive pings; accept options
-- and app.options; SIGTERM) against spec/apps/ws_api.lua and spec/apps/ws_defaults.lua, with
-- the frame client of spec/helpers/ws.lua. Every wait is bounded.
local H = require "helpers.server"
local W = require "helpers.ws"

local MIB = 1024 * 1024

local srv

local function log_lines()
  local body = H.must_roundtrip(srv.port, H.get("/log")).body
  local t = {}
  for line in body:gmatch("[^\n]+") do t[#t + 1] = line end
  return t
end

-- Waits until a log line equals `want` (or matches it, when it is a pattern and plain is
-- false); returns the line or raises with the log.
local function wait_log(want, pattern)
  local found = H.wait_for(function()
    for _, l in ipairs(log_lines()) do
      if (pattern and l:match(want)) or (not pattern and l == want) then return l end
    end
  end)
  assert(found, ("log line %q not seen; log:\n%s"):format(want, table.concat(log_lines(), "\n")))
  return found
end

-- The next event must be a close frame with `code`; answers it and expects TCP to close.
local function expect_close(c, code, opts)
  opts = opts or {}
  local kind, got, reason = W.read(c, opts.timeout)
  assert.are.equal("close", kind, ("want close %s, got %s %q"):format(code, tostring(kind),
                                                                       tostring(got)))
  assert.are.equal(code, got)
  if opts.reason then assert.are.equal(opts.reason, reason) end
  if opts.reply ~= false then c:send(W.frame(W.CLOSE, W.close_payload(code))) end
  assert(W.eof(c, opts.eof_timeout))
  return reason
end

-- Client-initiated clean close: the code comes back, then TCP closes.
local function finish(c, code)
  W.close(c, code or 1000, "done")
  local kind, got = W.read(c)
  assert.are.equal("close", kind)
  assert.are.equal(code or 1000, got)
  assert(W.eof(c))
end

describe("websocket Lua API", function()
  after_each(H.close_all)

  srv = H.serve("spec/apps/ws_api.lua")

  before_each(function() H.must_roundtrip(srv.port, H.get("/log?clear=1")) end)

  describe("handlers", function()
    it("open, message, ping, pong and close see their events", function()
      local c = W.open(srv.port, "/echo")
      wait_log("open /echo")
      assert.are.equal("hello", W.call(c, "hello"))
      W.binary(c, "\0\1\255")
      assert.are.same({ "binary", "\0\1\255" }, { W.read(c) })
      W.ping(c, "are you there")
      assert.are.same({ "pong", "are you there" }, { W.read(c) })
      wait_log("ping are you there")
      W.pong(c, "unsolicited")
      wait_log("pong unsolicited")
      finish(c, 4001)
      wait_log("close 4001 done")
    end)

    it("close gets 1006 when TCP drops without a close frame", function()
      local c = W.open(srv.port, "/echo")
      wait_log("open /echo")
      c:close()
      wait_log("close 1006 ")
    end)

    it("close gets the peer's code and reason", function()
      local c = W.open(srv.port, "/echo")
      W.close(c, 3333, "reason é")
      local kind, code = W.read(c)
      assert.are.same({ "close", 3333 }, { kind, code })
      assert(W.eof(c))
      wait_log("close 3333 reason é")
    end)
  end)

  describe("ws fields", function()
    it("has path (without the query), subprotocol, remote_addr and a data table", function()
      local c, res = W.open(srv.port, "/info?x=1", { "Sec-WebSocket-Protocol: other, chat" })
      assert.are.equal("chat", res.headers["sec-websocket-protocol"])
      assert.are.equal("path=/info sub=chat addr=127.0.0.1 data=table", W.call(c, "info"))
      finish(c)
    end)

    it("has a nil subprotocol when none was chosen", function()
      local c, res = W.open(srv.port, "/info")
      assert.is_nil(res.headers["sec-websocket-protocol"])
      assert.are.equal("path=/info sub=nil addr=127.0.0.1 data=table", W.call(c, "info"))
      finish(c)
    end)

    it("keeps ws.data per connection across messages", function()
      local a = W.open(srv.port, "/info")
      local b = W.open(srv.port, "/info")
      assert.are.equal("1", W.call(a, "count"))
      assert.are.equal("2", W.call(a, "count"))
      assert.are.equal("1", W.call(b, "count"))
      assert.are.equal("3", W.call(a, "count"))
      finish(a)
      finish(b)
    end)
  end)

  describe("ws:send", function()
    it("sends from open", function()
      local c = W.open(srv.port, "/open-send")
      local first = W.must_text(c)
      local line = wait_log("^open%-send ", true)
      assert.are.equal("open-send true", line)
      assert.are.equal("from open", first)
    end)

    it("sends from a timer", function()
      local c = W.open(srv.port, "/open-send")
      local got = {}
      for _ = 1, 2 do
        local kind, data = W.read(c, 2)
        if kind then got[#got + 1] = data end
      end
      assert.is_truthy(got[1] == "from timer" or got[2] == "from timer",
                       "no message from the timer; got: " .. table.concat(got, " | "))
      wait_log("timer-send true")
    end)

    it("sends to another connection", function()
      local a = W.open(srv.port, "/relay")
      local b = W.open(srv.port, "/relay")
      local idb = W.call(b, "whoami"):match("^id (%d+)$")
      assert.is_truthy(idb)
      assert.are.equal("sent true nil", W.call(a, "to " .. idb .. " hello b"))
      assert.are.equal("hello b", W.must_text(b))
      finish(b)
      assert.are.equal("sent nil closed", W.call(a, "to " .. idb .. " too late"))
      finish(a)
    end)

    it("answers nil, 'closed' on a closed ws (close handler and later)", function()
      local c = W.open(srv.port, "/closed-api")
      finish(c)
      wait_log("closed-api code=1000 send=nil,closed ping=nil,closed close=nil,closed "
               .. "subscribe=nil,closed buffered=0")
      wait_log("closed-api later send=nil,closed")
    end)

    it("answers nil, 'closed' right after ws:close", function()
      local c = W.open(srv.port, "/cmd")
      W.text(c, "close-then-send")
      expect_close(c, 1000)
      wait_log("close-then-send nil closed")
    end)

    it("raises on text that is not UTF-8; the same bytes go as binary", function()
      local c = W.open(srv.port, "/cmd")
      local answer = W.call(c, "badtext")
      assert.is_truthy(answer:match("^error .*UTF%-8"), answer)
      W.text(c, "badbin")
      assert.are.same({ "binary", "bad \255\254 text" }, { W.read(c) })
      finish(c)
    end)

    it("ws:buffered() is 0 when the output is flushed", function()
      local c = W.open(srv.port, "/cmd")
      assert.are.equal("0", W.call(c, "buffered"))
      finish(c)
    end)
  end)

  describe("ws:close and ws:ping", function()
    for _, code in ipairs({ 1000, 1001, 3000, 4999 }) do
      it("closes with code " .. code .. " and a reason; TCP closes after the reply", function()
        local c = W.open(srv.port, "/cmd")
        W.text(c, "close " .. code .. " why " .. code)
        expect_close(c, code, { reason = "why " .. code })
        wait_log("cmd-close " .. code .. " ")
      end)
    end

    it("closes with 1000 by default", function()
      local c = W.open(srv.port, "/cmd")
      W.text(c, "close -")
      expect_close(c, 1000, { reason = "" })
    end)

    for _, code in ipairs({ 999, 1002, 1005, 1006, 1011, 2999, 5000 }) do
      it("raises for code " .. code .. " and keeps the connection", function()
        local c = W.open(srv.port, "/cmd")
        local answer = W.call(c, "close " .. code .. " x")
        assert.is_truthy(answer:match("^error "), answer)
        assert.are.equal("0", W.call(c, "buffered"))
        finish(c)
      end)
    end

    it("raises for a reason over 123 bytes", function()
      local c = W.open(srv.port, "/cmd")
      local answer = W.call(c, "close 1000 " .. string.rep("r", 124))
      assert.is_truthy(answer:match("^error "), answer)
      finish(c)
    end)

    it("closes from open", function()
      local c = W.open(srv.port, "/open-close")
      expect_close(c, 4000, { reason = "bye from open" })
      wait_log("open-close true")
    end)

    it("ws:ping reaches the client; the pong handler gets the payload", function()
      local c = W.open(srv.port, "/cmd")
      W.text(c, "ping abc")
      assert.are.same({ "ping", "abc" }, { W.read(c) })
      W.pong(c, "abc")
      assert.are.equal("pong abc", W.must_text(c))
      finish(c)
    end)

    it("a client ping is answered by the core with the same payload", function()
      local c = W.open(srv.port, "/cmd")
      W.ping(c, string.rep("p", 125))
      assert.are.same({ "pong", string.rep("p", 125) }, { W.read(c) })
      finish(c)
    end)
  end)

  describe("handler errors", function()
    it("an error in message closes with 1011; the server keeps serving", function()
      local c = W.open(srv.port, "/error")
      assert.are.equal("fine", W.call(c, "ok"))
      W.text(c, "boom")
      expect_close(c, 1011)
      local d = W.open(srv.port, "/echo")
      assert.are.equal("still here", W.call(d, "still here"))
      finish(d)
      assert.is_truthy(srv:log():find("boom in message", 1, true), srv:log())
    end)

    it("an error in open closes with 1011", function()
      local c = W.open(srv.port, "/error-open")
      expect_close(c, 1011)
      assert.is_truthy(srv:log():find("boom in open", 1, true))
    end)

    it("an error in ping closes with 1011 after the pong", function()
      local c = W.open(srv.port, "/error")
      W.ping(c, "x")
      assert.are.same({ "pong", "x" }, { W.read(c) })
      expect_close(c, 1011)
    end)

    it("an error in close is logged; the server keeps serving", function()
      local c = W.open(srv.port, "/error-close")
      assert.are.equal("fine", W.call(c, "ok"))
      finish(c)
      H.wait_for(function() return srv:log():find("boom in close", 1, true) end)
      assert.is_truthy(srv:log():find("boom in close", 1, true))
      local d = W.open(srv.port, "/echo")
      assert.are.equal("ok", W.call(d, "ok"))
      finish(d)
    end)
  end)

  -- Frames sent in one write reach the server in one read: their messages are handed to Lua
  -- together, and each must still behave as if it came alone.
  describe("messages of one read", function()
    local function burst(c, frames)
      local t = {}
      for i, f in ipairs(frames) do
        t[i] = type(f) == "string" and W.frame(W.TEXT, f) or W.frame(f[1], f[2])
      end
      assert(c:send(table.concat(t)))
    end

    local function logged()
      local t = {}
      for _, l in ipairs(log_lines()) do
        local m = l:match("^msg (.*)$")
        if m then t[#t + 1] = m end
      end
      return t
    end

    it("are answered in order, a ping among them in its place", function()
      local c = W.open(srv.port, "/batch")
      local frames, want = {}, {}
      for i = 1, 40 do
        frames[#frames + 1] = "m" .. i
        want[#want + 1] = { "text", "m" .. i }
        if i == 20 then
          frames[#frames + 1] = { W.PING, "p" }
          want[#want + 1] = { "pong", "p" }
        end
      end
      burst(c, frames)
      for _, w in ipairs(want) do assert.are.same(w, { W.read(c) }) end
      finish(c)
    end)

    it("stop at a ws:close from a handler: later messages are not delivered", function()
      local c = W.open(srv.port, "/batch")
      burst(c, { "a", "close", "b", "c" })
      assert.are.same({ "text", "a" }, { W.read(c) })
      expect_close(c, 4001, { reason = "batch" })
      assert.are.same({ "a", "close" }, logged())
    end)

    it("stop at a handler error: 1011 after the answers before it", function()
      local c = W.open(srv.port, "/batch")
      burst(c, { "a", "boom", "b" })
      assert.are.same({ "text", "a" }, { W.read(c) })
      expect_close(c, 1011)
      assert.are.same({ "a", "boom" }, logged())
      assert.is_truthy(srv:log():find("boom in batch", 1, true), srv:log())
    end)

    it("see a handler replaced by an earlier one of the same read", function()
      local c = W.open(srv.port, "/batch")
      burst(c, { "a", "swap", "b", "unswap", "c" })
      for _, want in ipairs({ "a", "swap", "swapped b", "swapped unswap", "c" }) do
        assert.are.same({ "text", want }, { W.read(c) })
      end
      finish(c)
    end)

    it("one per read, see a handler replaced by the one before (the same set each time)",
       function()
      -- Each message alone in its read, after the one before was answered: from the second
      -- on, the connection's handle and set are kept for it between messages, and the
      -- handler is still looked up in the set every time.
      local c = W.open(srv.port, "/batch")
      for _, m in ipairs({ "a", "b", "swap", "c", "unswap", "d" }) do
        local want = m
        if m == "c" or m == "unswap" then want = "swapped " .. m end
        assert.are.equal(want, W.call(c, m))
      end
      assert.are.same({ "a", "b", "swap", "c", "unswap", "d" }, logged())
      -- A handler error after messages one per read: 1011, and the next connection is
      -- served as before.
      assert.are.equal("e", W.call(c, "e"))
      W.text(c, "boom")
      expect_close(c, 1011)
      local c2 = W.open(srv.port, "/batch")
      assert.are.equal("f", W.call(c2, "f"))
      assert.are.equal("g", W.call(c2, "g"))
      finish(c2)
    end)

    it("are answered before a bad frame behind them fails the connection", function()
      local c = W.open(srv.port, "/batch")
      burst(c, { "a", "b", { W.TEXT, "\xff" }, "c" })
      assert.are.same({ "text", "a" }, { W.read(c) })
      assert.are.same({ "text", "b" }, { W.read(c) })
      expect_close(c, 1007)
      assert.are.same({ "a", "b" }, logged())
    end)
  end)

  it("ws:send checks text that only looks like the message being handled", function()
    local c = W.open(srv.port, "/validated")
    for _, n in ipairs({ 1, 8, 32, 40, 300 }) do
      assert.are.equal("refused", W.call(c, string.rep("a", n)))
    end
    finish(c)
  end)

  describe("pub/sub", function()
    local function sub(c, topic)
      assert.are.equal("subscribed " .. topic .. " true", W.call(c, "sub " .. topic))
    end

    it("ws:publish reaches the other subscribers only; sy.publish reaches all", function()
      local a, b, c = W.open(srv.port, "/pubsub"), W.open(srv.port, "/pubsub"),
                      W.open(srv.port, "/pubsub")
      local outsider = W.open(srv.port, "/pubsub")
      sub(a, "news"); sub(b, "news"); sub(c, "news")
      sub(outsider, "sports")
      assert.are.equal("published 2", W.call(a, "pub news hello"))
      assert.are.equal("hello", W.must_text(b))
      assert.are.equal("hello", W.must_text(c))
      -- a got nothing but its answer: the next thing it reads is its next answer.
      assert.are.equal("published 0", W.call(a, "pub nobody x"))
      assert.are.equal("published 0", W.call(outsider, "pub sports x"))
      -- Publishing needs no subscription of one's own.
      assert.are.equal("published 3", W.call(outsider, "pub news from outside"))
      assert.are.equal("from outside", W.must_text(a))
      assert.are.equal("from outside", W.must_text(b))
      assert.are.equal("from outside", W.must_text(c))
      W.text(a, "spub news to all")
      assert.are.equal("to all", W.must_text(a))
      assert.are.equal("spublished 3", W.must_text(a))
      assert.are.equal("to all", W.must_text(b))
      assert.are.equal("to all", W.must_text(c))
      assert.are.equal("published 2", W.call(a, "pubbin news"))
      assert.are.same({ "binary", "\0\1\2" }, { W.read(b) })
      assert.are.same({ "binary", "\0\1\2" }, { W.read(c) })
      for _, x in ipairs({ a, b, c, outsider }) do finish(x) end
    end)

    it("unsubscribe stops delivery; subscribing twice is one subscription", function()
      local a, b, c = W.open(srv.port, "/pubsub"), W.open(srv.port, "/pubsub"),
                      W.open(srv.port, "/pubsub")
      sub(a, "t"); sub(b, "t"); sub(c, "t"); sub(c, "t")
      assert.are.equal("published 2", W.call(a, "pub t one"))
      assert.are.equal("one", W.must_text(b))
      assert.are.equal("one", W.must_text(c))
      assert.are.equal("unsubscribed t true", W.call(b, "unsub t"))
      assert.are.equal("published 1", W.call(a, "pub t two"))
      assert.are.equal("two", W.must_text(c))
      -- b got nothing: its next message is the answer to its next command.
      assert.are.equal("unsubscribed t false", W.call(b, "unsub t"))
      assert.are.equal("spublished 2", W.call(b, "spub t three"))
      assert.are.equal("three", W.must_text(a))
      assert.are.equal("three", W.must_text(c))
      for _, x in ipairs({ a, b, c }) do finish(x) end
    end)

    it("keeps the order of messages per topic", function()
      local a, b = W.open(srv.port, "/pubsub"), W.open(srv.port, "/pubsub")
      sub(b, "seq"); sub(b, "other")
      assert.are.equal("burst done", W.call(a, "burst seq 300"))
      for i = 1, 300 do assert.are.equal("seq:" .. i, W.must_text(b)) end
      finish(a)
      finish(b)
    end)

    it("subscriptions end with the connection (closing handshake or TCP drop)", function()
      local a, b, c = W.open(srv.port, "/pubsub"), W.open(srv.port, "/pubsub"),
                      W.open(srv.port, "/pubsub")
      sub(a, "room"); sub(b, "room"); sub(c, "room")
      assert.are.equal("published 2", W.call(a, "pub room hi"))
      assert.are.equal("hi", W.must_text(b))
      finish(b)
      assert.are.equal("published 1", W.call(a, "pub room after b"))
      assert.are.equal("hi", W.must_text(c))
      assert.are.equal("after b", W.must_text(c))
      c:close()
      local n = H.wait_for(function()
        local got = W.call(a, "pub room probe")
        return got == "published 0" and got
      end)
      assert.are.equal("published 0", n)
      finish(a)
    end)
  end)

  describe("backpressure", function()
    -- The client sends "flood" and then reads nothing: the app sends 64 KiB messages until
    -- ws:send answers nil (max_backpressure 2 MiB; the high-water mark is 1 MiB).
    local function flood(policy)
      local c = W.open(srv.port, "/flood?policy=" .. policy .. "&max=" .. 2 * MIB)
      W.text(c, "flood")
      local line = wait_log("^flood ", true)
      local t, f, last, buffered = line:match("^flood true=(%d+) false=(%d+) end=(%S+) buffered=(%S+)$")
      assert.is_truthy(t, line)
      return c, tonumber(t), tonumber(f), last, buffered, line
    end

    local function read_binaries(c)
      local n = 0
      while true do
        local kind, data = W.read(c, 10)
        if kind ~= "binary" then return n, kind, data end
        assert.are.equal(65536, #data)
        n = n + 1
      end
    end

    it("drop: sends answer true, then false above the high-water mark, then nil, 'dropped'; "
       .. "drain follows", function()
      local c, t, f, last, buffered, line = flood("drop")
      assert.are.equal("dropped", last, line)
      assert.is_true(t >= 1, line)
      assert.is_true(f >= 1, "no send answered false before the limit: " .. line)
      assert.are.equal("over1MiB", buffered, line)
      wait_log("after dropped=5")
      local n, kind, data = read_binaries(c)
      assert.are.equal(t + f, n, "messages queued before the drop vs received")
      assert.are.same({ "text", "after drain" }, { kind, data })
      wait_log("drain")
      finish(c)
    end)

    it("close: a send over max_backpressure closes with 1008 after the queued data", function()
      local c, t, f, last, _, line = flood("close")
      assert.are.equal("closed", last, line)
      assert.is_true(f >= 1, "no send answered false before the limit: " .. line)
      local n, kind, code = read_binaries(c)
      assert.are.equal(t + f, n, "messages queued before the close vs received")
      assert.are.same({ "close", 1008 }, { kind, code })
      assert(W.eof(c))
      wait_log("flood-close 1008")
    end)
  end)

  describe("timeouts", function()
    it("idle_timeout closes a silent connection with 1001", function()
      local c = W.open(srv.port, "/idle")
      local t0 = H.now()
      expect_close(c, 1001, { timeout = 20, reply = false })
      local dt = H.now() - t0
      assert.is_true(dt >= 0.4 and dt < 15, "closed after " .. dt .. " s (idle_timeout 0.5)")
      wait_log("idle-close 1001")
    end)

    it("traffic from the client keeps the connection open past idle_timeout", function()
      local c = W.open(srv.port, "/idle")
      local t0 = H.now()
      while H.now() - t0 < 1.5 do
        assert.are.equal("tick", W.call(c, "tick"))
        H.sleep(0.2)
      end
      local t1 = H.now()
      expect_close(c, 1001, { timeout = 20 })
      assert.is_true(H.now() - t1 >= 0.25)
    end)

    it("ping_interval: the server pings a silent client; pongs keep it open", function()
      local c = W.open(srv.port, "/keepalive")
      local t0 = H.now()
      local pings = 0
      while H.now() - t0 < 2.5 do -- past idle_timeout (1.2 s), answering every ping
        local kind, data = W.read(c, 10)
        assert.are.equal("ping", kind, "want a ping, got " .. tostring(kind))
        if pings == 0 then
          local dt = H.now() - t0
          assert.is_true(dt >= 0.25 and dt < 15, "first ping after " .. dt .. " s")
        end
        pings = pings + 1
        W.pong(c, data)
      end
      assert.is_true(pings >= 3, "pings: " .. pings)
      wait_log("pong ")
      -- Stop answering: the idle timeout closes with 1001.
      local t1 = H.now()
      while true do
        local kind, code = W.read(c, 20)
        if kind == "close" then
          assert.are.equal(1001, code)
          break
        end
        assert.are.equal("ping", kind)
      end
      local dt = H.now() - t1
      assert.is_true(dt >= 0.8 and dt < 15, "closed " .. dt .. " s after the last pong")
      c:send(W.frame(W.CLOSE, W.close_payload(1001)))
      assert(W.eof(c))
      wait_log("keepalive-close 1001")
    end)

    it("close_timeout: TCP closes when the peer never answers the close", function()
      local c = W.open(srv.port, "/close-timeout")
      W.text(c, "bye")
      local kind, code, reason = W.read(c)
      assert.are.same({ "close", 1000, "bye" }, { kind, code, reason })
      local t0 = H.now()
      assert(W.eof(c, 20))
      local dt = H.now() - t0
      assert.is_true(dt >= 0.2 and dt < 15, "TCP closed after " .. dt .. " s (close_timeout 0.3)")
    end)
  end)

  describe("message size limits", function()
    it("app.options sets max_message_size (65536) for every accept", function()
      local c = W.open(srv.port, "/echo")
      local ok = string.rep("m", 65536)
      W.binary(c, ok, { key = "\0\0\0\0" })
      assert.are.same({ "binary", ok }, { W.read(c) })
      W.binary(c, ok .. "+", { key = "\0\0\0\0" })
      expect_close(c, 1009)
    end)

    it("accept options override app.options (max_message_size 200000)", function()
      local c = W.open(srv.port, "/big")
      local ok = string.rep("m", 200000)
      W.binary(c, ok, { key = "\0\0\0\0" })
      assert.are.same({ "binary", ok }, { W.read(c) })
      W.text(c, string.rep("a", 100000), { fin = false, key = "\0\0\0\0" })
      W.send(c, W.CONT, string.rep("b", 100001), { key = "\0\0\0\0" })
      expect_close(c, 1009)
    end)
  end)
end)

describe("websocket defaults", function()
  after_each(H.close_all)
  local dsrv = H.serve("spec/apps/ws_defaults.lua")

  it("max_message_size is 1 MiB", function()
    local c = W.open(dsrv.port, "/")
    local ok = string.rep("d", MIB)
    W.binary(c, ok, { key = "\0\0\0\0" })
    assert.are.same({ "binary", ok }, { W.read(c) })
    W.binary(c, ok .. "+", { key = "\0\0\0\0" })
    expect_close(c, 1009)
  end)

  it("max_fragments is 100000", function()
    local c = W.open(dsrv.port, "/")
    local key = { key = "\0\0\0\0" }
    local mid = W.frame(W.CONT, "", { fin = false, key = "\0\0\0\0" })
    c:send(W.frame(W.BINARY, "a", { fin = false, key = "\0\0\0\0" })
           .. string.rep(mid, 100000 - 2) .. W.frame(W.CONT, "z", key))
    assert.are.same({ "binary", "az" }, { W.read(c, 10) })
    c:send(W.frame(W.BINARY, "a", { fin = false, key = "\0\0\0\0" })
           .. string.rep(mid, 100000 - 1) .. W.frame(W.CONT, "z", key))
    expect_close(c, 1009, { timeout = 10 })
  end)
end)

describe("websocket and SIGTERM", function()
  after_each(H.close_all)

  it("sends 1001 to an open WebSocket; the server exits 0 once the peer answered", function()
    local s = H.must_start("spec/apps/ws_api.lua")
    local ok, err = pcall(function()
      local c = W.open(s.port, "/echo")
      assert.are.equal("x", W.call(c, "x"))
      local t0 = H.now()
      os.execute("kill -TERM " .. s.pid)
      local kind, code = W.read(c)
      assert.are.same({ "close", 1001 }, { kind, code })
      c:send(W.frame(W.CLOSE, W.close_payload(1001)))
      assert(W.eof(c))
      assert.is_truthy(H.wait_for(function() return not H.alive(s.pid) end, 4),
                       "server still running after the peer answered the close")
      assert.is_true(H.now() - t0 < 4)
    end)
    local code = s:stop()
    s:cleanup()
    assert(ok, err)
    assert.are.equal(0, code)
  end)

  it("exits 0 within the 5 s grace when the peer never answers the 1001", function()
    local s = H.must_start("spec/apps/ws_api.lua")
    local ok, err = pcall(function()
      local c = W.open(s.port, "/echo")
      assert.are.equal("x", W.call(c, "x"))
      local t0 = H.now()
      os.execute("kill -TERM " .. s.pid)
      local kind, code = W.read(c)
      assert.are.same({ "close", 1001 }, { kind, code })
      assert.is_truthy(H.wait_for(function() return not H.alive(s.pid) end, 7),
                       "server still running 7 s after SIGTERM")
      assert.is_true(H.now() - t0 < 6.5)
    end)
    local code = s:stop()
    s:cleanup()
    assert(ok, err)
    assert.are.equal(0, code)
  end)
end)
