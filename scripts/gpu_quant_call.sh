#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): torchao and bitsandbytes formats through
# transformers (experiments/gpu_quant.yaml), the wheels carried in .whl/ (torchao 3.4 MB, bitsandbytes 43 MB).
#   scripts/gpu_quant_call.sh NAME SECONDS
# WATTCOUNTS_EXPERIMENT: other experiment files, space-separated (default experiments/gpu_quant.yaml); WATTCOUNTS_SWEEP_ONLY: measure
# only keys containing any of its comma-separated parts. Results: $OUT/NAME.tgz (the sweep folder, logs,
# env.txt). Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
lib=/tmp/quant-lib
python3 -m pip install -q --no-deps --no-index --target "$lib" .whl/torchao-*.whl .whl/bitsandbytes-*.whl > "$R/install.log" 2>&1
export PYTHONPATH=$PWD:$lib PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts
python3 -c "import torch, transformers, torchao, bitsandbytes; print('torch', torch.__version__, 'transformers', transformers.__version__, 'torchao', torchao.__version__, 'bitsandbytes', bitsandbytes.__version__)" >> "$R/env.txt" 2>&1
call_sweep "${WATTCOUNTS_EXPERIMENT:-experiments/gpu_quant.yaml}" 60
call_pack
