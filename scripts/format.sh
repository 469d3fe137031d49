#!/usr/bin/env bash
# Formats every C++ file of the tree with clang-format (.clang-format at the root).
#   scripts/format.sh          rewrite the files in place
#   scripts/format.sh --check  list the files that are not formatted and fail if any
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h')
if [[ ${1:-} == --check ]]; then
  bad=0
  for f in "${files[@]}"; do
    if ! clang-format "$f" | cmp -s "$f" -; then
      echo "not formatted: $f (run scripts/format.sh)"
      bad=1
    fi
  done
  exit $bad
fi
clang-format -i "${files[@]}"
