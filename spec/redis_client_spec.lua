-- spec/redis_client_spec.lua: lua/switchyard/redis.lua against a real redis-server started
-- here, over LuaSocket (the same socket methods as sy.tcp()); the same client inside the
-- server, over sy.tcp(), is covered by the integration specs.
local socket = require "socket"
local redis = require "switchyard.redis"
local R = require "helpers.redis"

local function connect(rs, opts)
  opts = opts or {}
  opts.socket = socket.tcp
  return redis.connect("127.0.0.1", rs.port, opts)
end

describe("switchyard.redis", function()
  local rs
  setup(function() rs = R.start() end)
  teardown(function() if rs then rs:stop() end end)

  it("runs commands and maps every reply type", function()
    local r = assert(connect(rs))
    assert.are.equal("OK", r:call("SET", "k", "v"))
    assert.are.equal("v", r:call("GET", "k"))
    assert.are.equal(redis.null, r:call("GET", "absent"))
    assert.are.equal(1, r:call("INCR", "n"))
    assert.are.equal(math.type(r:call("INCR", "n")), "integer")
    assert.are.equal(3, r:call("RPUSH", "l", "a", "b", "c"))
    assert.are.same({ "a", "b", "c" }, r:call("LRANGE", "l", 0, -1))
    assert.are.same({}, r:call("LRANGE", "nothing", 0, -1))
    assert.are.equal(redis.null, r:call("BLPOP", "empty", "0.05")) -- a nil array
    assert.are.equal("OK", r:set("m", 42)) -- methods name commands
    assert.are.equal("42", r:get("m"))
    assert.are.equal("PONG", r:ping())
    r:close()
  end)

  it("is binary safe and takes large values", function()
    local r = assert(connect(rs))
    local v = "a\r\nb\0c$3\r\n*1\r\n"
    r:call("SET", "bin", v)
    assert.are.equal(v, r:call("GET", "bin"))
    local big = string.rep("0123456789abcdef", 65536) -- 1 MiB
    r:call("SET", "big", big)
    assert.are.equal(big, r:call("GET", "big"))
    r:close()
  end)

  it("answers an error reply with nil, err and keeps the connection", function()
    local r = assert(connect(rs))
    r:call("SET", "s", "text")
    local v, err = r:call("INCR", "s")
    assert.is_nil(v)
    assert.truthy(err:find("^ERR"), err)
    v, err = r:call("NOSUCHCOMMAND")
    assert.is_nil(v)
    assert.truthy(err:find("unknown command", 1, true), err)
    assert.are.equal("text", r:call("GET", "s"))
    r:close()
  end)

  it("pipelines commands, an error reply in its own slot", function()
    local r = assert(connect(rs))
    local res = assert(r:pipeline({ { "SET", "p", "1" }, { "INCR", "p" }, { "LPUSH", "p", "x" },
                                    { "GET", "p" }, { "GET", "absent" } }))
    assert.are.equal(5, #res)
    assert.are.equal("OK", res[1])
    assert.are.equal(2, res[2])
    assert.is_true(redis.is_error(res[3]))
    assert.truthy(res[3].err:find("WRONGTYPE", 1, true))
    assert.are.equal("2", res[4])
    assert.are.equal(redis.null, res[5])
    assert.is_false(redis.is_error(redis.null))
    -- 1,000 commands in one write.
    local cmds = {}
    for i = 1, 1000 do cmds[i] = { "INCR", "many" } end
    res = assert(r:pipeline(cmds))
    assert.are.equal(1000, res[1000])
    assert.are.same({}, r:pipeline({}))
    r:close()
  end)

  it("reports a timeout, then closed", function()
    local r = assert(connect(rs, { timeout = 0.3 }))
    local v, err = r:call("DEBUG", "SLEEP", "2")
    assert.is_nil(v)
    assert.are.equal("timeout", err)
    v, err = r:call("PING")
    assert.is_nil(v)
    assert.are.equal("closed", err)
  end)

  it("fails to connect to a closed port with nil, err", function()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    local r, err = redis.connect("127.0.0.1", tonumber(port), { socket = socket.tcp, timeout = 2 })
    assert.is_nil(r)
    assert.is_string(err)
  end)

  it("raises for arguments that are not strings or numbers", function()
    local r = assert(connect(rs))
    assert.has_error(function() r:call("SET", "k", true) end,
                     "redis: argument 3 of SET is a boolean (strings and numbers only)")
    assert.has_error(function() r:pipeline({ "GET" }) end)
    assert.are.equal("PONG", r:call("PING")) -- nothing was sent
    r:close()
  end)

  it("selects a database", function()
    local r = assert(connect(rs, { db = 3 }))
    r:call("SET", "indb3", "yes")
    local r0 = assert(connect(rs))
    assert.are.equal(redis.null, r0:call("GET", "indb3"))
    assert.are.equal("yes", r:call("GET", "indb3"))
    r:close()
    r0:close()
  end)
end)

describe("switchyard.redis with a password", function()
  local rs
  setup(function() rs = R.start({ "--requirepass", "s3cret" }) end)
  teardown(function() if rs then rs:stop() end end)

  it("authenticates, and a wrong password is nil, err", function()
    local r = assert(connect(rs, { password = "s3cret" }))
    assert.are.equal("PONG", r:call("PING"))
    r:close()
    local bad, err = connect(rs, { password = "wrong" })
    assert.is_nil(bad)
    assert.truthy(err:find("WRONGPASS", 1, true) or err:find("invalid", 1, true), err)
    local noauth = assert(connect(rs))
    local v, e = noauth:call("GET", "x")
    assert.is_nil(v)
    assert.truthy(e:find("NOAUTH", 1, true), e)
    noauth:close()
  end)
end)
