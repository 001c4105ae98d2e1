#!/usr/bin/env bash
# Every function that src/switchyard.h exports (SY_API) must be called by some C file under
# tests/ or examples/embed/ (so the C tests, which also run in the ASan+UBSan build, exercise
# it). Prints each function that none calls and fails. A mention in a comment does not count;
# a call does (the name followed by "("), and so does passing the function as a pointer
# argument (luaL_requiref(L, "switchyard", luaopen_switchyard, 1)).
# Usage: tests/check_api_coverage.sh [SOURCE_DIR]   (default: this script's parent)
set -euo pipefail
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
header=$root/src/switchyard.h

# "SY_API <type> name(" on one line: the name is the last identifier before "(".
mapfile -t names < <(grep -E '^SY_API[[:space:]]' "$header" |
                     sed -E 's/^([^(]*[^A-Za-z0-9_(])?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\(.*/\2/' |
                     sort -u)
if [ "${#names[@]}" -lt 10 ]; then
  echo "check_api_coverage: found only ${#names[@]} SY_API functions in $header" >&2
  exit 2
fi

mapfile -t files < <(find "$root/tests" "$root/examples/embed" -type f \
                          \( -name '*.c' -o -name '*.h' -o -name '*.cc' -o -name '*.cpp' \) |
                     sort)
# The callers' text without comments (/* ... */ and // ...), so a mention is not a call.
text=$(mktemp)
trap 'rm -f "$text"' EXIT
for f in "${files[@]}"; do
  perl -0777 -pe 's{/\*.*?\*/}{ }gs; s{//[^\n]*}{}g' "$f"
done >"$text"

missing=()
for n in "${names[@]}"; do
  grep -qE "(^|[^A-Za-z0-9_])$n[[:space:]]*\(|[(,][[:space:]]*$n[[:space:]]*[,)]" "$text" ||
    missing+=("$n")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "check_api_coverage: ${#missing[@]} of ${#names[@]} public functions are called by no" \
       "test (tests/, examples/embed/):"
  printf '  %s\n' "${missing[@]}"
  exit 1
fi
echo "check_api_coverage: all ${#names[@]} public functions are called by a test"
