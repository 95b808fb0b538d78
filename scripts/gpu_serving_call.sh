#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): serving load sweeps through llama.cpp's own
# llama-server on CUDA (benchmarks/serving_sweep.py; default experiments/serving/gpu_serving_3x2.yaml).
#   scripts/gpu_serving_call.sh NAME SECONDS [EXPERIMENT]
# The llama.cpp build comes from .llama/llama-cuda-bin.tar.xz.part-* (carry `.llama`, 44 MB; .llama/py holds
# gguf, used to write the random-weight GGUFs, and the llama_cpp bindings, used for the vocabulary), as in
# scripts/gpu_llamacpp_call.sh; without it it is built from .llama-src (carry `.llama-src`, ~5 min) and returned
# in parts under $OUT.
# WATTCOUNTS_SERVING_ONLY: run only sweeps whose key contains any of its comma-separated parts (e.g. q4_k_m, or
# qwen,mistral); sweeps with rows from this card model in a serving_*.jsonl under data/measurements/ are skipped
# (resume), unless WATTCOUNTS_REPEAT is set. Results: $OUT/NAME.tgz with serving/serving_<experiment>_<card>.{jsonl,md}
# (rewritten as each sweep ends), points/<sweep>/ (every load point as it ended, failures with the server's log
# tail: what a sweep cut by the deadline leaves), serving.log, logs/ (server logs), env.txt. Nothing is changed on
# the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
experiment=${3:-experiments/serving/gpu_serving_3x2.yaml}
export PYTHONPATH=$PWD:$PWD/.llama/py PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
call_llama_cuda
python3 -c "import pandas, yaml, numpy, gguf, llama_cpp; print('pandas', pandas.__version__, 'gguf', gguf.__file__, 'llama_cpp', llama_cpp.__version__)" >> "$R/env.txt" 2>&1
# card tag for file names: h200, h100, ... (the first hNNN/aNNN/lNN word of the card's name, else "gpu")
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr 'A-Z' 'a-z' | grep -oE '\b[a-z][0-9]{2,4}\b' | head -1)
skip=()
[ -z "${WATTCOUNTS_REPEAT:-}" ] && skip=(--skip-done data/measurements)
# start no sweep the longest one so far says would not fit; hard stop at the deadline (25 s kept to pack)
[ "$(left)" -gt 60 ] && timeout -k 5 "$(left)" python3 benchmarks/serving_sweep.py "$experiment" --out "$R/serving" \
  --tag "${card:-gpu}" --max-seconds $(($(left) - 15)) "${skip[@]}" \
  ${WATTCOUNTS_SERVING_ONLY:+--only="$WATTCOUNTS_SERVING_ONLY"} > "$R/serving.log" 2>&1
echo "serving_sweep rc $?" >> "$R/serving.log"
cp -r /tmp/wattcounts/serving "$R/points" 2>/dev/null
nvidia-smi --query-gpu=temperature.gpu,power.draw --format=csv >> "$R/env.txt" 2>&1
call_pack
