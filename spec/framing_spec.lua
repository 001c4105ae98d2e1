-- spec/framing_spec.lua: switchyard.framing: any split of the input gives the same messages,
-- limits are errors, and a spent framer stays spent.
local framing = require "switchyard.framing"

-- Feeds input cut at the given offsets; returns all messages and the first error.
local function feed_split(f, input, cuts)
  local msgs, pos = {}, 1
  local points = {}
  for _, c in ipairs(cuts) do points[#points + 1] = c end
  points[#points + 1] = #input
  for _, stop in ipairs(points) do
    local got, err = f:feed(input:sub(pos, stop))
    for _, m in ipairs(got) do msgs[#msgs + 1] = m end
    pos = stop + 1
    if err then return msgs, err end
  end
  return msgs
end

describe("switchyard.framing", function()
  describe("lines", function()
    it("splits LF and CRLF lines and keeps a partial line", function()
      local f = framing.lines()
      local msgs, err = f:feed("one\r\ntwo\n\nthr")
      assert.is_nil(err)
      assert.are.same({ "one", "two", "" }, msgs)
      assert.are.equal(3, f:buffered())
      assert.are.same({ "three" }, f:feed("ee\n"))
      assert.are.equal(0, f:buffered())
    end)

    it("gives the same messages for every split point", function()
      local input = "SET a 1\r\nGET a\nx\r\n\r\nlast\n"
      local want = { "SET a 1", "GET a", "x", "", "last" }
      for i = 0, #input do
        for j = i, #input do
          assert.are.same(want, feed_split(framing.lines(), input, { i, j }), i .. "," .. j)
        end
      end
    end)

    it("keeps a CR that is not before LF", function()
      assert.are.same({ "a\rb" }, framing.lines():feed("a\rb\n"))
    end)

    it("allows lines up to max bytes, with either line end", function()
      local f = framing.lines({ max = 4 })
      assert.are.same({ "abcd", "efgh" }, f:feed("abcd\nefgh\r\n"))
      assert.are.same({}, f:feed("ijkl\r"))
      assert.are.same({ "ijkl" }, f:feed("\n"))
    end)

    it("reports a line over max, complete or partial, and stays spent", function()
      local f = framing.lines({ max = 4 })
      local msgs, err = f:feed("ok\nabcde\nlater\n")
      assert.are.same({ "ok" }, msgs)
      assert.are.equal("line too long", err)
      msgs, err = f:feed("more\n")
      assert.are.same({}, msgs)
      assert.are.equal("line too long", err)
      assert.are.equal("line too long", f:error())
      assert.are.equal(0, f:buffered())

      -- without a line end: found as soon as the partial line passes max
      local g = framing.lines({ max = 4 })
      assert.is_nil(select(2, g:feed("abcd")))
      assert.are.equal("line too long", select(2, g:feed("e")))
      local h = framing.lines({ max = 4 })
      assert.is_nil(select(2, h:feed("abcd\r"))) -- the CR may be a CRLF's
      assert.are.equal("line too long", select(2, h:feed("x")))
    end)

    it("holds a bounded amount however the bytes arrive", function()
      local f = framing.lines({ max = 1000 })
      for _ = 1, 1000 do
        local _, err = f:feed("x")
        if err then break end
      end
      assert.is_true(f:buffered() <= 1001)
      local _, err = f:feed(("y"):rep(10))
      assert.are.equal("line too long", err)
    end)

    it("iterates with messages() and raises on a broken limit", function()
      local f = framing.lines({ max = 3 })
      local seen = {}
      for m in f:messages("a\nb\nc") do seen[#seen + 1] = m end
      assert.are.same({ "a", "b" }, seen)
      assert.has_error(function() for _ in f:messages("cccc\n") do end end, "line too long")
    end)

    it("encodes lines with the chosen end, refusing embedded line ends", function()
      assert.are.equal("hi\n", framing.lines().encode("hi"))
      assert.are.equal("hi\r\n", framing.lines({ eol = "\r\n" }).encode("hi"))
      assert.has_error(function() framing.lines().encode("a\nb") end)
      assert.has_error(function() framing.lines({ eol = "\r" }) end)
      assert.has_error(function() framing.lines({ maximum = 3 }) end)
      assert.has_error(function() framing.lines({ max = -1 }) end)
      assert.has_error(function() framing.lines():feed(42) end)
    end)
  end)

  describe("length", function()
    for _, n in ipairs({ 1, 2, 4 }) do
      it(n .. "-byte prefixes: round trip over every split point", function()
        local enc = framing.length(n)
        local input = enc.encode("hello") .. enc.encode("") .. enc.encode(("z"):rep(200))
        for i = 0, #input, 7 do
          for j = i, #input, 3 do
            assert.are.same({ "hello", "", ("z"):rep(200) },
                            feed_split(framing.length(n), input, { i, j }))
          end
        end
      end)
    end

    it("uses big-endian lengths", function()
      assert.are.equal("\0\5hello", framing.length(2).encode("hello"))
      assert.are.equal("\0\0\1\0" .. ("a"):rep(256), framing.length(4).encode(("a"):rep(256)))
      assert.are.same({ "abc" }, framing.length(4):feed("\0\0\0\3abc"))
    end)

    it("reports a declared length over max as soon as the prefix arrives", function()
      local f = framing.length(4, { max = 10 })
      local msgs, err = f:feed("\0\0\0\2hi\0\0\0\11")
      assert.are.same({ "hi" }, msgs)
      assert.are.equal("message too large", err)
      assert.are.same({}, (f:feed("\0\0\0\1x")))
      assert.are.equal("message too large", f:error())
    end)

    it("caps max at what the prefix can say, and encode checks it", function()
      local f = framing.length(1)
      assert.are.equal(255, f.max)
      assert.has_error(function() f.encode(("a"):rep(256)) end)
      assert.has_error(function() framing.length(2, { max = 3 }).encode("four") end)
      assert.has_error(function() framing.length(3) end)
      assert.has_error(function() framing.length(2, { size = 1 }) end)
    end)

    it("buffers a large message fed byte by byte in linear time", function()
      local f = framing.length(4, { max = 200000 })
      local msg = ("m"):rep(200000)
      local wire = f.encode(msg)
      local got
      for i = 1, #wire, 1000 do
        local msgs = f:feed(wire:sub(i, i + 999))
        if msgs[1] then got = msgs[1] end
      end
      assert.are.equal(msg, got)
      assert.are.equal(0, f:buffered())
    end)
  end)
end)
