#!/usr/bin/env bash
# The explorer's browser test (tests/e2e/test_explorer_browser.py) needs Playwright's Python package and a
# Chromium. Playwright's own browser builds come from Microsoft's CDN, which CI cannot reach, so this never runs
# `playwright install`: it takes Debian's `chromium` package, which the test launches by executable_path.
# Idempotent: what is already there is kept. First run: 16 s on this project's Debian 12 machine (the playwright wheel
# and chromium's packages), longer when apt-get update must run first; later runs: under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PLAYWRIGHT_VERSION=${WATTCOUNTS_PLAYWRIGHT_VERSION:-1.65.2}   # drives Debian bookworm's chromium (CDP)

if [ ! -x .venv/bin/python ]; then
  echo "no .venv: run scripts/setup.sh first" >&2
  exit 1
fi

installed=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)
if [ "$installed" != "$PLAYWRIGHT_VERSION" ]; then
  .venv/bin/python -m pip install -q "playwright==$PLAYWRIGHT_VERSION"
fi

if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # an empty package list (a fresh container) or one without chromium needs an update first
  if ! apt-cache show chromium >/dev/null 2>&1; then
    $SUDO apt-get update -qq
  fi
  if ! $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
    $SUDO apt-get update -qq   # a stale list points at package versions the mirror no longer has
    $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
fi

echo "browser ready: playwright $(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("playwright"))')," \
  "$(chromium --version 2>/dev/null || echo 'chromium (version unknown)') at $(command -v chromium)"
