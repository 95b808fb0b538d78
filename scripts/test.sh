#!/usr/bin/env bash
# Set up, lint (ruff) and type-check (mypy) the package, then run the whole test suite (unit tests, asset tests
# through dagster.materialize, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
