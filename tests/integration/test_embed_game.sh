#!/usr/bin/env bash
# The game host of examples/embed, built against the INSTALLED library: this build is
# installed into a temporary prefix, the example is built once with its own CMake
# (find_package) and once with pkg-config, and each build is run with two bot players.
#   find_package build, the tick on the server's libev loop, Lua budget 0.2 s: both bots see
#     both players; 90..110 snapshots reach each bot in 5 s and the host's own clock says
#     20 Hz +- 10 %; then one bot makes its Lua handler loop: the app closes it (1011), the
#     other bot sees it leave, and the largest gap between ticks stays under 0.2 s + 1 s.
#   pkg-config build, the host's own loop (no libev loop of its own: ev_run(EVRUN_NOWAIT) per
#     turn): both bots see both players at 20 Hz +- 10 %.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(dirname "${SWITCHYARD_BIN:?SWITCHYARD_BIN is the build tree\'s switchyard}")
CC=${CC:-cc}
san=$(sed -n 's/^SY_SANITIZE:[A-Z]*=//p' "$build/CMakeCache.txt")
flags=(-std=c11 -Wall -Wextra -Werror -pedantic)
[ -n "$san" ] && flags+=("-fsanitize=$san" -fno-omit-frame-pointer)
PY=/usr/bin/python3
work=$(mktemp -d /tmp/sy-game.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; for f in "$work"/*.out "$work"/*.err; do echo "--- $f"; cat "$f"; done >&2; exit 1; }
unset LUA_PATH LUA_PATH_5_4 LUA_CPATH LUA_CPATH_5_4

cmake --install "$build" --prefix "$work/prefix" >"$work/install.log" || fail "install"
libdir=$(cd "$work/prefix" && ls -d lib*/pkgconfig | head -1 | xargs dirname)

echo "== find_package(switchyard)"
cmake -S "$src/examples/embed" -B "$work/cm" -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS="${flags[*]}" \
  -DCMAKE_EXE_LINKER_FLAGS="${san:+-fsanitize=$san}" >"$work/cm.log" 2>&1 ||
  { cat "$work/cm.log"; fail "configure"; }
cmake --build "$work/cm" >"$work/cm-build.log" 2>&1 || { cat "$work/cm-build.log"; fail "build"; }

echo "== pkg-config switchyard"
export PKG_CONFIG_PATH=$work/prefix/$libdir/pkgconfig
# shellcheck disable=SC2046
"$CC" "${flags[@]}" -o "$work/game_pc" "$src/examples/embed/game.c" \
  $(pkg-config --cflags --libs switchyard) -lm \
  -Wl,-rpath,"$(pkg-config --variable=libdir switchyard)" || fail "pkg-config build"

# start_game NAME BINARY ARGS...: runs it, sets $url once it listens.
start_game() {
  local name=$1; shift
  "$@" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  game_pid=$!
  for _ in $(seq 600); do
    grep -q '^listening on' "$work/$name.out" 2>/dev/null && break
    kill -0 "$game_pid" 2>/dev/null || fail "$name exited"
    sleep 0.1
  done
  url=ws://$(grep -o 'http://[0-9.:]*' "$work/$name.out" | sed 's|http://||')/game
  [ "$url" != ws:///game ] || fail "$name does not listen"
}
stop_game() {
  kill -TERM "$game_pid"
  for _ in $(seq 300); do kill -0 "$game_pid" 2>/dev/null || break; sleep 0.1; done
  wait "$game_pid" || fail "game exited with $?"
}

# check.py NAME MODE A.json B.json: the assertions, with the figures printed.
cat >"$work/check.py" <<'PY'
import json, sys
name, mode, fa, fb = sys.argv[1:5]
a, b = (json.load(open(f)) for f in (fa, fb))
errs = []
for tag, r in (("A", a), ("B", b)):
    print(f"{name} bot {tag}: id {r['id']}, {r['received']} snapshots in 5 s, host rate "
          f"{r['host_rate']:.2f} Hz, max gap {r['max_gap']:.3f} s, close {r['close_code']}")
    if not {a["id"], b["id"]} <= set(r["seen_ids"]) or r["max_players"] < 2:
        errs.append(f"bot {tag} did not see both players: {r['seen_ids']}")
    if not 90 <= r["received"] <= 110:
        errs.append(f"bot {tag} received {r['received']} snapshots in 5 s (want 90..110)")
    if not 18 <= r["host_rate"] <= 22:
        errs.append(f"bot {tag}: host tick rate {r['host_rate']:.2f} Hz (want 18..22)")
if mode == "stuck":
    if a["close_code"] != 1011:
        errs.append(f"the stuck bot was not closed with 1011: {a['close_code']}")
    if b["players_at_end"] != 1:
        errs.append(f"bot B still sees {b['players_at_end']} players after A left")
    if not b["max_gap"] < 0.2 + 1.0:
        errs.append(f"a stuck handler stopped the tick for {b['max_gap']:.3f} s (budget 0.2)")
if errs:
    print("\n".join(errs))
    sys.exit(1)
PY

echo "== the tick on the server's loop, a stuck handler under a 0.2 s budget"
start_game cm "$work/cm/game" --listen 127.0.0.1:0 --lua-max-time 0.2 "$src/examples/embed/app.lua"
grep -q 'Lua max time 0.200' "$work/cm.out" || fail "the host's Lua max time is not applied"
$PY "$src/examples/embed/bot.py" --url "$url" --seconds 5 --linger 4 >"$work/b1.json" 2>"$work/b1.err" &
bot_b=$!; pids+=($bot_b)
$PY "$src/examples/embed/bot.py" --url "$url" --seconds 5 --spin --linger 3 \
  >"$work/a1.json" 2>"$work/a1.err" || fail "bot A"
wait "$bot_b" || fail "bot B"
$PY "$work/check.py" find_package stuck "$work/a1.json" "$work/b1.json" || fail "find_package build"
grep -q 'game \[error\] websocket handler .message.: .*time budget' "$work/cm.err" ||
  fail "the budget's error did not go through the host's log function"
stop_game
grep -q '^leave .* code 1011' "$work/cm.out" || fail "no leave for the stuck player"

echo "== the host's own loop (ev_run EVRUN_NOWAIT per turn), pkg-config build"
start_game pc "$work/game_pc" --listen 127.0.0.1:0 --host-loop "$src/examples/embed/app.lua"
$PY "$src/examples/embed/bot.py" --url "$url" --seconds 5 >"$work/b2.json" 2>"$work/b2.err" &
bot_b=$!; pids+=($bot_b)
$PY "$src/examples/embed/bot.py" --url "$url" --seconds 5 >"$work/a2.json" 2>"$work/a2.err" ||
  fail "bot A (host loop)"
wait "$bot_b" || fail "bot B (host loop)"
$PY "$work/check.py" host_loop plain "$work/a2.json" "$work/b2.json" || fail "host loop build"
stop_game
echo "ok: the game host built against the installed library"
