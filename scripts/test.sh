#!/usr/bin/env bash
# Set up, then run the whole test suite (unit tests, asset tests through dagster.materialize, e2e).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
