-- spec/integration/ws_face_spec.lua: a WebSocket handle is a table (its face); its state lives
-- as long as the face does, and both go once the connection is closed and the app lets go of
-- the face. Against spec/apps/ws_face.lua.
local H = require "helpers.server"
local W = require "helpers.ws"

local N = 12

describe("WebSocket faces", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/ws_face.lua")

  local function count()
    return H.must_roundtrip(srv.port, H.get("/count")).body
  end

  local function wait_count(want)
    local got
    H.wait_for(function()
      got = count()
      return got == want
    end, 20)
    assert.are.equal(want, got)
  end

  it("a face kept after its connection closed still answers; both go when dropped", function()
    local conns = {}
    for i = 1, N do
      conns[i] = W.open(srv.port, i % 2 == 0 and "/keep" or "/plain")
      assert.are.equal("hi" .. i, W.call(conns[i], "hi" .. i))
    end
    -- Open: the registry holds every state (one slot per connection), each state its face;
    -- none is in the table of states (a collection walks that table whole whenever it
    -- changed: open connections stay out).
    assert.are.equal(("faces=0 states=%d alive=%d weak=0"):format(N, N), count())
    for _, c in ipairs(conns) do
      W.close(c, 1000)
      W.eof(c)
      c:close()
    end
    -- Closed: nothing is anchored in the registry any more; the /plain faces are collected,
    -- and a kept face still holds its state (it answers below).
    wait_count(("faces=0 states=0 alive=%d weak=%d"):format(N / 2, N / 2))
    local kept = H.must_roundtrip(srv.port, H.get("/kept")).body
    local n = 0
    for entry in kept:gmatch("[^;]+") do
      n = n + 1
      assert.truthy(entry:find("^/keep,%d+,nil closed,true$"), entry)
    end
    assert.are.equal(N / 2, n, kept)
    assert.are.equal("dropped", H.must_roundtrip(srv.port, H.get("/drop")).body)
    wait_count("faces=0 states=0 alive=0 weak=0")
    assert.is_true(srv:alive())
  end)

  it("a connection whose messages came one per read lets go of its handle at close", function()
    -- From its second message on, the task of a connection whose messages come one per read
    -- keeps its handle, set and face between messages: at close it must let go of them.
    -- Two handlers waiting at once: the pool has a task to spare afterwards, so the request
    -- for /count below does not take the kept one (which would let go of it anyway).
    local naps = { (W.open(srv.port, "/nap")), (W.open(srv.port, "/nap")) }
    W.text(naps[1], "n1")
    W.text(naps[2], "n2")
    assert.are.equal("n1", W.must_text(naps[1]))
    assert.are.equal("n2", W.must_text(naps[2]))
    for _, c in ipairs(naps) do
      W.close(c, 1000)
      W.eof(c)
      c:close()
    end
    local conns = {}
    for i = 1, 4 do
      conns[i] = W.open(srv.port, "/plain")
      for j = 1, 3 do
        assert.are.equal(("m%d.%d"):format(i, j), W.call(conns[i], ("m%d.%d"):format(i, j)))
      end
    end
    assert.are.equal("faces=0 states=4 alive=4 weak=0", count())
    for _, c in ipairs(conns) do
      W.close(c, 1000)
      W.eof(c)
      c:close()
    end
    wait_count("faces=0 states=0 alive=0 weak=0")
    assert.is_true(srv:alive())
  end)

  it("a connection failed inside its own open handler outlives the handler", function()
    for _ = 1, 3 do
      local c = W.open(srv.port, "/fail-open")
      -- What was sent before, then the close: 1008 past max_backpressure.
      local code
      for _ = 1, 70 do
        local op, payload = W.read_frame(c, 20)
        if not op then break end
        if op == W.CLOSE then
          code = string.unpack(">I2", payload)
          break
        end
      end
      assert.are.equal(1008, code)
      c:close()
    end
    assert.is_true(srv:alive())
    wait_count("faces=0 states=0 alive=0 weak=0")
  end)

  it("a handle that refers to itself goes once closed, at the first collection (no finalizer)",
     function()
    local conns = {}
    for i = 1, N do
      conns[i] = W.open(srv.port, i % 2 == 0 and "/self" or "/upvalue")
      assert.are.equal("hi" .. i, W.call(conns[i], "hi" .. i))
    end
    for _, c in ipairs(conns) do
      W.close(c, 1000)
      W.eof(c)
      c:close()
    end
    -- A face has no finalizer, so one collection takes it and its state: no weak table of the
    -- app's meets it again afterwards (a face with one stayed there for a collection more).
    assert.are.equal("", H.must_roundtrip(srv.port, H.get("/zombies")).body)
    wait_count("faces=0 states=0 alive=0 weak=0")
    assert.is_true(srv:alive())
  end)
end)
