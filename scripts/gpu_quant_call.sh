#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): torchao and bitsandbytes formats through
# transformers (experiments/gpu_quant.yaml), the wheels carried in .whl/ (torchao 3.4 MB, bitsandbytes 43 MB; carry
# only what the specs need when the tree is large).
#   scripts/gpu_quant_call.sh NAME SECONDS
# WATTCOUNTS_EXPERIMENT: other experiment files, space-separated (default experiments/gpu_quant.yaml); WATTCOUNTS_SWEEP_ONLY: measure
# only keys containing any of its comma-separated parts. Results: $OUT/NAME.tgz (the sweep folder, logs,
# env.txt). Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
lib=/tmp/quant-lib
# the wheels carried (a call that needs only one carries only that one: the call's tree is limited to 64 MiB)
python3 -m pip install -q --no-deps --no-index --target "$lib" $(ls .whl/torchao-*.whl .whl/bitsandbytes-*.whl 2>/dev/null) > "$R/install.log" 2>&1
export PYTHONPATH=$PWD:$lib PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts
python3 -c "
import importlib
for name in ('torch', 'transformers', 'torchao', 'bitsandbytes'):
    try:
        print(name, importlib.import_module(name).__version__)
    except ImportError:
        print(name, 'not installed')" >> "$R/env.txt" 2>&1
call_sweep "${WATTCOUNTS_EXPERIMENT:-experiments/gpu_quant.yaml}" 60
call_pack
