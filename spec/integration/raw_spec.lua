-- spec/integration/raw_spec.lua: raw byte-stream protocols after a 101 (handlers open, data,
-- close, drain; conn:write, conn:close, conn.data, conn.remote_addr), against spec/apps/raw.lua.
local H = require "helpers.server"

local srv

local function upgrade(token, after)
  local c = H.must_connect(srv.port)
  c:send(H.request("GET", "/", { "Upgrade: " .. token, "Connection: Upgrade" }) .. (after or ""))
  local res = c:must_response()
  assert.are.equal(101, res.status, "upgrade to " .. token .. " refused")
  assert.are.equal(token, res.headers["upgrade"])
  return c
end

local function stats()
  local kv = H.kv(H.must_roundtrip(srv.port, H.get("/stats")).body)
  for k, v in pairs(kv) do kv[k] = tonumber(v) end
  return kv
end

describe("raw protocols", function()
  after_each(H.close_all)

  srv = H.serve("spec/apps/raw.lua")

  it("echoes bytes after the 101", function()
    local c = upgrade("echo/1")
    c:send("hello\n")
    assert.are.equal("hello", c:line())
    c:send("second line\n")
    assert.are.equal("second line", c:line())
  end)

  it("does not lose bytes sent in the same write as the upgrade request", function()
    local c = upgrade("echo/1", "first\nsecond\n")
    assert.are.equal("first", c:line())
    assert.are.equal("second", c:line())
  end)

  it("does not lose bytes sent in the same write, binary and CRLF included", function()
    local payload = "\0\1\2\r\n\r\nGET / HTTP/1.1\r\n\r\n\255"
    local c = upgrade("echo/1", payload)
    assert.are.equal(payload, c:read_n(#payload))
  end)

  it("does not treat HTTP-looking bytes after the upgrade as a request", function()
    local c = upgrade("echo/1")
    local req = H.get("/stats")
    c:send(req)
    assert.are.equal(req, c:read_n(#req))
  end)

  it("echoes 1 MiB of patterned data intact", function()
    local parts = {}
    for i = 0, 65535 do parts[#parts + 1] = ("%015d\n"):format(i) end
    local data = table.concat(parts)
    assert.are.equal(1048576, #data)
    local c = upgrade("echo/1")
    assert(c:send(data))
    local back, err = c:read_n(#data, 10)
    assert.is_not_nil(back, "read back: " .. tostring(err))
    assert.is_true(back == data, "echoed data differs")
  end)

  it("writes from open(conn) after the 101, with conn.remote_addr and conn.data", function()
    local c = upgrade("info/1")
    assert.are.equal("addr=127.0.0.1 data=table", c:line())
  end)

  it("keeps conn.data across data calls", function()
    local c = upgrade("count/1")
    c:send("abc")
    assert.are.equal("n=3", c:line())
    c:send("de")
    assert.are.equal("n=5", c:line())
  end)

  it("keeps conn.data per connection", function()
    local a = upgrade("count/1")
    local b = upgrade("count/1")
    a:send("aaaa")
    assert.are.equal("n=4", a:line())
    b:send("b")
    assert.are.equal("n=1", b:line())
  end)

  it("conn:close() from open flushes what was written, then closes", function()
    local c = upgrade("closer/1")
    assert.are.equal("bye", c:line())
    assert(c:expect_closed(3))
  end)

  it("conn:close() from data closes after the pending write", function()
    local c = upgrade("quit/1")
    c:send("one\n")
    assert.are.equal("one", c:line())
    c:send("QUIT\n")
    assert.are.equal("bye", c:line())
    assert(c:expect_closed(3))
  end)

  it("calls close(conn) when the client closes", function()
    assert.are.equal(0, stats().closes_track1)
    local c = upgrade("track1/1")
    c:send("x\n")
    assert.are.equal("x", c:line())
    assert.are.equal(0, stats().closes_track1)
    c:close()
    assert.truthy(H.wait_for(function() return stats().closes_track1 == 1 end, 3),
                  "close handler not called")
  end)

  it("calls close(conn) when the client half-closes (EOF)", function()
    assert.are.equal(0, stats().closes_track2)
    local c = upgrade("track2/1")
    c:send("y\n")
    assert.are.equal("y", c:line())
    c:shutdown_write()
    assert.truthy(H.wait_for(function() return stats().closes_track2 == 1 end, 3),
                  "close handler not called after EOF")
  end)

  it("calls close(conn) when the app closes", function()
    assert.are.equal(0, stats().closes_closer2)
    local c = upgrade("closer2/1")
    assert.are.equal("bye", c:line())
    assert.truthy(H.wait_for(function() return stats().closes_closer2 == 1 end, 3),
                  "close handler not called after conn:close()")
  end)

  it("a drain handler that raises closes the connection after its queue; nothing leaks", function()
    local before = stats().closes_baddrain or 0
    local full = stats().full_baddrain
    local c = upgrade("baddrain/1")
    -- Read only once the queue passed the high-water mark: a client reading meanwhile could
    -- keep it below the mark on a slow server, and then no drain would ever run.
    assert.truthy(H.wait_for(function() return stats().full_baddrain == full + 1 end, 10),
                  "the queue never passed the high-water mark")
    local data, how = c:read_all(20)
    assert.are.equal("closed", how, "connection not closed after the drain error")
    assert.is_true(#data > 0 and #data % 65536 == 0, "got " .. #data .. " bytes")
    assert.is_nil(data:find("[^d]"), "only the queued blocks arrive")
    assert.truthy(H.wait_for(function() return (stats().closes_baddrain or 0) == before + 1 end, 3),
                  "close handler not called after the drain error")
    assert.truthy(srv:log():find("boom in drain", 1, true))
  end)

  it("conn:write returns false past the high-water mark, keeps the data, then calls drain", function()
    local full = stats().full_big
    local c = upgrade("big/1")
    -- Read only once the queue passed the high-water mark: a client reading meanwhile can keep
    -- the socket drained, and open() then writes all 512 blocks, which on a loaded sanitizer
    -- build can outlast the hook's time budget.
    assert.truthy(H.wait_for(function() return stats().full_big == full + 1 end, 10),
                  "the queue never passed the high-water mark")
    local data, err, partial = c:read_until("\n", 20)
    assert.is_not_nil(data, "no END marker: " .. tostring(err) .. " after "
                      .. (partial and #partial or 0) .. " bytes")
    local nl = data:find("\n", 1, true)
    local stream, rest = data:sub(1, nl - 1), data:sub(nl + 1)
    if not rest:find("\n", 1, true) then
      local more, err2 = c:line(5)
      assert.is_not_nil(more, "END line: " .. tostring(err2))
      rest = rest .. more
    else
      rest = rest:match("^([^\n]*)\n$") or rest
    end
    local blocks, saw_false, drains = rest:match("^END blocks=(%d+) saw_false=(%a+) drains=(%d+)$")
    assert.is_not_nil(blocks, "bad END line: " .. rest)
    blocks, drains = tonumber(blocks), tonumber(drains)
    assert.are.equal("true", saw_false, "conn:write never returned false in " .. blocks .. " blocks")
    assert.is_true(drains >= 1)
    assert.are.equal(blocks * 65536, #stream)
    for i = 0, blocks - 1 do
      local letter = string.char(65 + i % 26)
      local block = stream:sub(i * 65536 + 1, (i + 1) * 65536)
      assert.is_true(block == string.rep(letter, 65536), "block " .. i .. " damaged")
    end
  end)

  it("still answers plain HTTP on the same listener", function()
    local res = H.must_roundtrip(srv.port, H.get("/"))
    assert.are.equal(200, res.status)
    assert.are.equal("plain\n", res.body)
  end)
end)
