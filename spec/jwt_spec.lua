-- spec/jwt_spec.lua: switchyard.jwt from a plain lua5.4. Tokens come from two makers: the
-- openssl command line (keys from `openssl genpkey`, signatures from `openssl dgst`) and
-- jwt.sign; both must verify, and every way a token can be wrong gives its reason.
local jwt = require "switchyard.jwt"
local crypto = require "switchyard.crypto"
local cjson = require "cjson"
local H = require "helpers.server"

local b64 = crypto.base64url_encode
local NOW = 1700000000

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- header and payload as JSON text (so a test can write exactly what it wants).
local function part(t) return b64(type(t) == "string" and t or cjson.encode(t)) end

local function hs_token(header, payload, secret)
  local input = part(header) .. "." .. part(payload)
  return input .. "." .. b64(crypto.hmac("sha256", secret, input))
end

describe("switchyard.jwt", function()
  local dir
  local function file(name) return dir .. "/" .. name end
  local function sh(cmd) assert(os.execute(cmd .. " >/dev/null 2>&1"), "failed: " .. cmd) end
  local function key(name) return H.read_file(file(name)) end

  -- A token signed by `openssl dgst -sha256 -sign KEY` (ES256: DER turned into r || s with
  -- `openssl asn1parse`).
  local function openssl_token(header, payload, keyname, ec)
    local input = part(header) .. "." .. part(payload)
    H.write_file(file("input"), input)
    sh(("openssl dgst -sha256 -sign %s -out %s %s"):format(file(keyname), file("sig"),
                                                          file("input")))
    local sig = H.read_file(file("sig"))
    if ec then
      local p = io.popen("openssl asn1parse -inform DER -in " .. file("sig"))
      local out = p:read("a")
      p:close()
      local ints = {}
      for h in out:gmatch("INTEGER%s*:(%x+)") do ints[#ints + 1] = ("0"):rep(64 - #h) .. h end
      assert(#ints == 2, out)
      sig = unhex(ints[1] .. ints[2])
    end
    return input .. "." .. b64(sig)
  end

  lazy_setup(function()
    dir = H.tmpdir()
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. file("rsa.pem"))
    sh("openssl pkey -in " .. file("rsa.pem") .. " -pubout -out " .. file("rsa.pub"))
    sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. file("ec.pem"))
    sh("openssl pkey -in " .. file("ec.pem") .. " -pubout -out " .. file("ec.pub"))
  end)
  lazy_teardown(function() H.rmdir(dir) end)

  local claims = { sub = "alice", exp = NOW + 60 }
  local at = { now = NOW }

  describe("valid tokens", function()
    it("HS256 from hand-built HMAC and from jwt.sign", function()
      local t = hs_token({ alg = "HS256", typ = "JWT" }, claims, "s3cret")
      local c, h = jwt.verify(t, "s3cret", at)
      assert.are.equal("alice", c and c.sub, h)
      assert.are.equal("HS256", h.alg)
      local t2 = assert(jwt.sign(claims, "s3cret"))
      assert.are.equal("alice", jwt.verify(t2, "s3cret", at).sub)
      assert.are.equal("HS256", cjson.decode(crypto.base64url_decode(t2:match("^[^.]+"))).alg)
    end)

    it("RS256 made by openssl, verified with the public key", function()
      local t = openssl_token({ alg = "RS256", typ = "JWT" }, claims, "rsa.pem")
      local c, err = jwt.verify(t, key("rsa.pub"), at)
      assert.are.equal("alice", c and c.sub, err)
    end)

    it("ES256 made by openssl, verified with the public key", function()
      local t = openssl_token({ alg = "ES256" }, claims, "ec.pem", true)
      local c, err = jwt.verify(t, key("ec.pub"), at)
      assert.are.equal("alice", c and c.sub, err)
    end)

    it("RS256 and ES256 from jwt.sign, checked by openssl too", function()
      for _, case in ipairs({ { "RS256", "rsa" }, { "ES256", "ec" } }) do
        local t = assert(jwt.sign(claims, key(case[2] .. ".pem"), case[1], { kid = "k1" }))
        local c, h = jwt.verify(t, key(case[2] .. ".pub"), at)
        assert.are.equal("alice", c and c.sub, h)
        assert.are.equal("k1", h.kid)
        if case[1] == "RS256" then
          local input, sig = t:match("^(.*)%.([^.]*)$")
          H.write_file(file("input"), input)
          H.write_file(file("sig"), crypto.base64url_decode(sig))
          sh(("openssl dgst -sha256 -verify %s -signature %s %s"):format(file("rsa.pub"),
             file("sig"), file("input")))
        end
      end
    end)

    it("a key function picks the key from the header", function()
      local t = assert(jwt.sign(claims, "k2-secret", "HS256", { kid = "k2" }))
      local keys = { k1 = "k1-secret", k2 = "k2-secret" }
      local c = jwt.verify(t, function(h) return keys[h.kid] end, at)
      assert.are.equal("alice", c and c.sub)
      assert.are.same({ nil, "unknown key" },
                      { jwt.verify(t, function() return nil end, at) })
    end)
  end)

  describe("rejected", function()
    it("tampered payload or signature: bad signature", function()
      for _, make in ipairs({
        function() return assert(jwt.sign(claims, "s3cret")), "s3cret" end,
        function() return openssl_token({ alg = "RS256" }, claims, "rsa.pem"), key("rsa.pub") end,
        function() return openssl_token({ alg = "ES256" }, claims, "ec.pem", true), key("ec.pub") end,
      }) do
        local t, k = make()
        local h, p, s = t:match("^([^.]+)%.([^.]+)%.([^.]+)$")
        local forged = part({ sub = "mallory", exp = NOW + 60 })
        assert.are.same({ nil, "bad signature" }, { jwt.verify(h .. "." .. forged .. "." .. s, k, at) })
        local sig = crypto.base64url_decode(s)
        local flipped = string.char(sig:byte(1) ~ 1) .. sig:sub(2)
        assert.are.same({ nil, "bad signature" },
                        { jwt.verify(h .. "." .. p .. "." .. b64(flipped), k, at) })
        assert.are.same({ nil, "bad signature" }, { jwt.verify(h .. "." .. p .. ".", k, at) })
      end
      assert.are.same({ nil, "bad signature" },
                      { jwt.verify(assert(jwt.sign(claims, "s3cret")), "other", at) })
    end)

    it("alg none, in any spelling, with or without a signature", function()
      for _, alg in ipairs({ "none", "None", "NONE" }) do
        local t = part({ alg = alg }) .. "." .. part(claims) .. "."
        assert.are.same({ nil, "unsupported alg" }, { jwt.verify(t, "s3cret", at) })
        assert.are.same({ nil, "unsupported alg" },
                        { jwt.verify(t, "s3cret", { now = NOW, algorithms = { alg } }) })
      end
      assert.has_error(function() jwt.sign(claims, "s3cret", "none") end)
    end)

    it("alg confusion: an HS256 token keyed with the RSA public key PEM", function()
      local pem = key("rsa.pub")
      local t = hs_token({ alg = "HS256" }, claims, pem)
      assert.are.same({ nil, "unsupported alg" }, { jwt.verify(t, pem, at) })
      -- Even when the app lists HS256: a PEM key is never an HMAC secret.
      assert.are.same({ nil, "unsupported alg" },
                      { jwt.verify(t, pem, { now = NOW, algorithms = { "HS256", "RS256" } }) })
      -- And the other way: an RS256 token does not verify with an HMAC secret.
      local rs = openssl_token({ alg = "RS256" }, claims, "rsa.pem")
      assert.are.same({ nil, "unsupported alg" }, { jwt.verify(rs, "s3cret", at) })
      -- ES256 header on an RSA key, RS256 header on an EC key.
      local es = openssl_token({ alg = "ES256" }, claims, "ec.pem", true)
      assert.are.same({ nil, "unsupported alg" }, { jwt.verify(es, pem, at) })
      assert.are.same({ nil, "unsupported alg" }, { jwt.verify(rs, key("ec.pub"), at) })
    end)

    it("an alg outside opts.algorithms", function()
      local t = assert(jwt.sign(claims, "s3cret", "HS384"))
      assert.are.equal("alice", jwt.verify(t, "s3cret", at).sub)
      assert.are.same({ nil, "unsupported alg" },
                      { jwt.verify(t, "s3cret", { now = NOW, algorithms = { "HS256" } }) })
      local rs = openssl_token({ alg = "RS256" }, claims, "rsa.pem")
      assert.are.same({ nil, "unsupported alg" },
                      { jwt.verify(rs, key("rsa.pub"), { now = NOW, algorithms = { "PS256" } }) })
      local odd = hs_token({ alg = "XS256" }, claims, "s3cret")
      assert.are.same({ nil, "unsupported alg" }, { jwt.verify(odd, "s3cret", at) })
    end)

    it("exp, nbf and leeway", function()
      local function v(c, opts)
        opts = opts or {}
        opts.now = opts.now or NOW
        return { jwt.verify(assert(jwt.sign(c, "k")), "k", opts) }
      end
      assert.are.same({ nil, "expired" }, v({ exp = NOW }))
      assert.are.same({ nil, "expired" }, v({ exp = NOW - 1 }))
      assert.are.equal(NOW + 1, v({ exp = NOW + 1 })[1].exp)
      assert.are.equal(NOW - 5, v({ exp = NOW - 5 }, { leeway = 10 })[1].exp)
      assert.are.same({ nil, "expired" }, v({ exp = NOW - 10 }, { leeway = 10 }))
      assert.are.same({ nil, "not yet valid" }, v({ nbf = NOW + 1 }))
      assert.are.equal(NOW, v({ nbf = NOW })[1].nbf)
      assert.are.equal(NOW + 5, v({ nbf = NOW + 5 }, { leeway = 10 })[1].nbf)
      assert.are.same({ nil, "malformed" }, v({ exp = "tomorrow" }))
      assert.are.same({ nil, "malformed" }, v({ nbf = true }))
      -- The current time by default.
      assert.are.same({ nil, "expired" },
                      { jwt.verify(assert(jwt.sign({ exp = os.time() - 100 }, "k")), "k") })
      assert.is_table(jwt.verify(assert(jwt.sign({ exp = os.time() + 100 }, "k")), "k"))
    end)

    it("aud: string or list on either side", function()
      local function v(aud, want)
        return { jwt.verify(assert(jwt.sign({ aud = aud }, "k")), "k", { now = NOW, audience = want }) }
      end
      assert.is_table(v("api", "api")[1])
      assert.is_table(v({ "web", "api" }, "api")[1])
      assert.is_table(v("api", { "x", "api" })[1])
      assert.is_table(v({ "web", "api" }, { "x", "api" })[1])
      assert.are.same({ nil, "wrong audience" }, v("web", "api"))
      assert.are.same({ nil, "wrong audience" }, v({ "web", "x" }, { "api" }))
      assert.are.same({ nil, "wrong audience" }, v(nil, "api"))
      -- A token meant for some audience is not taken by a verifier that names none.
      assert.are.same({ nil, "wrong audience" }, v("api", nil))
      assert.are.same({ nil, "malformed" }, v(5, "api"))
    end)

    it("iss", function()
      local t = assert(jwt.sign({ iss = "https://id.example" }, "k"))
      assert.is_table(jwt.verify(t, "k", { now = NOW, issuer = "https://id.example" }))
      assert.is_table(jwt.verify(t, "k", { now = NOW, issuer = { "a", "https://id.example" } }))
      assert.are.same({ nil, "wrong issuer" }, { jwt.verify(t, "k", { now = NOW, issuer = "https://evil" }) })
      assert.are.same({ nil, "wrong issuer" },
                      { jwt.verify(assert(jwt.sign({}, "k")), "k", { now = NOW, issuer = "x" }) })
    end)

    it("malformed tokens", function()
      local good = assert(jwt.sign(claims, "k"))
      local h, p, s = good:match("^([^.]+)%.([^.]+)%.([^.]+)$")
      local cases = {
        h .. "." .. p,                              -- two parts
        good .. ".x",                               -- four parts
        "",
        "...",
        h .. ".!!!." .. s,                          -- bad base64
        "e30." .. p .. "." .. s,                    -- header without alg
        part("[1]") .. "." .. p .. "." .. s,        -- header not an object
        part("{bad") .. "." .. p .. "." .. s,       -- header not JSON
        hs_token({ alg = "HS256" }, "{not json", "k"),  -- signed, but not JSON
        hs_token({ alg = "HS256" }, "[1,2]", "k"),      -- signed, but not an object
        hs_token({ alg = "HS256" }, '"text"', "k"),
        h .. "." .. p .. ".a",                      -- signature: bad base64 length
      }
      for i, t in ipairs(cases) do
        assert.are.same({ nil, "malformed" }, { jwt.verify(t, "k", at) }, "case " .. i)
      end
      assert.are.same({ nil, "malformed" }, { jwt.verify(nil, "k", at) })
      assert.are.same({ nil, "malformed" }, { jwt.verify(("a"):rep(20000), "k", at) })
    end)

    it("crit headers it does not know", function()
      local t = hs_token({ alg = "HS256", crit = { "exp2" }, exp2 = 1 }, claims, "k")
      assert.are.same({ nil, "unsupported crit" }, { jwt.verify(t, "k", at) })
    end)
  end)

  it("sign checks its arguments", function()
    assert.has_error(function() jwt.sign("x", "k") end)
    assert.has_error(function() jwt.sign({}, nil) end)
    assert.has_error(function() jwt.sign({}, "k", "XS256") end)
    assert.are.same({ nil, "no PEM private key" }, { jwt.sign({}, "k", "RS256") })
  end)
end)
