#!/usr/bin/env bash
# The test command: set up, then lint (ruff), type-check (mypy) and run the tests (pytest).
#
#   bash scripts/test.sh                   # everything: the unit, integration and system tiers (what CI runs)
#   bash scripts/test.sh --fast            # the unit tier only (minutes): the inner loop
#   bash scripts/test.sh -x -q -k rebuild  # extra arguments go to pytest
#
# pytest runs in BACKFILL_TEST_WORKERS processes (default 2, pytest-xdist, a test module per worker at
# a time): one run keeps about one core busy (its Spark driver), so two overlap on two cores.
# BACKFILL_TEST_WORKERS=1 runs in one process.
#
# All three steps run even if one fails; the exit status is non-zero if any failed
# (pytest finding no tests, its exit status 5, counts as a failure).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

tier=()
if [ "${1:-}" = --fast ]; then
  shift
  tier=(-m unit)
fi

bash scripts/setup.sh || exit 1

# The UI test (system tier) drives Debian's Chromium (through Playwright, without Playwright's own browsers).
if ((${#tier[@]} == 0)) && [ -z "${CHROMIUM:-}" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test: installing chromium (apt-get) for the browser test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
      { echo "test: apt-get install chromium failed" >&2; exit 1; }
  else
    echo "test: the browser test needs Chromium: install it (apt-get install chromium) or set CHROMIUM=/path/to/chromium" >&2
    exit 1
  fi
fi

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
workers=${BACKFILL_TEST_WORKERS:-2}
parallel=()
if [ "$workers" -gt 1 ] 2>/dev/null; then
  parallel=(-n "$workers" --dist loadfile)
fi
step pytest .venv/bin/pytest "${parallel[@]}" "${tier[@]}" "$@"

if ((${#failed[@]})); then
  echo "test: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "test: all passed"
