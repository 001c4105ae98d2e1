#!/usr/bin/env bash
# Packaging test: installs this build into a temporary prefix and checks the installed tree,
# builds tests/embed/consumer.c against the installed library through find_package(switchyard)
# (shared and static) and through pkg-config (shared, and --static), runs each build once,
# checks where the installed and the build tree's binary look for Lua modules, and configures
# a parent project that uses add_subdirectory() on the source tree (tests off).
# Usage: run.sh SOURCE_DIR BUILD_DIR CONFIGURED_PREFIX VERSION [SANITIZERS]
set -euo pipefail
src=$1 build=$2 configured_prefix=$3 version=$4 san=${5:-}
here=$src/tests/embed
CC=${CC:-cc}
flags=(-std=c11 -Wall -Wextra -Werror -Wstrict-prototypes -pedantic)
[ -n "$san" ] && flags+=("-fsanitize=$san" -fno-omit-frame-pointer)
work=$(mktemp -d /tmp/sy-embed.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }
# Module lists must not depend on the caller's environment.
unset LUA_PATH LUA_PATH_5_4 LUA_CPATH LUA_CPATH_5_4

prefix=$work/prefix
step "cmake --install $build --prefix $prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log" ||
  { cat "$work/install.log"; fail "install"; }

step "installed tree"
libdir=$(cd "$prefix" && ls -d lib*/pkgconfig | head -1 | xargs dirname)
[ -n "$libdir" ] || fail "no pkgconfig directory under $prefix"
headers=$(cd "$prefix/include" && find . -type f | sort | tr '\n' ' ')
[ "$headers" = "./switchyard.h " ] || fail "installed headers: $headers (want switchyard.h only)"
for f in bin/switchyard "$libdir/libswitchyard.a" "$libdir/libswitchyard.so" \
         "$libdir/pkgconfig/switchyard.pc" "$libdir/cmake/switchyard/switchyardConfig.cmake" \
         "$libdir/cmake/switchyard/switchyardConfigVersion.cmake" \
         "$libdir/cmake/switchyard/switchyardTargets.cmake" "$libdir/lua/5.4/switchyard.so" \
         "$libdir/lua/5.4/switchyard/crypto.so"; do
  [ -e "$prefix/$f" ] || fail "missing $f"
done
major=${version%%.*} rest=${version#*.}
minor=${rest%%.*}
if [ "$major" = 0 ]; then soname=libswitchyard.so.0.$minor; else soname=libswitchyard.so.$major; fi
readelf -d "$prefix/$libdir/libswitchyard.so" | grep -q "Library soname: \[$soname\]" ||
  fail "SONAME is not $soname"
if [ -d "$src/lua/switchyard" ]; then
  for f in $(cd "$src/lua" && find switchyard -name '*.lua'); do
    [ -f "$prefix/share/lua/5.4/$f" ] || fail "Lua helper $f not installed"
  done
fi
# The installed library exports the public API only.
exported=$(nm -D --defined-only "$prefix/$libdir/libswitchyard.so" | awk '{print $3}' |
           grep -vE '^(sy_|luaopen_switchyard$)' || true)
[ -z "$exported" ] || fail "exports beyond the API: $exported"
# switchyard/crypto.so exports its opener only, and (unsanitized) loads in a plain lua5.4.
exported=$(nm -D --defined-only "$prefix/$libdir/lua/5.4/switchyard/crypto.so" |
           awk '{print $3}' | grep -vE '^(luaopen_switchyard_crypto|_init|_fini)$' || true)
[ -z "$exported" ] || fail "switchyard/crypto.so exports $exported"
if [ -z "$san" ]; then
  LUA_CPATH="$prefix/$libdir/lua/5.4/?.so" lua5.4 -e \
    'assert(require("switchyard.crypto").base64_encode("foobar") == "Zm9vYmFy")' ||
    fail "the installed switchyard/crypto.so does not load in lua5.4"
fi

step "package.path of the installed and of the build tree's binary"
mkdir -p "$work/app"
printf 'require "no_such_module"\nreturn {}\n' >"$work/app/app.lua"
"$prefix/bin/switchyard" --check "$work/app/app.lua" >"$work/installed.txt" 2>&1 || true
grep -q "no file '$work/app/no_such_module.lua'" "$work/installed.txt" ||
  { cat "$work/installed.txt"; fail "installed binary does not search the app's directory"; }
grep -q "no file '$configured_prefix/share/lua/5.4/no_such_module.lua'" "$work/installed.txt" ||
  { cat "$work/installed.txt"; fail "installed binary skips $configured_prefix/share/lua/5.4"; }
if grep -qE "'($src|$build)/" "$work/installed.txt"; then
  cat "$work/installed.txt"; fail "installed binary searches the source or build tree"
fi
"$build/switchyard" --check "$work/app/app.lua" >"$work/built.txt" 2>&1 || true
grep -q "no file '$src/lua/no_such_module.lua'" "$work/built.txt" ||
  { cat "$work/built.txt"; fail "the build tree's binary does not search $src/lua"; }

step "find_package(switchyard): switchyard::switchyard and switchyard::static"
cmake -S "$here" -B "$work/cm" -DCMAKE_PREFIX_PATH="$prefix" -DSY_EMBED_VERSION="$version" \
  -DCMAKE_C_COMPILER="$CC" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS="${flags[*]}" \
  -DCMAKE_EXE_LINKER_FLAGS="${san:+-fsanitize=$san}" >"$work/cm.log" 2>&1 ||
  { cat "$work/cm.log"; fail "find_package consumer: configure"; }
cmake --build "$work/cm" >"$work/cm-build.log" 2>&1 ||
  { cat "$work/cm-build.log"; fail "find_package consumer: build"; }
"$work/cm/consumer_shared" "$here/app.lua" || fail "find_package consumer (shared)"
# ldd's output is read whole: grep -q stopping early would fail the pipe (pipefail, SIGPIPE).
deps=$(ldd "$work/cm/consumer_shared")
grep -q "$soname => $prefix/" <<<"$deps" ||
  { echo "$deps" >&2; fail "consumer_shared does not use the installed $soname"; }
"$work/cm/consumer_static" "$here/app.lua" || fail "find_package consumer (static)"
deps=$(ldd "$work/cm/consumer_static")
if grep -q libswitchyard <<<"$deps"; then
  fail "consumer_static links libswitchyard.so"
fi

step "pkg-config --cflags --libs switchyard (and --static)"
export PKG_CONFIG_PATH=$prefix/$libdir/pkgconfig
[ "$(pkg-config --modversion switchyard)" = "$version" ] || fail "pkg-config version"
pkg-config --cflags switchyard | grep -q -- "-I$(pkg-config --variable=includedir lua5.4)" ||
  fail "pkg-config --cflags lacks Lua's include directory: $(pkg-config --cflags switchyard)"
# shellcheck disable=SC2046
"$CC" "${flags[@]}" -o "$work/pc_shared" "$here/consumer.c" \
  $(pkg-config --cflags --libs switchyard) \
  -Wl,-rpath,"$(pkg-config --variable=libdir switchyard)" || fail "pkg-config consumer: build"
"$work/pc_shared" "$here/app.lua" || fail "pkg-config consumer (shared)"
# The private dependencies, c-ares among them, reach a static link.
static_libs=$(pkg-config --static --libs switchyard)
for l in -lssl -lnghttp2 -lcares -lz; do
  grep -q -- "$l\b" <<<"$static_libs" || fail "pkg-config --static --libs lacks $l: $static_libs"
done
# --static gives every library libswitchyard.a needs; -l:libswitchyard.a picks the archive.
# shellcheck disable=SC2046
"$CC" "${flags[@]}" -o "$work/pc_static" "$here/consumer.c" $(pkg-config --cflags switchyard) \
  $(pkg-config --static --libs switchyard | sed 's/-lswitchyard\b/-l:libswitchyard.a/') ||
  fail "pkg-config --static consumer: build"
"$work/pc_static" "$here/app.lua" || fail "pkg-config consumer (static)"

step "add_subdirectory() on the source tree (configure only)"
cmake -S "$here" -B "$work/sub" -DSY_EMBED_SOURCE="$src" -DCMAKE_C_COMPILER="$CC" \
  >"$work/sub.log" 2>&1 || { cat "$work/sub.log"; fail "add_subdirectory: configure"; }
grep -q '^SY_BUILD_TESTS:BOOL=OFF$' "$work/sub/CMakeCache.txt" ||
  fail "tests on under add_subdirectory"
if grep -qE '^(BUSTED|LUA54):' "$work/sub/CMakeCache.txt"; then
  fail "add_subdirectory looked for busted/lua5.4 with tests off"
fi
targets=$(cmake --build "$work/sub" --target help)
for t in consumer_shared consumer_static sy_core sy_shared; do
  grep -q "\\b$t\\b" <<<"$targets" || fail "add_subdirectory: no target $t"
done
if grep -q 'test_http1' <<<"$targets"; then fail "add_subdirectory builds the tests"; fi

echo "ok: installed, embedded via find_package, pkg-config and add_subdirectory"
