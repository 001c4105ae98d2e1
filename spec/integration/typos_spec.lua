-- spec/integration/typos_spec.lua: typos are errors. A name the server does not know in the app
-- table, app.options, app.http, app.lua (at load, and so with --check), in a handlers table or
-- accept options given to sy.accept (a 500 and a log line naming the app's line), each with the
-- valid name it resembles; a decision made and not returned is a warning, once per call site.
local H = require "helpers.server"

local function check(app)
  local code, out, err = H.run({ H.bin(), "--check", app })
  return code, out .. err
end

local function up(path, token)
  local headers = { "Upgrade: " .. token, "Connection: Upgrade" }
  if token == "websocket" then
    headers[#headers + 1] = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    headers[#headers + 1] = "Sec-WebSocket-Version: 13"
  end
  return H.request("GET", path, headers)
end

local function status_of(srv, path, token)
  local c = H.must_connect(srv.port)
  c:send(up(path, token))
  local res, err = c:read_response({ timeout = 10 })
  c:close()
  assert(res, "no answer: " .. tostring(err) .. "; log: " .. srv:log())
  return res.status
end

local function log_has(srv, text)
  assert.truthy(H.wait_for(function() return srv:log():find(text, 1, true) end, 10),
                "log lacks " .. text .. ": " .. srv:log())
end

local function count(s, text)
  local n, i = 0, 1
  while true do
    local a, b = s:find(text, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

describe("typos at load", function()
  local cases = {
    { "spec/apps/typo_hook.lua", "unknown app key 'upgarde' (did you mean 'upgrade'?)" },
    { "spec/apps/typo_options.lua",
      "unknown app.options option 'idle_timout' (did you mean 'idle_timeout'?)" },
    { "spec/apps/typo_compression.lua",
      'app.options: option compression must be false, true, "shared", "small" or "default" (got bogus)' },
    { "spec/apps/typo_http.lua", "unknown app.http option 'max_bdy' (did you mean 'max_body'?)" },
    { "spec/apps/typo_lua.lua", "unknown app.lua option 'max_memry' (did you mean 'max_memory'?)" },
  }
  for _, case in ipairs(cases) do
    local app, msg = case[1], case[2]
    it("--check reports " .. app, function()
      local code, text = check(app)
      assert.are_not.equal(0, code)
      assert.truthy(text:find(app .. ": " .. msg, 1, true), text)
    end)
    it("the server exits at start for " .. app, function()
      local code, _, err = H.run({ H.bin(), "--listen", "127.0.0.1:0", app }, 30)
      assert.are.equal(1, code)
      assert.truthy(err:find(msg, 1, true), err)
    end)
  end

  it("suggests a name that differs only in case", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, "return { Request = function() end }\n")
    local code, text = check(app)
    H.rmdir(dir)
    assert.are_not.equal(0, code)
    assert.truthy(text:find("unknown app key 'Request' (did you mean 'request'?)", 1, true), text)
  end)

  it("names a key far from every known one without a suggestion", function()
    local dir = H.tmpdir()
    local app = dir .. "/app.lua"
    H.write_file(app, "return { settings = {} }\n")
    local code, text = check(app)
    H.rmdir(dir)
    assert.are_not.equal(0, code)
    assert.truthy(text:find("unknown app key 'settings'", 1, true), text)
    assert.falsy(text:find("did you mean", 1, true), text)
  end)

  it("accepts the app's own names and every example (no false positives)", function()
    local apps = { "spec/apps/typo_own.lua", "spec/apps/typo_accept.lua",
                   "spec/apps/typo_return.lua" }
    local p = io.popen("ls examples/*.lua examples/*/*.lua")
    for f in p:lines() do apps[#apps + 1] = f end
    p:close()
    assert.truthy(#apps > 6)
    for _, f in ipairs(apps) do
      local code, text = check(f)
      assert.are.equal(0, code, f .. ": " .. text)
    end
  end)
end)

describe("typos at sy.accept", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/typo_accept.lua")

  it("an unknown WebSocket handler: 500, the log names it, the suggestion and the line", function()
    assert.are.equal(500, status_of(srv, "/handler", "websocket"))
    log_has(srv, "typo_accept.lua:15: unknown handler 'mesage' (did you mean 'message'?)")
  end)

  it("an unknown raw handler", function()
    assert.are.equal(500, status_of(srv, "/raw-handler", "echo"))
    log_has(srv, "typo_accept.lua:17: unknown handler 'dta' (did you mean 'data'?)")
  end)

  it("an unknown accept option", function()
    assert.are.equal(500, status_of(srv, "/option", "websocket"))
    log_has(srv, "unknown accept option 'max_mesage_size' (did you mean 'max_message_size'?)")
    assert.are.equal(500, status_of(srv, "/raw-option", "echo"))
    log_has(srv, "unknown accept option 'idle_timout' (did you mean 'idle_timeout'?)")
  end)

  it("a bad compression value lists the valid ones", function()
    assert.are.equal(500, status_of(srv, "/compression", "websocket"))
    log_has(srv, 'option compression must be false, true, "shared", "small" or "default" (got bogus)')
  end)

  it("a correct accept switches, and a handlers table is checked again after an error", function()
    assert.are.equal(101, status_of(srv, "/good", "websocket"))
    assert.are.equal(101, status_of(srv, "/good", "websocket"))
    assert.are.equal(500, status_of(srv, "/handler", "websocket"))
  end)
end)

describe("a decision made and not returned", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/typo_return.lua")

  it("is logged once per call site, however often it happens", function()
    for _ = 1, 3 do assert.are.equal(404, status_of(srv, "/forgot", "echo")) end
    assert.are.equal(101, status_of(srv, "/kept", "echo"))
    assert.are.equal(404, status_of(srv, "/other", "echo"))
    local msg = "app.upgrade (spec/apps/typo_return.lua:8): a decision was made but not returned"
      .. " (missing `return`?)"
    log_has(srv, msg)
    assert.are.equal(1, count(srv:log(), "not returned"), srv:log())
  end)
end)

describe("an app with its own names", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/typo_own.lua")

  it("runs without warnings", function()
    assert.are.equal(101, status_of(srv, "/", "echo"))
    assert.are.equal(101, status_of(srv, "/", "echo"))
    local c = H.must_connect(srv.port)
    c:send(H.get("/"))
    assert.are.equal("fine\n", c:must_response().body)
    c:close()
    assert.falsy(srv:log():find("warn", 1, true), srv:log())
    assert.falsy(srv:log():find("error", 1, true), srv:log())
  end)
end)

describe("an unknown handler at the Lua memory cap", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/typo_memory.lua")

  -- The failed hook's log line (with its traceback) is built at the cap too: the server stays.
  it("answers every accept with 500 or closes, and the server stays up", function()
    for n = 0, 6000, 16 do
      local c = H.must_connect(srv.port)
      c:send(H.request("GET", "/fill?n=" .. n, { "Upgrade: websocket", "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13" }))
      local res, err = c:read_response({ timeout = 10 })
      c:close()
      assert(res or tostring(err):find("closed"), ("n=%d: %s"):format(n, tostring(err)))
      assert(not res or res.status == 500, ("n=%d: %s"):format(n, res and res.status))
    end
    assert.is_true(srv:alive())
    log_has(srv, "unknown handler 'dta' (did you mean 'data'?)")
  end)
end)
