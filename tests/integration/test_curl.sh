#!/usr/bin/env bash
# tests/integration/test_curl.sh: curl against the real binary: examples/hello.lua,
# examples/require_tls.lua and the fixture spec/apps/basic.lua (POST bodies, chunked upload,
# 100-continue, keep-alive reuse). Run from the repo root with SWITCHYARD_BIN set:
#   SWITCHYARD_BIN=build/switchyard bash tests/integration/test_curl.sh
# Prints "ok - NAME" / "not ok - NAME" per check and a final "N passed, N failed" line; exits 1
# when a check failed. Every curl call is bounded by --max-time; loopback only.
set -u

BIN=${SWITCHYARD_BIN:?SWITCHYARD_BIN must point to the switchyard binary}
passed=0
failed=0
tmp=$(mktemp -d /tmp/sy-curl.XXXXXX)
pids=()

# Only servers started here and not yet reaped are in pids.
cleanup() {
  local p i
  for p in "${pids[@]}"; do
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 1 250); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.02
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  rm -rf "$tmp"
}

forget() { # forget PID: drop it from pids once it has been reaped
  local p keep=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  pids=("${keep[@]}")
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok - $1"; }
not_ok() {
  failed=$((failed + 1))
  echo "not ok - $1"
  shift
  [ $# -gt 0 ] && printf '#   %s\n' "$@"
}

# curl with the flags every call here needs: no proxy for loopback, bounded time, HTTP/1.1.
c() { curl --noproxy '*' --max-time 5 --http1.1 -sS "$@"; }

# start NAME APP: runs the server on a free port, sets PORT (and ${NAME}_PORT), PID.
start() {
  local name=$1 app=$2 i port=""
  "$BIN" --listen 127.0.0.1:0 "$app" >"$tmp/$name.out" 2>"$tmp/$name.err" &
  local pid=$!
  pids+=("$pid")
  for i in $(seq 1 250); do # 5 s
    port=$(sed -n 's#^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$#\1#p' "$tmp/$name.out" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if [ -z "$port" ]; then
    not_ok "start $app" "stdout: $(cat "$tmp/$name.out")" "stderr: $(cat "$tmp/$name.err")"
    return 1
  fi
  ok "start $app (port $port)"
  PORT=$port
  PID=$pid
  printf -v "${name}_PORT" '%s' "$port"
  printf -v "${name}_PID" '%s' "$pid"
}

# header FILE NAME: the value of the last header NAME (case-insensitive) in a -D dump.
header() {
  tr -d '\r' <"$1" | awk -v n="$(echo "$2" | tr 'A-Z' 'a-z')" '
    { i = index($0, ":"); if (i > 0 && tolower(substr($0, 1, i - 1)) == n) {
        v = substr($0, i + 1); sub(/^[ \t]+/, "", v); sub(/[ \t]+$/, "", v); last = v } }
    END { print last }'
}

# stop NAME: SIGTERM, expect exit 0 within 8 s.
stop() {
  local name=$1 pid_var="${1}_PID" i code
  local pid=${!pid_var}
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 1 400); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.02
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    forget "$pid"
    not_ok "$name exits on SIGTERM" "still running after 8 s"
    return
  fi
  wait "$pid"
  code=$?
  forget "$pid"
  if [ "$code" -eq 0 ]; then ok "$name exits 0 on SIGTERM"; else not_ok "$name exits 0 on SIGTERM" "exit $code"; fi
}

##############################################################################################
# examples/hello.lua

if start hello examples/hello.lua; then
  base="http://127.0.0.1:$hello_PORT"

  code=$(c -o "$tmp/body" -D "$tmp/head" -w '%{http_code}' "$base/")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = hello ] && [ "$(wc -c <"$tmp/body")" -eq 6 ]; then
    ok "hello: GET / is 200 hello"
  else
    not_ok "hello: GET / is 200 hello" "status $code" "body $(od -c "$tmp/body" | head -n 2)"
  fi

  ct=$(header "$tmp/head" content-type)
  cl=$(header "$tmp/head" content-length)
  date=$(header "$tmp/head" date)
  if [ "$ct" = text/plain ] && [ "$cl" = 6 ] &&
     [[ $date =~ ^[A-Z][a-z]{2},\ [0-9]{2}\ [A-Z][a-z]{2}\ [0-9]{4}\ [0-9]{2}:[0-9]{2}:[0-9]{2}\ GMT$ ]]; then
    ok "hello: Content-Type, Content-Length and Date"
  else
    not_ok "hello: Content-Type, Content-Length and Date" "content-type=$ct content-length=$cl date=$date"
  fi

  out=$(c -I -o /dev/null -D "$tmp/head" -w '%{http_code} %{size_download}' "$base/")
  cl=$(header "$tmp/head" content-length)
  if [ "$out" = "200 0" ] && [ "$cl" = 6 ]; then
    ok "hello: HEAD has Content-Length 6 and no body"
  else
    not_ok "hello: HEAD has Content-Length 6 and no body" "got '$out' content-length=$cl"
  fi

  code=$(c -o "$tmp/body" -w '%{http_code}' -H 'Connection: Upgrade' -H 'Upgrade: foo/1' "$base/")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = hello ]; then
    ok "hello: an upgrade offer is ignored (200, not 101)"
  else
    not_ok "hello: an upgrade offer is ignored (200, not 101)" "status $code"
  fi

  out=$(c -v -o /dev/null -o /dev/null -w '%{num_connects}\n' "$base/a" "$base/b" 2>"$tmp/verbose")
  if [ "$(echo $out)" = "1 0" ] && grep -qi 're-\?using existing' "$tmp/verbose"; then
    ok "hello: two URLs in one curl command reuse the connection"
  else
    not_ok "hello: two URLs in one curl command reuse the connection" "num_connects: $(echo $out)" \
      "$(grep -i 'connect\|re-us\|closing' "$tmp/verbose" | head -n 8)"
  fi

  code=$(c -o "$tmp/body" -w '%{http_code}' --data-binary 'x=1' "$base/post")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = hello ]; then
    ok "hello: POST is answered"
  else
    not_ok "hello: POST is answered" "status $code"
  fi

  stop hello
fi

##############################################################################################
# spec/apps/basic.lua: bodies

if start basic spec/apps/basic.lua; then
  base="http://127.0.0.1:$basic_PORT"

  code=$(c -o "$tmp/body" -w '%{http_code}' --data-binary 'a=1&b=two words' "$base/body")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = 'a=1&b=two words' ]; then
    ok "basic: POST body echoed"
  else
    not_ok "basic: POST body echoed" "status $code" "body: $(head -c 200 "$tmp/body")"
  fi

  head -c 300000 /dev/urandom | od -An -tx1 | tr -d ' \n' | head -c 200000 >"$tmp/upload"
  code=$(c -o "$tmp/body" -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
           --data-binary @"$tmp/upload" -v "$base/body" 2>"$tmp/verbose")
  if [ "$code" = 200 ] && cmp -s "$tmp/upload" "$tmp/body" &&
     grep -qi '^> transfer-encoding: chunked' <(tr -d '\r' <"$tmp/verbose"); then
    ok "basic: chunked upload of 200000 bytes arrives whole"
  else
    not_ok "basic: chunked upload of 200000 bytes arrives whole" "status $code" \
      "sent $(wc -c <"$tmp/upload") got $(wc -c <"$tmp/body")"
  fi

  head -c 5000 /dev/zero | tr '\0' 'z' >"$tmp/upload2"
  code=$(c -o "$tmp/body" -w '%{http_code}' -H 'Expect: 100-continue' \
           --data-binary @"$tmp/upload2" -v "$base/body" 2>"$tmp/verbose")
  if [ "$code" = 200 ] && cmp -s "$tmp/upload2" "$tmp/body" &&
     tr -d '\r' <"$tmp/verbose" | grep -q '^< HTTP/1.1 100 Continue$'; then
    ok "basic: Expect: 100-continue gets 100 Continue, then the body is read"
  else
    not_ok "basic: Expect: 100-continue gets 100 Continue, then the body is read" "status $code" \
      "$(grep '^< HTTP' "$tmp/verbose")"
  fi

  code=$(c -o "$tmp/body" -w '%{http_code}' -X PUT --data-binary 'put-body' "$base/len")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = 'len=8' ]; then
    ok "basic: PUT body length"
  else
    not_ok "basic: PUT body length" "status $code body $(cat "$tmp/body")"
  fi

  out=$(c -o /dev/null -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' \
          --data-binary 'abc' "$base/body" "$base/len" "$base/fast")
  if [ "$(echo $out)" = "200 1 200 0 200 0" ]; then
    ok "basic: three POSTs on one connection"
  else
    not_ok "basic: three POSTs on one connection" "got: $(echo $out)"
  fi

  code=$(c -o "$tmp/body" -w '%{http_code}' "$base/error")
  code2=$(c -o /dev/null -w '%{http_code}' "$base/")
  if [ "$code" = 500 ] && [ "$code2" = 200 ]; then
    ok "basic: hook error is 500, next request 200"
  else
    not_ok "basic: hook error is 500, next request 200" "got $code then $code2"
  fi

  stop basic
fi

##############################################################################################
# examples/require_tls.lua

if start tls examples/require_tls.lua; then
  base="http://127.0.0.1:$tls_PORT"

  code=$(c -o "$tmp/body" -w '%{http_code}' "$base/")
  if [ "$code" = 200 ] && [ "$(cat "$tmp/body")" = public ]; then
    ok "require_tls: GET / is 200"
  else
    not_ok "require_tls: GET / is 200" "status $code"
  fi

  code=$(c -o "$tmp/body" -D "$tmp/head" -w '%{http_code}' "$base/secret")
  up=$(header "$tmp/head" upgrade)
  conn=$(header "$tmp/head" connection)
  if [ "$code" = 426 ] && [ "$up" = TLS/1.3 ] && [ "$(echo "$conn" | tr 'A-Z' 'a-z')" = upgrade ]; then
    ok "require_tls: /secret is 426 with Upgrade: TLS/1.3 and Connection: Upgrade"
  else
    not_ok "require_tls: /secret is 426 with Upgrade: TLS/1.3 and Connection: Upgrade" \
      "status $code upgrade='$up' connection='$conn'"
  fi

  code=$(c -o "$tmp/body" -D "$tmp/head" -w '%{http_code}' -H 'Connection: Upgrade' \
           -H 'Upgrade: foo/1' "$base/")
  up=$(header "$tmp/head" upgrade)
  conn=$(header "$tmp/head" connection)
  if [ "$code" = 426 ] && [ "$up" = TLS/1.3 ] && [ "$(echo "$conn" | tr 'A-Z' 'a-z')" = upgrade ]; then
    ok "require_tls: an offer other than TLS/1.3 is 426 with Upgrade: TLS/1.3"
  else
    not_ok "require_tls: an offer other than TLS/1.3 is 426 with Upgrade: TLS/1.3" \
      "status $code upgrade='$up' connection='$conn'"
  fi

  out=$(c -o /dev/null -o /dev/null -w '%{http_code} %{num_connects}\n' "$base/secret" "$base/")
  if [ "$(echo $out)" = "426 1 200 0" ]; then
    ok "require_tls: the connection stays open after the 426"
  else
    not_ok "require_tls: the connection stays open after the 426" "got: $(echo $out)"
  fi

  code=$(c -o /dev/null -w '%{http_code}' "$base/nothing-here")
  if [ "$code" = 404 ]; then ok "require_tls: unknown path is 404"; else not_ok "require_tls: unknown path is 404" "status $code"; fi

  stop tls
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
