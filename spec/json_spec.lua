-- spec/json_spec.lua: switchyard.json over lua-cjson: nil, err instead of raising, strict and
-- bounded defaults, and settings kept apart from the global cjson module.
local json = require "switchyard.json"

describe("switchyard.json", function()
  it("encodes and decodes", function()
    local s = json.encode({ a = 1, list = { 1, "two", true } })
    assert.are.same({ a = 1, list = { 1, "two", true } }, json.decode(s))
    assert.are.equal('"\\"q\\"\\n"', json.encode('"q"\n'))
    assert.are.equal("[1,2,3]", json.encode({ 1, 2, 3 }))
  end)

  it("has a null that round-trips", function()
    local t = json.decode('{"a":null,"b":[null]}')
    assert.are.equal(json.null, t.a)
    assert.are.equal(json.null, t.b[1])
    assert.are.equal('{"a":null}', json.encode({ a = json.null }))
    assert.are.equal(json.null, json.decode("null"))
  end)

  it("returns nil, err on bad input instead of raising", function()
    for _, text in ipairs({ "", "{", "[1,2", "{'a':1}", "nul", "[1,]", "\"\\x\"" }) do
      local v, err = json.decode(text)
      assert.is_nil(v, text)
      assert.is_string(err, text)
    end
    local v, err = json.decode(nil)
    assert.is_nil(v)
    assert.is_truthy(err:find("string expected"))
  end)

  it("refuses NaN, Infinity and hex numbers both ways", function()
    for _, text in ipairs({ "NaN", "Infinity", "-Infinity", "[0x10]" }) do
      assert.is_nil(json.decode(text), text)
    end
    for _, n in ipairs({ 0 / 0, math.huge, -math.huge }) do
      local s, err = json.encode(n)
      assert.is_nil(s)
      assert.is_string(err)
    end
  end)

  it("bounds nesting depth both ways", function()
    local deep = ("["):rep(json.MAX_DEPTH + 1) .. ("]"):rep(json.MAX_DEPTH + 1)
    local v, err = json.decode(deep)
    assert.is_nil(v)
    assert.is_truthy(err:find("nested"))
    local ok = ("["):rep(json.MAX_DEPTH) .. ("]"):rep(json.MAX_DEPTH)
    assert.is_table(json.decode(ok))
    local t = {}
    t.self = t
    local s, err2 = json.encode(t)
    assert.is_nil(s)
    assert.is_truthy(err2:find("nesting"))
    -- a million opening brackets cost an error, not a stack overflow
    assert.is_nil(json.decode(("["):rep(1000000)))
  end)

  it("returns nil, err for values JSON cannot hold", function()
    assert.is_nil(json.encode(function() end))
    assert.is_nil(json.encode({ [1] = 1, [1000] = 2 })) -- mostly holes
  end)

  it("does not change the settings of the global cjson module", function()
    local cjson = require "cjson"
    local v = cjson.decode("NaN") -- cjson's own default accepts it
    assert.is_true(v ~= v)
  end)
end)
