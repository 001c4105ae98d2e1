-- spec/http_spec.lua: switchyard.http (pure Lua: query strings, forms, cookies, Accept).
local http = require "switchyard.http"

describe("switchyard.http", function()
  describe("percent-coding", function()
    it("decodes %XX and keeps + in decode, turns + into a space in decode_form", function()
      assert.are.equal("a b+c/é", http.decode("a%20b+c%2F%C3%a9"))
      assert.are.equal("a b c", http.decode_form("a+b%20c"))
    end)

    it("leaves malformed escapes as they are and never raises", function()
      assert.are.equal("100%", http.decode("100%"))
      assert.are.equal("%zz%4", http.decode("%zz%4"))
      assert.is_nil(http.decode(nil))
      assert.is_nil(http.decode_form({}))
    end)

    it("encodes everything but unreserved bytes", function()
      assert.are.equal("a%20b%2B%2F%3F%26%3D~._-%C3%A9", http.encode("a b+/?&=~._-é"))
      assert.are.equal("42", http.encode(42))
      assert.has_error(function() http.encode({}) end)
    end)

    it("round-trips every byte", function()
      local all = {}
      for i = 0, 255 do all[#all + 1] = string.char(i) end
      local s = table.concat(all)
      assert.are.equal(s, http.decode(http.encode(s)))
      assert.are.equal(s, http.decode_form(http.encode(s)))
    end)
  end)

  describe("parse_query", function()
    it("parses pairs; the last of a repeated name wins", function()
      assert.are.same({ a = "2", b = "x y", c = "", ["d e"] = "=" },
                      http.parse_query("a=1&b=x+y&a=2&c&d%20e=%3D"))
    end)

    it("accepts a leading ?, nil and empty input, and skips empty pieces", function()
      assert.are.same({ a = "1" }, http.parse_query("?a=1&&"))
      assert.are.same({}, http.parse_query(nil))
      assert.are.same({}, http.parse_query(""))
    end)

    it("keeps every value with parse_query_all", function()
      assert.are.same({ a = { "1", "2" }, b = { "" } }, http.parse_query_all("a=1&b&a=2"))
    end)

    it("drops pairs past the limit and says so", function()
      local t, err = http.parse_query(("x=1&"):rep(5) .. "y=2", { max = 5 })
      assert.are.same({ x = "1" }, t)
      assert.is_truthy(err:find("more than 5"))
      local big = {}
      for i = 1, 2000 do big[i] = "k" .. i .. "=v" end
      local t2, err2 = http.parse_query(table.concat(big, "&"))
      local n = 0
      for _ in pairs(t2) do n = n + 1 end
      assert.are.equal(http.DEFAULT_MAX_PARAMS, n)
      assert.is_string(err2)
    end)

    it("returns nil, err for a non-string", function()
      local t, err = http.parse_query(42)
      assert.is_nil(t)
      assert.is_string(err)
    end)

    it("builds query strings back with encode_query", function()
      local q = http.encode_query({ b = "x y", a = { "1", 2 }, c = true })
      assert.are.equal("a=1&a=2&b=x%20y&c=true", q)
      assert.are.same({ a = { "1", "2" }, b = { "x y" }, c = { "true" } }, http.parse_query_all(q))
      assert.has_error(function() http.encode_query({ a = {} , b = function() end }) end)
    end)
  end)

  describe("parse_form", function()
    it("parses a body string", function()
      assert.are.same({ name = "Ada L", lang = "lua" }, http.parse_form("name=Ada+L&lang=lua"))
    end)

    it("parses a request with the form content type, lists with opts.all", function()
      local req = { headers = { ["content-type"] = "application/x-www-form-urlencoded; charset=UTF-8" },
                    body = "a=1&a=2" }
      assert.are.same({ a = "2" }, http.parse_form(req))
      assert.are.same({ a = { "1", "2" } }, http.parse_form(req, { all = true }))
      assert.are.same({}, http.parse_form({ headers = { ["content-type"] = "application/x-www-form-urlencoded" } }))
    end)

    it("refuses a request of another content type", function()
      local t, err = http.parse_form({ headers = { ["content-type"] = "application/json" },
                                       body = "{}" })
      assert.is_nil(t)
      assert.is_truthy(err:find("not a form"))
      t, err = http.parse_form({ headers = {}, body = "a=1" })
      assert.is_nil(t)
      assert.is_truthy(err:find("missing"))
    end)
  end)

  describe("cookies", function()
    it("parses a Cookie header; the first of a name wins; quotes are dropped", function()
      assert.are.same({ a = "1", b = "x=y", c = "quoted", d = "" },
                      http.cookies('a=1; b=x=y;c="quoted"; a=2; junk; d='))
    end)

    it("reads a request's header, and gives {} without one", function()
      assert.are.same({ sid = "abc" }, http.cookies({ headers = { cookie = "sid=abc" } }))
      assert.are.same({}, http.cookies({ headers = {} }))
      assert.are.same({}, http.cookies(nil))
      assert.are.same({}, http.cookies(";;;"))
    end)

    it("builds Set-Cookie values with attributes", function()
      assert.are.equal("sid=abc", http.cookie("sid", "abc"))
      assert.are.equal("sid=abc; Path=/; Domain=example.org; Max-Age=3600; "
                       .. "Expires=Sun, 06 Nov 1994 08:49:37 GMT; Secure; HttpOnly; SameSite=Lax",
                       http.cookie("sid", "abc", { path = "/", domain = "example.org",
                                                   max_age = 3600, expires = 784111777,
                                                   secure = true, http_only = true,
                                                   same_site = "lax" }))
      assert.are.equal("a=; Max-Age=0", http.cookie("a", "", { max_age = 0 }))
    end)

    it("raises on bad names, values and attributes, naming them", function()
      assert.has_error(function() http.cookie("a b", "1") end)
      assert.has_error(function() http.cookie("a", "x;y") end)
      assert.has_error(function() http.cookie("a", "x y") end)
      assert.has_error(function() http.cookie("a", 'x"') end)
      assert.has_error(function() http.cookie("a", "caf\195\169") end)
      assert.has_error(function() http.cookie("a", "a\\b") end)
      assert.are.equal("a=caf%C3%A9", http.cookie("a", http.encode("café")))
      assert.has_error(function() http.cookie("a", "1", { path = "/;x" }) end)
      assert.has_error(function() http.cookie("a", "1", { max_age = 1.5 }) end)
      assert.has_error(function() http.cookie("a", "1", { expires = "tomorrow" }) end)
      assert.has_error(function() http.cookie("a", "1", { same_site = "sometimes" }) end)
      assert.has_error(function() http.cookie("a", "1", { same_site = "None" }) end)
      assert.has_error(function() http.cookie("a", "1", { secure = "yes" }) end)
      local ok, err = pcall(http.cookie, "a", "1", { httponly = true })
      assert.is_false(ok)
      assert.is_truthy(err:find("httponly", 1, true))
      assert.are.equal("a=1; Secure; SameSite=None",
                       http.cookie("a", "1", { secure = true, same_site = "None" }))
    end)
  end)

  it("parses long runs of white space in linear time", function()
    -- s:match("^%s*(.-)%s*$") takes quadratic time here: minutes for these 200 000 spaces.
    local gap = (" "):rep(200000)
    assert.are.same({ a = "x" .. gap .. "y" }, http.cookies("a=x" .. gap .. "y"))
    local l = http.parse_accept("text/plain;x=a" .. gap .. "b")
    assert.are.equal("a" .. gap .. "b", l[1].params.x)
  end)

  it("formats IMF-fixdates", function()
    assert.are.equal("Sun, 06 Nov 1994 08:49:37 GMT", http.date(784111777))
    assert.are.equal("Thu, 01 Jan 1970 00:00:00 GMT", http.date(0))
  end)

  describe("parse_accept", function()
    it("sorts by q, keeps the client's order for ties, reads parameters", function()
      local l = http.parse_accept('text/html;level=1, application/json;q=0.9, */*;q=0.1, '
                                  .. 'Text/Plain ; q="0.9"')
      assert.are.same({ "text/html", "application/json", "text/plain", "*/*" },
                      { l[1].value, l[2].value, l[3].value, l[4].value })
      assert.are.same({ level = "1" }, l[1].params)
      assert.are.equal(0.1, l[4].q)
    end)

    it("never raises on junk", function()
      assert.are.same({}, http.parse_accept(nil))
      assert.are.same({}, http.parse_accept(",,,"))
      local l = http.parse_accept("a;q=7, b;q=x, c;q=0")
      assert.are.same({ 1, 1, 0 }, { l[1].q, l[2].q, l[3].q })
      assert.are.equal(100, #http.parse_accept(("x,"):rep(500)))
    end)
  end)
end)
