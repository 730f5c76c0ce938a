#!/usr/bin/env bash
# Lint, type-check and test. `--fast` skips the tests that need heavy runtimes (and their
# install); other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--fast" ]; then
  shift
  bash scripts/setup.sh
  set -- -m "not slow" "$@"
else
  bash scripts/setup.sh --runtimes
fi
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
