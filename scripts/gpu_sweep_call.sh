#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): the specs of transformers experiment files that
# need nothing beyond the host's own torch and transformers (nothing carried), as one sweep that resumes past the
# recorded folders of this card model (call_sweep; specs in file order).
#   scripts/gpu_sweep_call.sh NAME SECONDS [EXPERIMENT.yaml ...]   (default experiments/gpu_remeasure.yaml)
# e.g. experiments/gpu_remeasure.yaml (the v0.1.0 configurations whose two calls differ by more than 10%, H200 only)
# or experiments/gpu_predictor_gaps.yaml (Qwen2.5-32B, Mistral-Small-24B and OLMoE-1B-7B on one GPU of >= 80 GB).
# WATTCOUNTS_SWEEP_ONLY: only keys containing any of its comma-separated parts. Results: $OUT/NAME.tgz (the sweep
# folder, logs, env.txt). Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
shift 2
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" >> "$R/env.txt" 2>&1
call_sweep "${*:-experiments/gpu_remeasure.yaml}" 60
call_pack
