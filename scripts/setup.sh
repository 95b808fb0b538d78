#!/usr/bin/env bash
# Create .venv and install Watt Counts with its CPU backends, lm-eval, the fleet executors and the test tools
# (a headless Chromium included, for the explorer page's browser test).
# First run: ~10 minutes on 2 cores (llama-cpp-python compiles; the wheel is then cached in
# ~/.cache/wattcounts/wheels and reused). Later runs: seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${WATTCOUNTS_TORCH_SPEC:-torch==2.13.0}   # CPU build; on a GPU host set it to your CUDA torch
LLAMA_VERSION=0.3.36

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip wheel

.venv/bin/python -c "import torch" 2>/dev/null || $PIP install -q "$TORCH_SPEC"

if ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  cmake_args=$(scripts/llama_cmake_args.sh)
  key=$(printf '%s %s' "$LLAMA_VERSION" "$cmake_args" | sha256sum | cut -c1-12)
  wheels="${XDG_CACHE_HOME:-$HOME/.cache}/wattcounts/wheels/llama-$key"
  if ! ls "$wheels"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_VERSION (about 9 minutes on 2 cores): $cmake_args"
    CMAKE_ARGS="$cmake_args" $PIP wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$wheels" "llama-cpp-python==$LLAMA_VERSION"
  fi
  $PIP install -q --no-deps "$wheels"/llama_cpp_python-*.whl
  $PIP install -q "llama-cpp-python[server]==$LLAMA_VERSION"   # its pure-Python dependencies and server
fi

$PIP install -q -e ".[llamacpp,hf,eval,dev,fleet,quant]"
scripts/install_browser.sh   # Playwright + Debian's chromium for the explorer's browser test (~16 s the first time)
echo "setup done: $(.venv/bin/python -c 'import dagster, llama_cpp, torch; print("dagster", dagster.__version__, "| llama_cpp", llama_cpp.__version__, "| torch", torch.__version__)')"
