-- switchyard.http: query strings, forms, percent-coding, cookies and Accept headers.
--
-- Parsers never raise on what a client sent: they return what parsed (and, when something was
-- dropped, a second value saying why), or nil, err when the input is not of the kind asked for.
-- Builders (http.cookie, http.encode_query) raise on bad arguments from the app, where the
-- mistake is made.
local M = {}

local function hex(h) return string.char(tonumber(h, 16)) end

-- s without leading and trailing white space. Not s:match("^%s*(.-)%s*$"): on client input
-- with a long run of spaces inside, that pattern takes quadratic time; these finds are linear.
local function trim(s)
  local a = s:find("%S")
  if not a then return "" end
  return s:sub(a, (s:find("%S%s*$")))
end

-- Splits "name = value" at the first "=" (both sides trimmed); nil when there is no "=".
local function name_value(piece)
  local eq = piece:find("=", 1, true)
  if not eq then return nil end
  return trim(piece:sub(1, eq - 1)), trim(piece:sub(eq + 1))
end

--- Percent-decodes s as in a URI path: "%41" gives "A"; "+" stays "+". A "%" not followed by
--- two hex digits stays as it is. Returns nil for a non-string.
function M.decode(s)
  if type(s) ~= "string" then return nil end
  return (s:gsub("%%(%x%x)", hex))
end

--- Decodes application/x-www-form-urlencoded text: "+" is a space, then percent-decoding.
function M.decode_form(s)
  if type(s) ~= "string" then return nil end
  return (s:gsub("+", " "):gsub("%%(%x%x)", hex))
end

--- Percent-encodes every byte outside RFC 3986's unreserved set (A-Z a-z 0-9 - . _ ~), so the
--- result is safe in a path segment, a query name or value, and form data.
function M.encode(s)
  if type(s) == "number" then s = tostring(s) end
  if type(s) ~= "string" then error("http.encode: string expected, got " .. type(s), 2) end
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

M.DEFAULT_MAX_PARAMS = 1000

-- Calls put(name, value) for each pair of s, "&"-separated (";" is not a separator).
local function each_pair(s, max, put)
  if type(s) ~= "string" then return "not a string" end
  local n = 0
  for piece in s:gmatch("[^&]+") do
    if n >= max then return "more than " .. max .. " parameters; the rest were dropped" end
    n = n + 1
    local k, v = piece:match("^([^=]*)=(.*)$")
    if not k then k, v = piece, "" end
    put(M.decode_form(k), M.decode_form(v))
  end
  return nil
end

--- Parses a query string ("a=1&b=x+y&a=2", with or without a leading "?") into a table of
--- name -> value. A repeated name: the LAST value wins (use http.parse_query_all for every
--- value). "+" is a space; names without "=" get "". Pairs past opts.max (default 1000) are
--- dropped. Returns the table, plus a message when pairs were dropped. nil or "" give {}.
function M.parse_query(s, opts)
  if s == nil then return {} end
  if type(s) ~= "string" then return nil, "not a string" end
  s = s:gsub("^%?", "")
  local t = {}
  local err = each_pair(s, (opts and opts.max) or M.DEFAULT_MAX_PARAMS,
                        function(k, v) t[k] = v end)
  return t, err
end

--- Like http.parse_query, but every name maps to the list of its values in order.
function M.parse_query_all(s, opts)
  if s == nil then return {} end
  if type(s) ~= "string" then return nil, "not a string" end
  s = s:gsub("^%?", "")
  local t = {}
  local err = each_pair(s, (opts and opts.max) or M.DEFAULT_MAX_PARAMS, function(k, v)
    local list = t[k]
    if not list then
      list = {}
      t[k] = list
    end
    list[#list + 1] = v
  end)
  return t, err
end

local function header(req, name)
  local ok, headers = pcall(function() return req.headers end)
  if ok and type(headers) == "table" then return headers[name] end
  return nil
end

--- Parses an application/x-www-form-urlencoded body, like http.parse_query (last value wins;
--- opts.all = true gives lists). Takes the body string, or a request: then its Content-Type must
--- be application/x-www-form-urlencoded, else nil, "not a form". A request without a body: {}.
function M.parse_form(body_or_req, opts)
  local body = body_or_req
  if type(body_or_req) ~= "string" and body_or_req ~= nil then
    local ctype = header(body_or_req, "content-type") or ""
    if not ctype:lower():match("^%s*application/x%-www%-form%-urlencoded%s*;?") then
      return nil, "not a form (content-type " .. (ctype == "" and "missing" or ctype) .. ")"
    end
    local ok, b = pcall(function() return body_or_req.body end)
    body = ok and b or nil
  end
  if opts and opts.all then return M.parse_query_all(body or "", opts) end
  return M.parse_query(body or "", opts)
end

--- Builds a query string from a table of name -> value (or list of values), names sorted.
function M.encode_query(t)
  if type(t) ~= "table" then error("http.encode_query: table expected, got " .. type(t), 2) end
  local names = {}
  for k in pairs(t) do
    if type(k) ~= "string" then error("http.encode_query: names must be strings", 2) end
    names[#names + 1] = k
  end
  table.sort(names)
  local out = {}
  for _, k in ipairs(names) do
    local v = t[k]
    local list = type(v) == "table" and v or { v }
    for _, item in ipairs(list) do
      if type(item) ~= "string" and type(item) ~= "number" and type(item) ~= "boolean" then
        error(("http.encode_query: value of %q must be a string, number or boolean"):format(k), 2)
      end
      out[#out + 1] = M.encode(k) .. "=" .. M.encode(tostring(item))
    end
  end
  return table.concat(out, "&")
end

--- Parses a Cookie header (or a request's) into a table of name -> value. The first of a
--- repeated name wins (RFC 6265 5.4 lists the more specific cookie first). Values are returned
--- as sent, without surrounding double quotes, not percent-decoded. Pieces that are not
--- name=value are skipped. No header: {}.
function M.cookies(req_or_header)
  local s = req_or_header
  if type(s) ~= "string" then s = s ~= nil and header(s, "cookie") or nil end
  local t = {}
  if type(s) ~= "string" then return t end
  for piece in s:gmatch("[^;]+") do
    local k, v = name_value(piece)
    if k and k ~= "" and not k:find("%s") and t[k] == nil then
      t[k] = v:match('^"(.*)"$') or v
    end
  end
  return t
end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                 "Dec" }

--- The IMF-fixdate of RFC 9110 5.6.7 for a Unix time: "Sun, 06 Nov 1994 08:49:37 GMT".
function M.date(t)
  if type(t) ~= "number" then error("http.date: number expected, got " .. type(t), 2) end
  local d = os.date("!*t", math.floor(t))
  return ("%s, %02d %s %04d %02d:%02d:%02d GMT"):format(DAYS[d.wday], d.day, MONTHS[d.month],
                                                        d.year, d.hour, d.min, d.sec)
end

local TOKEN = "^[!#$%%&'*+%-.^_`|~%w]+$"
-- Bytes outside RFC 6265 4.1.1's cookie-octet: controls, space, DQUOTE, comma, semicolon,
-- backslash and non-ASCII.
local NOT_COOKIE_OCTET = '[%c%s",;\\\128-\255]'
local ATTRS = { path = true, domain = true, max_age = true, expires = true, secure = true,
                http_only = true, same_site = true, partitioned = true }

--- Builds a Set-Cookie value. attrs (all optional): path, domain (strings), max_age (seconds,
--- integer), expires (a Unix time, or an IMF-fixdate string), secure, http_only, partitioned
--- (booleans), same_site ("Strict", "Lax" or "None"; "None" needs secure). A name that is not a
--- token, a value outside RFC 6265's cookie-octets (encode it first, e.g. http.encode), an
--- unknown attribute or a bad attribute value raises an error naming it.
function M.cookie(name, value, attrs)
  if type(name) ~= "string" or not name:match(TOKEN) then
    error(("http.cookie: bad cookie name %q"):format(tostring(name)), 2)
  end
  if type(value) == "number" then value = tostring(value) end
  if type(value) ~= "string" or value:find(NOT_COOKIE_OCTET) then
    error(("http.cookie: bad value for cookie %q (encode it first)"):format(name), 2)
  end
  attrs = attrs or {}
  if type(attrs) ~= "table" then error("http.cookie: attrs must be a table", 2) end
  for k in pairs(attrs) do
    if not ATTRS[k] then
      error(("http.cookie: unknown attribute %q (known: path, domain, max_age, expires, "
             .. "secure, http_only, same_site, partitioned)"):format(tostring(k)), 2)
    end
  end
  local out = { name .. "=" .. value }
  local function text(k, label)
    local v = attrs[k]
    if v == nil then return end
    if type(v) ~= "string" or v == "" or v:find("[%c;]") then
      error(("http.cookie: bad %s %q"):format(k, tostring(v)), 3)
    end
    out[#out + 1] = label .. "=" .. v
  end
  text("path", "Path")
  text("domain", "Domain")
  if attrs.max_age ~= nil then
    if math.type(attrs.max_age) ~= "integer" then
      error("http.cookie: max_age must be an integer number of seconds", 2)
    end
    out[#out + 1] = "Max-Age=" .. attrs.max_age
  end
  if attrs.expires ~= nil then
    local e = attrs.expires
    if type(e) == "number" then
      e = M.date(e)
    elseif type(e) ~= "string" or not e:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$") then
      error("http.cookie: expires must be a Unix time or an IMF-fixdate string", 2)
    end
    out[#out + 1] = "Expires=" .. e
  end
  for _, k in ipairs({ "secure", "http_only", "partitioned" }) do
    if attrs[k] ~= nil and type(attrs[k]) ~= "boolean" then
      error(("http.cookie: %s must be a boolean"):format(k), 2)
    end
  end
  if attrs.secure then out[#out + 1] = "Secure" end
  if attrs.http_only then out[#out + 1] = "HttpOnly" end
  if attrs.same_site ~= nil then
    local s = type(attrs.same_site) == "string" and attrs.same_site:lower()
    local canon = ({ strict = "Strict", lax = "Lax", none = "None" })[s or ""]
    if not canon then error("http.cookie: same_site must be Strict, Lax or None", 2) end
    if canon == "None" and not attrs.secure then
      error("http.cookie: same_site None needs secure = true", 2)
    end
    out[#out + 1] = "SameSite=" .. canon
  end
  if attrs.partitioned then out[#out + 1] = "Partitioned" end
  return table.concat(out, "; ")
end

--- Parses an Accept-style header ("text/html;q=0.9, */*;q=0.1") into a list of
--- { value = "text/html", q = 0.9, params = { ... } }, highest q first (ties keep the client's
--- order). A q that is not a number in [0, 1] counts as 1 (RFC 9110 12.4.2 grammar aside,
--- being lenient costs nothing); entries with q = 0 are kept (they say "not acceptable").
--- nil or "" give {}. At most 100 entries are read.
function M.parse_accept(s)
  local list = {}
  if type(s) ~= "string" then return list end
  for item in s:gmatch("[^,]+") do
    if #list >= 100 then break end
    local semi = item:find(";", 1, true)
    local value = trim(semi and item:sub(1, semi - 1) or item)
    local rest = semi and item:sub(semi) or ""
    if value ~= "" and not value:find("%s") then
      local e = { value = value:lower(), q = 1, params = {}, index = #list + 1 }
      for p in rest:gmatch("[^;]+") do
        local k, v = name_value(p)
        if k and k ~= "" then
          k = k:lower()
          v = v:match('^"(.*)"$') or v
          if k == "q" then
            local q = tonumber(v)
            e.q = (q and q >= 0 and q <= 1) and q or 1
          else
            e.params[k] = v
          end
        end
      end
      list[#list + 1] = e
    end
  end
  table.sort(list, function(a, b)
    if a.q ~= b.q then return a.q > b.q end
    return a.index < b.index
  end)
  for _, e in ipairs(list) do e.index = nil end
  return list
end

return M
