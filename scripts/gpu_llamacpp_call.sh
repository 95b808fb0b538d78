#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): llama.cpp with CUDA, then the llama.cpp sweep.
#   scripts/gpu_llamacpp_call.sh NAME SECONDS [EXPERIMENT.yaml ...]   (default experiments/gpu_llamacpp.yaml)
# The build comes from .llama/llama-cuda-bin.tar.xz.part-* when a previous call returned it (carry `.llama`),
# else it is built here from .llama-src/llama.cpp-0.3.36-src.tar.xz (carry `.llama-src`; ~5 min) and
# returned in parts under $OUT. .llama/py holds the Python side: llama_cpp (bindings), gguf, diskcache.
# WATTCOUNTS_SWEEP_ONLY: measure only keys containing it; WATTCOUNTS_CHECK=CONFIG:QUANT: an in-process smoke
# check first (when it fails, the sweep measures only through llama-server).
# Results: $OUT/NAME.tgz (the sweep folder, logs, env.txt). Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
shift 2
export PYTHONPATH=$PWD:$PWD/.llama/py PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
{ c++ --version | head -1; env | grep -E '^(CC|CXX|CFLAGS|CXXFLAGS|LDFLAGS|CUDAFLAGS|CMAKE_[A-Z_]+)=' ; } >> "$R/env.txt" 2>&1
call_llama_cuda
export PYTHONFAULTHANDLER=1  # a crash in native code prints the Python stack
if [ -n "${WATTCOUNTS_CHECK:-}" ]; then
  { command -v python3; ldd "$prefix/bin/libllama.so"; } >> "$R/check.log" 2>&1
  for variant in ${WATTCOUNTS_CHECK_VARIANTS:-n_gpu_layers=99}; do  # e.g. "n_gpu_layers=0 split_mode=0,..."
    echo "=== variant $variant" >> "$R/check.log"
    debug=()  # a native backtrace and the loaded libraries where gdb exists, so a crash names its frame
    command -v gdb >/dev/null && debug=(gdb -q -batch -ex run -ex bt -ex "info sharedlibrary" --args)
    timeout 120 "${debug[@]}" python3 scripts/llamacpp_gpu_check.py "${WATTCOUNTS_CHECK%%:*}" "${WATTCOUNTS_CHECK##*:}" 32 ${variant//,/ } >> "$R/check.log" 2>&1
    rc=$?; echo "check rc $rc" >> "$R/check.log"
    # A crash in-process would end the sweep with it: then measure only through llama-server.
    [ "$rc" -ne 0 ] && export WATTCOUNTS_SWEEP_ONLY=${WATTCOUNTS_SWEEP_ONLY:-llamacpp-server}
  done
fi
call_sweep "${*:-experiments/gpu_llamacpp.yaml}" 75
call_pack
