-- spec/integration/load_budget_spec.lua: loading the app has a time budget of its own
-- (SWITCHYARD_LOAD_TIMEOUT, default 10 s), separate from app.lua.max_time, which is only
-- known once the app has loaded. Start-up work is measured in CPU time (os.clock), and the
-- budget is set far above it, so a slow machine cannot fail the test; the endless loop fails
-- whatever the machine.
local H = require "helpers.server"

local function check(src, env)
  local dir = H.tmpdir()
  local path = dir .. "/app.lua"
  H.write_file(path, src)
  local args = { "env" }
  for _, e in ipairs(env or {}) do args[#args + 1] = e end
  args[#args + 1] = H.bin()
  args[#args + 1] = "--check"
  args[#args + 1] = path
  local code, out, err = H.run(args, 120)
  H.rmdir(dir)
  return code, out .. err
end

describe("the load budget", function()
  it("lets a start-up of 2.5 s of CPU finish under a 30 s budget", function()
    local code, out = check([[
      local t0 = os.clock()
      while os.clock() - t0 < 2.5 do end
      return { lua = { max_time = 10 }, request = function(req, res) res:send(200) end }
    ]], { "SWITCHYARD_LOAD_TIMEOUT=30" })
    assert.are.equal(0, code, out)
  end)

  it("stops an endless start-up with a message naming the load budget", function()
    local code, out = check("while true do end", { "SWITCHYARD_LOAD_TIMEOUT=1" })
    assert.are.equal(1, code, out)
    assert.truthy(out:find("time budget for loading (1 s; SWITCHYARD_LOAD_TIMEOUT", 1, true), out)
  end)

  it("app.lua.max_time does not bound the load", function()
    local code, out = check([[
      local t0 = os.clock()
      while os.clock() - t0 < 0.5 do end
      return { lua = { max_time = 0.1 } }
    ]], { "SWITCHYARD_LOAD_TIMEOUT=30" })
    assert.are.equal(0, code, out)
  end)

  it("refuses a bad SWITCHYARD_LOAD_TIMEOUT", function()
    for _, v in ipairs({ "soon", "-1", "nan", "1e9" }) do
      local code, out = check("return {}", { "SWITCHYARD_LOAD_TIMEOUT=" .. v })
      assert.are.equal(1, code, out)
      assert.truthy(out:find("SWITCHYARD_LOAD_TIMEOUT must be seconds", 1, true), out)
    end
  end)
end)
