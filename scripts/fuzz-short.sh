#!/usr/bin/env bash
# Runs every Go fuzz target in the repository briefly (FUZZTIME, default 10s each).
# The seed corpora under testdata/fuzz already run as ordinary tests in `go test`.
set -euo pipefail
fuzztime=${FUZZTIME:-10s}
grep -rl --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . | sort | while read -r file; do
  pkg="./$(dirname "${file#./}")"
  grep -oE '^func Fuzz[A-Za-z0-9_]*' "$file" | sed 's/^func //' | while read -r target; do
    echo "fuzz $pkg $target ($fuzztime)"
    "${GO:-go}" test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "$pkg"
  done
done
