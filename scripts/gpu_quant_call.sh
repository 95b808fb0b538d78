#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): torchao and bitsandbytes formats through
# transformers (experiments/gpu_quant.yaml), the wheels carried in .whl/ (torchao 3.4 MB, bitsandbytes 43 MB).
#   scripts/gpu_quant_call.sh NAME SECONDS
# WATTCOUNTS_SWEEP_ONLY: measure only keys containing it. Results: $OUT/NAME.tgz (the sweep folder, logs,
# env.txt). Nothing is changed on the card.
set -u
name=$1 seconds=$2
deadline=$((SECONDS + seconds - 25))  # 25 s to pack the results
left() { echo $((deadline - SECONDS)); }
R=$OUT/$name
mkdir -p "$R"
lib=/tmp/quant-lib
python3 -m pip install -q --no-deps --no-index --target "$lib" .whl/torchao-*.whl .whl/bitsandbytes-*.whl > "$R/install.log" 2>&1
export PYTHONPATH=$PWD:$lib PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts
{ nvidia-smi --query-gpu=index,name,driver_version,power.limit,memory.total,temperature.gpu,power.draw,persistence_mode --format=csv
  grep -m1 "model name" /proc/cpuinfo; echo "cpus $(nproc)"; python3 --version
  python3 -c "import torch, transformers, torchao, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'torchao', torchao.__version__, 'bitsandbytes', bitsandbytes.__version__)"
} > "$R/env.txt" 2>&1
. scripts/device_call_common.sh
call_sweep experiments/gpu_quant.yaml 60
call_pack
