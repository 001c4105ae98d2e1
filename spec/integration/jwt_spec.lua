-- spec/integration/jwt_spec.lua: switchyard.jwt and switchyard.crypto inside the real server
-- (the crypto module comes from package.preload, no .so lookup): app.upgrade checks a token
-- from the query and answers 101 or 401. Tokens are made with the openssl command line (this
-- process never loads switchyard.crypto, so the spec also runs against an ASan build) and by
-- jwt.sign inside the server.
local H = require "helpers.server"

describe("JWT in app.upgrade", function()
  local dir, srv
  local function file(name) return dir .. "/" .. name end
  local function sh(cmd) assert(os.execute(cmd .. " >/dev/null 2>&1"), "failed: " .. cmd) end
  local function run(cmd)
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    return out
  end
  -- base64url (no padding) of a file's bytes, by openssl.
  local function b64file(path)
    return (run("openssl base64 -A -in " .. H.shquote(path)):gsub("[\r\n=]", "")
                                                        :gsub("[+/]", { ["+"] = "-", ["/"] = "_" }))
  end
  local function b64(s)
    H.write_file(file("b64"), s)
    return b64file(file("b64"))
  end
  -- A token whose signature openssl makes: "hs" (HMAC-SHA256 with the secret) or "rs".
  local function token(alg, claims_json, how)
    local input = b64('{"alg":"' .. alg .. '","typ":"JWT"}') .. "." .. b64(claims_json)
    H.write_file(file("input"), input)
    if how == "hs" then
      sh(("openssl dgst -sha256 -hmac %s -binary -out %s %s"):format(
         H.shquote(H.read_file(file("secret"))), file("sig"), file("input")))
    else
      sh(("openssl dgst -sha256 -sign %s -out %s %s"):format(file("rsa.pem"), file("sig"),
                                                            file("input")))
    end
    return input .. "." .. b64file(file("sig"))
  end
  local function claims(sub, exp, aud)
    return ('{"sub":"%s","exp":%d,"aud":"%s"}'):format(sub, exp, aud or "chat")
  end

  local function upgrade(query)
    local c = H.must_connect(srv.port)
    c:send(H.request("GET", "/ws?" .. query, { "Upgrade: echo/1", "Connection: Upgrade" }))
    return c, c:must_response()
  end

  lazy_setup(function()
    dir = H.tmpdir()
    sh("openssl rand -hex -out " .. file("secret") .. " 32")
    H.write_file(file("secret"), (H.read_file(file("secret")):gsub("%s", "")))
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. file("rsa.pem"))
    sh("openssl pkey -in " .. file("rsa.pem") .. " -pubout -out " .. file("rsa.pub"))
    sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. file("ec.pem"))
    sh("openssl pkey -in " .. file("ec.pem") .. " -pubout -out " .. file("ec.pub"))
    H.write_file(file("keys.lua"), ("return { secret = %q, rsa_pub = %q, ec_pub = %q }\n"):format(
      H.read_file(file("secret")), H.read_file(file("rsa.pub")), H.read_file(file("ec.pub"))))
    H.write_file(file("app.lua"), H.read_file("spec/apps/jwt.lua"))
    srv = H.must_start(file("app.lua"))
  end)
  lazy_teardown(function()
    if srv then
      assert.are.equal(0, srv:stop())
      srv:cleanup()
    end
    H.rmdir(dir)
  end)
  after_each(H.close_all)

  it("the crypto module is the server's own (package.preload)", function()
    local res = H.must_roundtrip(srv.port, H.get("/preload"))
    assert.are.equal(200, res.status)
    -- SHA-256("abc"), base64url
    assert.are.equal("preloaded ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0", res.body)
  end)

  it("accepts valid HS256 and RS256 tokens made by openssl", function()
    local exp = os.time() + 300
    for _, case in ipairs({ { "HS256", "hs", "alice" }, { "RS256", "rs", "bob" } }) do
      local c, res = upgrade("token=" .. token(case[1], claims(case[3], exp), case[2])
                             .. "&key=" .. case[2])
      assert.are.equal(101, res.status, res.body)
      c:send("hi\n")
      assert.are.equal("sub=" .. case[3], c:line())
      c:close()
    end
  end)

  it("accepts a token made by jwt.sign in the server", function()
    local t = H.must_roundtrip(srv.port, H.get("/token?sub=carol")).body
    local c, res = upgrade("token=" .. t)
    assert.are.equal(101, res.status, res.body)
    c:send("x\n")
    assert.are.equal("sub=carol", c:line())
  end)

  it("answers 401 with the reason for bad tokens", function()
    local exp = os.time() + 300
    local good = token("HS256", claims("alice", exp), "hs")
    local h, p = good:match("^([^.]+)%.([^.]+)%.")
    local cases = {
      { "token=" .. h .. "." .. b64(claims("mallory", exp)) .. "." .. good:match("[^.]+$"),
        "bad signature" },
      { "token=" .. token("HS256", claims("alice", os.time() - 100), "hs"), "expired" },
      { "token=" .. token("HS256", claims("alice", exp, "other"), "hs"), "wrong audience" },
      { "token=" .. b64('{"alg":"none"}') .. "." .. p .. ".", "unsupported alg" },
      { "token=" .. h .. "." .. p, "malformed" },
      { "token=" .. token("RS256", claims("alice", exp), "rs") .. "&key=es", "unsupported alg" },
      { "token=" .. token("RS256", claims("alice", exp), "rs") .. "&key=hs", "unsupported alg" },
      { "", "malformed" },
      { "token=" .. H.must_roundtrip(srv.port, H.get("/token?sub=x&ttl=-5")).body, "expired" },
    }
    for _, case in ipairs(cases) do
      local _, res = upgrade(case[1])
      assert.are.equal(401, res.status, case[2])
      assert.are.equal(case[2] .. "\n", res.body)
      assert.matches("^Bearer", res.headers["www-authenticate"])
    end
    -- Alg confusion: HS256 keyed with the RSA public key PEM, checked against that PEM.
    H.write_file(file("secret.bak"), H.read_file(file("secret")))
    H.write_file(file("secret"), H.read_file(file("rsa.pub")))
    local forged = token("HS256", claims("mallory", exp), "hs")
    H.write_file(file("secret"), H.read_file(file("secret.bak")))
    local _, res = upgrade("token=" .. forged .. "&key=rs")
    assert.are.equal(401, res.status)
    assert.are.equal("unsupported alg\n", res.body)
    assert.is_true(srv:alive())
  end)
end)
