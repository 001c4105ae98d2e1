#!/usr/bin/env bash
# Where the server's Lua state looks for modules: the app's directory first; the source tree's
# lua/ only for the binary in its build tree; a copy of the binary outside the build tree (as
# installed) names neither the source nor the build directory in its "module not found" list.
set -euo pipefail
cd "$(dirname "$0")/../.."
src=$(pwd -P)
bin=${SWITCHYARD_BIN:?SWITCHYARD_BIN not set}
build=$(cd "$(dirname "$bin")" && pwd -P)
fail() { echo "FAIL: $*" >&2; exit 1; }
unset LUA_PATH LUA_PATH_5_4 LUA_CPATH LUA_CPATH_5_4
work=$(mktemp -d /tmp/sy-luapath.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/app"
printf 'require "no_such_module"\nreturn {}\n' >"$work/app/app.lua"

"$bin" --check "$work/app/app.lua" >"$work/built.txt" 2>&1 && fail "--check passed"
first=$(grep -m1 "no file" "$work/built.txt")
[ "$first" = "	no file '$work/app/no_such_module.lua'" ] ||
  { cat "$work/built.txt"; fail "the app's directory is not searched first"; }
grep -q "no file '$src/lua/no_such_module.lua'" "$work/built.txt" ||
  { cat "$work/built.txt"; fail "the build tree's binary does not search $src/lua"; }
grep -q "no file '$src/lua/no_such_module/init.lua'" "$work/built.txt" ||
  { cat "$work/built.txt"; fail "the build tree's binary does not search $src/lua/?/init.lua"; }

cp "$bin" "$work/switchyard"
"$work/switchyard" --check "$work/app/app.lua" >"$work/copied.txt" 2>&1 && fail "--check passed"
grep -q "no file '$work/app/no_such_module.lua'" "$work/copied.txt" ||
  { cat "$work/copied.txt"; fail "the copied binary does not search the app's directory"; }
grep -q "share/lua/5.4/no_such_module.lua'" "$work/copied.txt" ||
  { cat "$work/copied.txt"; fail "the copied binary does not search PREFIX/share/lua/5.4"; }
if grep -qE "'($src|$build)/" "$work/copied.txt"; then
  cat "$work/copied.txt"; fail "a binary outside the build tree searches the source or build tree"
fi
echo "ok: app directory first; source lua/ only from the build tree"
