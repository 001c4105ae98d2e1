-- spec/integration/cli_spec.lua: the command line contract (DESIGN.md "Command line").
local H = require "helpers.server"

local BASIC = "spec/apps/basic.lua"

describe("switchyard --check", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  it("exits 0 and prints `ok: APP` for a valid app", function()
    local code, out, err = H.run({ H.bin(), "--check", BASIC })
    assert.are.equal(0, code, "stderr: " .. err)
    assert.are.equal("ok: " .. BASIC, (out:gsub("\n$", "")))
  end)

  it("accepts every example app", function()
    for _, f in ipairs({ "examples/hello.lua", "examples/require_tls.lua",
                         "examples/lines/server.lua" }) do
      local code, out, err = H.run({ H.bin(), "--check", f })
      assert.are.equal(0, code, f .. ": " .. err)
      assert.are.equal("ok: " .. f, (out:gsub("\n$", "")))
    end
  end)

  it("exits 1 naming file and line for a syntax error", function()
    local app = dir .. "/app.lua"
    H.write_file(app, "local app = {}\nfunction app.request(req, res)\n  res:send(200 'x'\nend\nreturn app\n")
    local code, _, err = H.run({ H.bin(), "--check", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("app.lua:3:", 1, true), "stderr: " .. err)
  end)

  it("exits 1 naming the file when it does not exist", function()
    local app = dir .. "/missing-app.lua"
    local code, out, err = H.run({ H.bin(), "--check", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("missing-app.lua", 1, true), "stderr: " .. err)
    assert.falsy(out:find("ok:", 1, true))
  end)

  it("exits 1 saying it must return a table when the app returns something else", function()
    local app = dir .. "/number.lua"
    H.write_file(app, "return 42\n")
    local code, _, err = H.run({ H.bin(), "--check", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("must return a table", 1, true), "stderr: " .. err)
  end)

  it("exits 1 when the app returns nothing", function()
    local app = dir .. "/nothing.lua"
    H.write_file(app, "local x = 1\n")
    local code, _, err = H.run({ H.bin(), "--check", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("must return a table", 1, true), "stderr: " .. err)
  end)

  it("exits 1 with the message and line of an error raised while loading", function()
    local app = dir .. "/raises.lua"
    H.write_file(app, "local x = 1\nerror('load-time-failure')\nreturn {}\n")
    local code, _, err = H.run({ H.bin(), "--check", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("load-time-failure", 1, true), "stderr: " .. err)
    assert.truthy(err:find("raises.lua:2:", 1, true), "stderr: " .. err)
  end)
end)

describe("switchyard APP.lua", function()
  local dir
  before_each(function() dir = H.tmpdir() end)
  after_each(function() H.rmdir(dir) end)

  it("refuses to start with an app that fails to load (exit 1, file:line)", function()
    local app = dir .. "/broken.lua"
    H.write_file(app, "return {\n  request = function(req, res)\n    res:send(200,, 'x')\n  end }\n")
    local code, out, err = H.run({ H.bin(), "--listen", "127.0.0.1:0", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("broken.lua:3:", 1, true), "stderr: " .. err)
    assert.falsy(out:find("listening on", 1, true))
  end)

  it("refuses to start with an app that does not return a table", function()
    local app = dir .. "/str.lua"
    H.write_file(app, "return 'nope'\n")
    local code, _, err = H.run({ H.bin(), "--listen", "127.0.0.1:0", app })
    assert.are.equal(1, code)
    assert.truthy(err:find("must return a table", 1, true), "stderr: " .. err)
  end)

  it("prints exactly `listening on http://127.0.0.1:PORT` with a real port for :0", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    local out = srv:stdout()
    assert.truthy(out:match("^listening on http://127%.0%.0%.1:%d+\n$"), ("stdout: %q"):format(out))
    assert.is_true(srv.port > 0 and srv.port < 65536)
    local res = H.must_roundtrip(srv.port, H.get("/"))
    assert.are.equal(200, res.status)
  end)

  it("serves on every --listen given, one line each", function()
    local srv = H.must_start(BASIC, { listen = { "127.0.0.1:0", "127.0.0.1:0" } })
    finally(function() H.close_all(); srv:cleanup() end)
    assert.are.equal(2, #srv.ports)
    assert.are_not.equal(srv.ports[1], srv.ports[2])
    for _, port in ipairs(srv.ports) do
      local res = H.must_roundtrip(port, H.get("/"))
      assert.are.equal(200, res.status)
      assert.are.equal("hello\n", res.body)
    end
  end)

  it("listens on a fixed port given with --listen", function()
    -- Find a free port by binding and releasing it (a race with other programs is unlikely).
    local socket = require "socket"
    local probe = assert(socket.bind("127.0.0.1", 0))
    local _, port = probe:getsockname()
    probe:close()
    local srv = H.must_start(BASIC, { listen = { "127.0.0.1:" .. port } })
    finally(function() H.close_all(); srv:cleanup() end)
    assert.are.equal(tonumber(port), srv.port)
    assert.are.equal("http://127.0.0.1:" .. port, srv.urls[1])
    assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
  end)

  it("exits 0 on SIGTERM", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
    assert.are.equal(0, srv:stop("TERM"))
  end)

  it("exits 0 on SIGINT", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    assert.are.equal(0, srv:stop("INT"))
  end)

  it("exits 0 on SIGTERM with an idle keep-alive connection open", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    local c = H.must_connect(srv.port)
    c:send(H.get("/"))
    assert.are.equal(200, c:must_response().status)
    assert.are.equal(0, srv:stop("TERM"))
  end)

  it("stops accepting after SIGTERM", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    local port = srv.port
    assert.are.equal(0, srv:stop("TERM"))
    local c = H.connect(port)
    if c then
      -- Something accepted: it must not be switchyard answering.
      c:send(H.get("/"))
      local res = c:read_response({ timeout = 1 })
      c:close()
      assert.is_nil(res)
    end
  end)

  it("writes log lines to stderr, not stdout", function()
    local srv = H.must_start(BASIC)
    finally(function() H.close_all(); srv:cleanup() end)
    assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/log")).status)
    assert.truthy(H.wait_for(function() return srv:log():find("log-marker", 1, true) end, 2),
                  "stderr: " .. srv:log())
    assert.falsy(srv:stdout():find("log-marker", 1, true))
  end)
end)
