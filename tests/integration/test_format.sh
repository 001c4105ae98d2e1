#!/usr/bin/env bash
# The C sources keep the layout of .clang-format: clang-format (Debian 12's, 14) changes nothing.
# To fix a failure: clang-format -i <the files named below>.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
command -v clang-format >/dev/null || { echo "FAIL: clang-format not installed (scripts/install-deps)"; exit 1; }
files=$(ls src/*.c src/*.h tests/*.c tests/*.h fuzz/*.c bench/*.c examples/embed/*.c 2>/dev/null)
bad=()
for f in $files; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "FAIL: not formatted with .clang-format: ${bad[*]}"
  exit 1
fi
echo "PASS: $(echo "$files" | wc -w) files keep the layout of .clang-format"
