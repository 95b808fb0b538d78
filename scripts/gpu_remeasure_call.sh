#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): the v0.1.0 transformers configurations
# whose two 2026-11-26 calls differ by more than 10% in J/token, again under the current protocol
# (experiments/gpu_remeasure.yaml; torch and transformers as the host has them, nothing carried).
#   scripts/gpu_remeasure_call.sh NAME SECONDS
# Results: $OUT/NAME.tgz (the sweep folder, logs, env.txt). Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >> "$R/env.txt" 2>&1
call_sweep experiments/gpu_remeasure.yaml 60
call_pack
