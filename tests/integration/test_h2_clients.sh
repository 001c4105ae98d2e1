#!/usr/bin/env bash
# tests/integration/test_h2_clients.sh: real HTTP/2 clients against the real binary running
# examples/h2c.lua: curl --http2 (the h2c upgrade, GET and POST), curl --http2-prior-knowledge,
# nghttp -u (the upgrade; nghttp exits 0 even when it fails, so its verbose output is checked),
# nghttp with prior knowledge and many concurrent streams, and h2load. Run from the repo root
# with SWITCHYARD_BIN set. Prints "ok - NAME" / "not ok - NAME" per check and a final
# "N passed, N failed" line; exits 1 when a check failed. Every client call is bounded in time.
set -u

BIN=${SWITCHYARD_BIN:?SWITCHYARD_BIN must point to the switchyard binary}
passed=0
failed=0
tmp=$(mktemp -d /tmp/sy-h2.XXXXXX)
pid=""

cleanup() {
  local i
  if [ -n "$pid" ]; then
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 1 250); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  [ $# -gt 0 ] && printf '#   %s\n' "$@"
}
check() { # NAME CONDITION-STATUS DETAILS...
  local name=$1 st=$2
  shift 2
  if [ "$st" -eq 0 ]; then ok "$name"; else not_ok "$name" "$@"; fi
}

"$BIN" --listen 127.0.0.1:0 examples/h2c.lua >"$tmp/out" 2>"$tmp/err" &
pid=$!
port=""
for i in $(seq 1 250); do
  port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$#\1#p' "$tmp/out" | head -n 1)
  [ -n "$port" ] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.02
done
if [ -z "$port" ]; then
  not_ok "start examples/h2c.lua" "$(cat "$tmp/err")"
  echo "$passed passed, $failed failed"
  exit 1
fi
base="http://127.0.0.1:$port"
c() { curl --noproxy '*' --max-time 30 -sS "$@"; }

# curl --http2: HTTP/1.1 with Upgrade: h2c, then the answer over HTTP/2 on stream 1.
c --http2 -v -o "$tmp/body" "$base/up" 2>"$tmp/v"
grep -q '^< HTTP/1.1 101' "$tmp/v" && grep -qi '^< upgrade: h2c' "$tmp/v" &&
  grep -q '^< HTTP/2 200' "$tmp/v" && [ "$(cat "$tmp/body")" = "hello over HTTP/2 (GET /up)" ]
check "curl --http2: 101 h2c, then HTTP/2 200 on stream 1" $? "$(cat "$tmp/v" | tail -20)" "$(cat "$tmp/body")"

# The upgrade request's body becomes stream 1's body.
head -c 20000 /dev/urandom >"$tmp/post"
c --http2 -v -o "$tmp/body" --data-binary @"$tmp/post" "$base/echo" 2>"$tmp/v"
grep -q '^< HTTP/1.1 101' "$tmp/v" && cmp -s "$tmp/post" "$tmp/body"
check "curl --http2: a POST body on the upgrade request is stream 1's body" $? "$(grep '^[<>]' "$tmp/v" | head -20)"

c --http2-prior-knowledge -v -o "$tmp/body" "$base/pk" 2>"$tmp/v"
grep -q '^< HTTP/2 200' "$tmp/v" && [ "$(cat "$tmp/body")" = "hello over HTTP/2 (GET /pk)" ]
check "curl --http2-prior-knowledge: HTTP/2 200" $? "$(tail -20 "$tmp/v")"

c --http2-prior-knowledge -o "$tmp/body" --data-binary @"$tmp/post" "$base/echo"
cmp -s "$tmp/post" "$tmp/body"
check "curl --http2-prior-knowledge: POST echoed" $?

# Plain HTTP/1.1 on the same port still works.
out=$(c --http1.1 "$base/h1")
[ "$out" = "hello over HTTP/1.1 (GET /h1)" ]
check "curl --http1.1 on the same port" $? "$out"

# nghttp -u: exit status says nothing about the upgrade; the verbose log does.
timeout 30 nghttp -uv "$base/nghttp" >"$tmp/ng" 2>&1
grep -q 'HTTP Upgrade success' "$tmp/ng" && grep -q 'hello over HTTP/2 (GET /nghttp)' "$tmp/ng" &&
  grep -q 'recv SETTINGS frame' "$tmp/ng"
check "nghttp -u: HTTP Upgrade success, stream 1 answered" $? "$(head -40 "$tmp/ng")"

# nghttp with prior knowledge: 50 requests in parallel on one connection, /slow among them.
timeout 40 nghttp -ns -m 50 "$base/slow" >"$tmp/ng" 2>&1
n=$(grep -c ' 200 ' "$tmp/ng")
[ "$n" -eq 50 ]
check "nghttp -m 50: 50 concurrent deferred streams answered 200" $? "$(tail -5 "$tmp/ng")"

# h2load (prior knowledge): a short run, every request must succeed.
timeout 60 h2load -n 2000 -c 4 -m 20 "$base/" >"$tmp/h2l" 2>&1
grep -q 'requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed' "$tmp/h2l" &&
  grep -q 'status codes: 2000 2xx' "$tmp/h2l"
check "h2load prior knowledge: 2000 of 2000 succeeded" $? "$(grep -E 'requests|status|Application' "$tmp/h2l")"
kill -TERM "$pid"
wait "$pid"
code=$?
pid=""
check "server exits 0 on SIGTERM" "$code" "exit $code; $(tail -5 "$tmp/err")"
if grep -qE ' \[(error|warn)\] ' "$tmp/err"; then
  not_ok "no errors or warnings in the server log" "$(grep -E ' \[(error|warn)\] ' "$tmp/err" | head -5)"
else
  ok "no errors or warnings in the server log"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
