-- switchyard.jwt: JSON Web Tokens (RFC 7519) in JWS compact form (RFC 7515), checked with
-- switchyard.crypto (OpenSSL) and parsed with lua-cjson.
--
--   local jwt = require "switchyard.jwt"
--   local claims, why = jwt.verify(token, key, { audience = "api", issuer = "https://id" })
--
-- key: an HMAC secret (a string that is not PEM) for HS256/384/512; a PEM public key,
-- certificate or private key for RS*/PS* (RSA, 2048 bits or more) and ES256/384/512 (EC on
-- P-256/384/521); or a function(header) returning one of those (nil: "unknown key").
-- The token's alg must fit the key: a PEM text is never an HMAC secret and a secret never a
-- public key, whatever the token or opts.algorithms say; "none" is never accepted.
local crypto = require "switchyard.crypto"
local json = require("cjson.safe").new()

json.decode_max_depth(32)

local M = {}

-- Longer tokens are "malformed" without being decoded.
M.MAX_LENGTH = 16384

local HMAC = { HS256 = "sha256", HS384 = "sha384", HS512 = "sha512" }
local RSA = { RS256 = true, RS384 = true, RS512 = true, PS256 = true, PS384 = true, PS512 = true }
local EC = { [256] = "ES256", [384] = "ES384", [521] = "ES512" }

local function is_pem(key)
  return key:find("-----BEGIN ", 1, true) ~= nil
end

-- The algorithms a key can serve, as a set; PEM keys parsed once (a few kept).
local fits_cache, fits_count = {}, 0

local function key_fits(key)
  local set = fits_cache[key]
  if set then return set end
  set = {}
  if not is_pem(key) then
    set = HMAC
  else
    local kind, bits = crypto.key_type(key)
    if kind == "rsa" then
      set = RSA
    elseif kind == "ec" and EC[bits] then
      set = { [EC[bits]] = true }
    end
  end
  if fits_count >= 32 then fits_cache, fits_count = {}, 0 end
  fits_cache[key], fits_count = set, fits_count + 1
  return set
end

-- A JSON object's table, or nil (not JSON, or JSON but not an object).
local function decode_object(text)
  if not text or not text:find("^%s*{") then return nil end
  local t = json.decode(text)
  return type(t) == "table" and t or nil
end

local function listed(want, value)
  if type(want) == "string" then return want == value end
  for _, w in ipairs(want) do
    if w == value then return true end
  end
  return false
end

-- nil, reason when the claims fail a check, else true.
local function check_claims(c, opts)
  local exp, nbf, aud, iss = c.exp, c.nbf, c.aud, c.iss
  if (exp ~= nil and type(exp) ~= "number") or (nbf ~= nil and type(nbf) ~= "number")
     or (iss ~= nil and type(iss) ~= "string") then
    return nil, "malformed"
  end
  if aud ~= nil and type(aud) ~= "string" then
    if type(aud) ~= "table" then return nil, "malformed" end
    for _, a in ipairs(aud) do
      if type(a) ~= "string" then return nil, "malformed" end
    end
  end
  local now, leeway = opts.now or os.time(), opts.leeway or 0
  -- RFC 7519 4.1.4 and 4.1.5: valid from nbf on, and before exp.
  if exp and now >= exp + leeway then return nil, "expired" end
  if nbf and now + leeway < nbf then return nil, "not yet valid" end
  if opts.issuer ~= nil and not (iss and listed(opts.issuer, iss)) then
    return nil, "wrong issuer"
  end
  -- RFC 7519 4.1.3: a token that names an audience is only for a verifier among it.
  if aud ~= nil or opts.audience ~= nil then
    if aud == nil or opts.audience == nil then return nil, "wrong audience" end
    local found = false
    for _, a in ipairs(type(aud) == "table" and aud or { aud }) do
      if listed(opts.audience, a) then
        found = true
        break
      end
    end
    if not found then return nil, "wrong audience" end
  end
  return true
end

--- Verifies token with key. Returns the claims table and the header table, or nil and one of
--- "malformed", "unsupported alg", "unsupported crit", "unknown key", "bad signature",
--- "expired", "not yet valid", "wrong issuer", "wrong audience".
-- opts (all optional): now (seconds, default os.time()), leeway (seconds, default 0),
-- audience (string or list), issuer (string or list), algorithms (list of accepted algs;
-- by default all those that fit the key).
function M.verify(token, key, opts)
  opts = opts or {}
  if type(token) ~= "string" or #token > M.MAX_LENGTH then return nil, "malformed" end
  local h64, p64, s64 = token:match("^([^.]*)%.([^.]*)%.([^.]*)$")
  if not h64 then return nil, "malformed" end
  local header = decode_object(crypto.base64url_decode(h64))
  local payload, sig = crypto.base64url_decode(p64), crypto.base64url_decode(s64)
  if not header or type(header.alg) ~= "string" or not payload or not sig then
    return nil, "malformed"
  end
  -- RFC 7515 4.1.11: no extension is understood here, so any crit header refuses the token.
  if header.crit ~= nil then return nil, "unsupported crit" end
  if type(key) == "function" then
    key = key(header)
    if key == nil then return nil, "unknown key" end
  end
  if type(key) ~= "string" then error("jwt.verify: key must be a string or a function", 2) end
  local alg = header.alg
  if not key_fits(key)[alg] then return nil, "unsupported alg" end
  if opts.algorithms ~= nil and not listed(opts.algorithms, alg) then
    return nil, "unsupported alg"
  end
  local input, good = h64 .. "." .. p64
  if HMAC[alg] then
    good = crypto.equal(crypto.hmac(HMAC[alg], key, input), sig)
  else
    good = crypto.verify(alg, key, input, sig)
  end
  if not good then return nil, "bad signature" end
  local claims = decode_object(payload)
  if not claims then return nil, "malformed" end
  local ok, why = check_claims(claims, opts)
  if not ok then return nil, why end
  return claims, header
end

--- Makes a token: claims (a table) signed with key by alg (default "HS256": key is the secret;
--- RS*/PS*/ES*: key is a PEM private key). header: extra header fields (kid, ...).
-- Returns the token, or nil and a reason when the key cannot sign.
function M.sign(claims, key, alg, header)
  alg = alg or "HS256"
  if type(claims) ~= "table" then error("jwt.sign: claims must be a table", 2) end
  if type(key) ~= "string" then error("jwt.sign: key must be a string", 2) end
  if not HMAC[alg] and not RSA[alg] and alg ~= "ES256" and alg ~= "ES384" and alg ~= "ES512" then
    error("jwt.sign: unsupported alg '" .. tostring(alg) .. "'", 2)
  end
  if HMAC[alg] and is_pem(key) then error("jwt.sign: a PEM key is not an HMAC secret", 2) end
  local h = { typ = "JWT" }
  for k, v in pairs(header or {}) do h[k] = v end
  h.alg = alg
  local htext, err = json.encode(h)
  local ptext, err2 = json.encode(claims)
  if not htext or not ptext then error("jwt.sign: " .. (err or err2), 2) end
  local input = crypto.base64url_encode(htext) .. "." .. crypto.base64url_encode(ptext)
  local sig, why
  if HMAC[alg] then
    sig = crypto.hmac(HMAC[alg], key, input)
  else
    sig, why = crypto.sign(alg, key, input)
    if not sig then return nil, why end
  end
  return input .. "." .. crypto.base64url_encode(sig)
end

return M
