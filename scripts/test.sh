#!/usr/bin/env bash
# The test command: set up, then lint (ruff), type-check (mypy) and run the tests (pytest).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -x -q -k rebuild  # extra arguments go to pytest
#
# All three steps run even if one fails; the exit status is non-zero if any failed
# (pytest finding no tests, its exit status 5, counts as a failure).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

bash scripts/setup.sh || exit 1

failed=()
step() {
  local name=$1
  shift
  echo "test: $name"
  local start=$SECONDS
  "$@"
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$name" = pytest ] && [ "$rc" -eq 5 ] && echo "test: pytest collected no tests" >&2
    failed+=("$name (exit $rc)")
  fi
  echo "test: $name finished in $((SECONDS - start)) s (exit $rc)"
}

step ruff .venv/bin/ruff check .
step mypy .venv/bin/mypy
step pytest .venv/bin/pytest "$@"

if ((${#failed[@]})); then
  echo "test: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test: all passed"
