-- spec/integration/config_spec.lua: app.http values are checked as Lua numbers before any
-- conversion: huge, negative, NaN, infinite and fractional values stop the load with a
-- message naming the key and its range (no undefined float-to-integer conversion; the
-- sanitizer build traps one).
local H = require "helpers.server"

local function check(src)
  local dir = H.tmpdir()
  local path = dir .. "/app.lua"
  H.write_file(path, src)
  local code, out, err = H.run({ H.bin(), "--check", path }, 60)
  H.rmdir(dir)
  return code, out .. err
end

describe("app.http values", function()
  local bad = {
    { "max_body", "1e300" }, { "max_body", "-1" }, { "max_body", "0/0" },
    { "max_body", "math.huge" }, { "max_body", "1.5" }, { "max_body", "2^63" },
    { "max_head", "1e300" }, { "max_head", "0/0" }, { "max_head", "-math.huge" },
    { "max_headers", "2^64" }, { "max_headers", "0/0" }, { "max_headers", "10.5" },
    { "high_water", "1e300" }, { "high_water", "0/0" }, { "high_water", "4096.5" },
    { "header_timeout", "0/0" }, { "header_timeout", "math.huge" },
    { "keepalive_timeout", "0/0" }, { "keepalive_timeout", "-1" },
    { "max_body", "'1e300'" },
  }
  for _, case in ipairs(bad) do
    local key, value = case[1], case[2]
    it(("refuses %s = %s with a message naming the key"):format(key, value), function()
      local code, out = check(("return { http = { %s = %s } }"):format(key, value))
      assert.are.equal(1, code, out)
      assert.truthy(out:find("app.http." .. key, 1, true), out)
      assert.is_nil(out:find("runtime error", 1, true), out) -- UBSan
    end)
  end

  it("accepts values in range, integers written as floats included", function()
    local code, out = check("return { http = { max_body = 8 * 1024 * 1024, max_head = 32768.0,"
                            .. " max_headers = 200, high_water = 65536, header_timeout = 2.5,"
                            .. " keepalive_timeout = 15, } }")
    assert.are.equal(0, code, out)
  end)
end)
