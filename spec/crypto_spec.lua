-- spec/crypto_spec.lua: switchyard.crypto from a plain lua5.4 (the loadable module
-- switchyard/crypto.so): digests, HMAC, base64, random bytes, constant-time compare and
-- signatures, against published vectors and the openssl command line.
local crypto = require "switchyard.crypto"
local H = require "helpers.server"

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

local function unhex(h)
  return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

describe("switchyard.crypto", function()
  it("digests: SHA-1 and SHA-2 of \"abc\" (FIPS 180-2 examples)", function()
    assert.are.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(crypto.sha1("abc")))
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                     hex(crypto.sha256("abc")))
    assert.are.equal("cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                     .. "8086072ba1e7cc2358baeca134c825a7", hex(crypto.sha384("abc")))
    assert.are.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                     .. "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                     hex(crypto.sha512("abc")))
    assert.are.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                     hex(crypto.sha256("")))
    assert.are.equal(hex(crypto.sha256("abc")), hex(crypto.digest("sha256", "abc")))
    assert.has_error(function() crypto.digest("md4-of-nothing", "abc") end)
    assert.has_error(function() crypto.sha256() end)
  end)

  it("hmac: RFC 4231 test case 2 with SHA-256/384/512, RFC 2202 with SHA-1", function()
    local key, data = "Jefe", "what do ya want for nothing?"
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                     hex(crypto.hmac("sha256", key, data)))
    assert.are.equal("af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
                     .. "8e2240ca5e69e2c78b3239ecfab21649", hex(crypto.hmac("sha384", key, data)))
    assert.are.equal("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554"
                     .. "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                     hex(crypto.hmac("sha512", key, data)))
    assert.are.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79", hex(crypto.hmac("sha1", key, data)))
    assert.has_error(function() crypto.hmac("nope", key, data) end)
  end)

  it("base64: RFC 4648 section 10 vectors, both ways", function()
    local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==",
                fooba = "Zm9vYmE=", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.are.equal(enc, crypto.base64_encode(plain))
      assert.are.equal(plain, crypto.base64_decode(enc))
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.are.equal(all, crypto.base64_decode(crypto.base64_encode(all)))
  end)

  it("base64url: no padding, - and _ for + and /", function()
    assert.are.equal("Zm9vYg", crypto.base64url_encode("foob"))
    assert.are.equal("Zm9vYmE", crypto.base64url_encode("fooba"))
    assert.are.equal("-_-_", crypto.base64url_encode(unhex("fbffbf")))
    assert.are.equal("+/+/", crypto.base64_encode(unhex("fbffbf")))
    assert.are.equal(unhex("fbffbf"), crypto.base64url_decode("-_-_"))
    assert.are.equal("foob", crypto.base64url_decode("Zm9vYg"))
    assert.are.equal("foob", crypto.base64url_decode("Zm9vYg==")) -- padding tolerated
    assert.are.equal("", crypto.base64url_decode(""))
  end)

  it("bad base64 gives nil and a message, never an error", function()
    local bad = { "Zm9", "Z", "Zm9v!", "Zm 9v", "Zm9vYg=", "Zm=vYg==", "Zm9vYg===", "====",
                  "Zm9v\0", "+/+/" }
    for _, s in ipairs(bad) do
      local ok, err = crypto.base64url_decode(s)
      if s ~= "Zm9" then -- unpadded: valid base64url
        assert.is_nil(ok, ("%q"):format(s))
        assert.is_string(err)
      end
    end
    for _, s in ipairs({ "Zm9", "Z", "Zm9v!", "Zm 9v", "Zm9vYg=", "Zm=vYg==", "-_-_", "Zg=a" }) do
      local ok, err = crypto.base64_decode(s)
      assert.is_nil(ok, ("%q"):format(s))
      assert.is_string(err)
    end
    -- Non-zero bits after the last whole byte: not a canonical encoding.
    assert.is_nil((crypto.base64_decode("Zh==")))
    assert.is_nil((crypto.base64url_decode("Zh")))
  end)

  it("equal: constant-time comparison of two strings", function()
    assert.is_true(crypto.equal("secret", "secret"))
    assert.is_true(crypto.equal("", ""))
    assert.is_false(crypto.equal("secret", "secreT"))
    assert.is_false(crypto.equal("secret", "secret2"))
    assert.is_false(crypto.equal("", "x"))
    assert.has_error(function() crypto.equal("a") end)
  end)

  it("random: n bytes from the system's generator, two draws differ", function()
    local a, b = crypto.random(32), crypto.random(32)
    assert.are.equal(32, #a)
    assert.are.equal(32, #b)
    assert.are_not.equal(a, b)
    assert.are.equal("", crypto.random(0))
    assert.are.equal(4096, #crypto.random(4096))
    assert.has_error(function() crypto.random(-1) end)
    assert.has_error(function() crypto.random(1 << 40) end)
  end)

  describe("signatures with keys made by the openssl command line", function()
    local dir
    local function sh(cmd)
      local ok = os.execute(cmd .. " >/dev/null 2>&1")
      assert(ok, "failed: " .. cmd)
    end
    local function file(name) return dir .. "/" .. name end
    local function openssl_sign(key, md, data, extra)
      H.write_file(file("data"), data)
      sh(("openssl dgst -%s %s -sign %s -out %s %s"):format(md, extra or "", file(key),
         file("sig"), file("data")))
      return H.read_file(file("sig"))
    end
    -- openssl dgst writes an ECDSA signature as DER; JWS wants r || s, each n bytes.
    local function der_to_raw(der, n)
      H.write_file(file("der"), der)
      local p = io.popen("openssl asn1parse -inform DER -in " .. file("der"))
      local out = p:read("a")
      p:close()
      local ints = {}
      for h in out:gmatch("INTEGER%s*:(%x+)") do ints[#ints + 1] = h end
      assert(#ints == 2, out)
      local function pad(h) return unhex(("0"):rep(2 * n - #h) .. h) end
      return pad(ints[1]) .. pad(ints[2])
    end

    lazy_setup(function()
      dir = H.tmpdir()
      sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. file("rsa.pem"))
      sh("openssl pkey -in " .. file("rsa.pem") .. " -pubout -out " .. file("rsa.pub"))
      sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. file("ec.pem"))
      sh("openssl pkey -in " .. file("ec.pem") .. " -pubout -out " .. file("ec.pub"))
      sh("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out " .. file("ec384.pem"))
      sh("openssl pkey -in " .. file("ec384.pem") .. " -pubout -out " .. file("ec384.pub"))
      sh("openssl req -x509 -new -key " .. file("rsa.pem") .. " -subj /CN=sy -days 1 -out "
         .. file("rsa.crt"))
    end)
    lazy_teardown(function() H.rmdir(dir) end)

    it("key_type names the kind of a PEM key or certificate", function()
      assert.are.same({ "rsa", 2048 }, { crypto.key_type(H.read_file(file("rsa.pub"))) })
      assert.are.same({ "rsa", 2048 }, { crypto.key_type(H.read_file(file("rsa.crt"))) })
      assert.are.same({ "rsa", 2048 }, { crypto.key_type(H.read_file(file("rsa.pem"))) })
      assert.are.same({ "ec", 256 }, { crypto.key_type(H.read_file(file("ec.pub"))) })
      assert.are.same({ "ec", 384 }, { crypto.key_type(H.read_file(file("ec384.pem"))) })
      local ok, err = crypto.key_type("secret")
      assert.is_nil(ok)
      assert.is_string(err)
    end)

    it("RS256 and PS256 made by openssl verify with the public key and the certificate", function()
      local data = "header.payload"
      local rs = openssl_sign("rsa.pem", "sha256", data)
      local pub, crt = H.read_file(file("rsa.pub")), H.read_file(file("rsa.crt"))
      assert.is_true(crypto.verify("RS256", pub, data, rs))
      assert.is_true(crypto.verify("RS256", crt, data, rs))
      assert.is_false(crypto.verify("RS256", pub, data .. "x", rs))
      assert.is_false(crypto.verify("RS384", pub, data, rs))
      local bad = rs:sub(1, -2) .. string.char((rs:byte(-1) + 1) % 256)
      assert.is_false(crypto.verify("RS256", pub, data, bad))
      local ps = openssl_sign("rsa.pem", "sha256", data,
                              "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:32")
      assert.is_true(crypto.verify("PS256", pub, data, ps))
      assert.is_false(crypto.verify("RS256", pub, data, ps))
    end)

    it("ES256 and ES384 made by openssl verify once r || s", function()
      local data = "header.payload"
      local sig = der_to_raw(openssl_sign("ec.pem", "sha256", data), 32)
      local pub = H.read_file(file("ec.pub"))
      assert.are.equal(64, #sig)
      assert.is_true(crypto.verify("ES256", pub, data, sig))
      assert.is_false(crypto.verify("ES256", pub, data .. "x", sig))
      assert.is_false(crypto.verify("ES256", pub, data, sig:sub(1, 63))) -- wrong length
      assert.is_false(crypto.verify("ES256", pub, data, sig:sub(33) .. sig:sub(1, 32)))
      local sig384 = der_to_raw(openssl_sign("ec384.pem", "sha384", data), 48)
      assert.is_true(crypto.verify("ES384", H.read_file(file("ec384.pub")), data, sig384))
      -- A key of the wrong curve or kind is an error, not a "no".
      local ok, err = crypto.verify("ES256", H.read_file(file("ec384.pub")), data, sig384)
      assert.is_nil(ok)
      assert.matches("P%-256", err)
      ok, err = crypto.verify("RS256", pub, data, sig)
      assert.is_nil(ok)
      assert.matches("RSA", err)
      ok, err = crypto.verify("ES256", "not a key", data, sig)
      assert.is_nil(ok)
      assert.is_string(err)
      assert.has_error(function() crypto.verify("HS256", pub, data, sig) end)
    end)

    it("sign makes what openssl verifies, and what verify accepts", function()
      local data = "header.payload"
      for _, case in ipairs({ { "RS256", "rsa", "sha256" }, { "PS256", "rsa", "sha256" },
                              { "ES256", "ec", "sha256" }, { "ES384", "ec384", "sha384" } }) do
        local alg, key, md = case[1], case[2], case[3]
        local sig = assert(crypto.sign(alg, H.read_file(file(key .. ".pem")), data))
        assert.is_true(crypto.verify(alg, H.read_file(file(key .. ".pub")), data, sig), alg)
        if alg == "RS256" then
          H.write_file(file("data"), data)
          H.write_file(file("sig"), sig)
          sh(("openssl dgst -%s -verify %s -signature %s %s"):format(md, file(key .. ".pub"),
             file("sig"), file("data")))
        end
      end
      local ok, err = crypto.sign("RS256", H.read_file(file("rsa.pub")), data)
      assert.is_nil(ok)
      assert.is_string(err)
    end)
  end)
end)
