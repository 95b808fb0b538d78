#!/usr/bin/env bash
# One timed call on a lent GPU host (the device tool, `$OUT` set): the same `wattcounts measure` configuration
# through the NVML meter and through the Zeus-backed meter (issue #23's acceptance: J/token within 2%), in
# alternating order (nvml, zeus, nvml, zeus while time is left) so drift between runs (the card warming up, the
# host) shows beside the meter difference.
#   scripts/gpu_meter_compare_call.sh NAME SECONDS
# The host's python3 lacks zeus and pandera (the measure path validates rows and bundles with it) and pandera's
# needs: their wheels travel in .whl/meter/ (carry `.whl/meter`, 3.6 MB: zeus 0.16.0, pandera 0.35.0,
# pydantic 2.14.4, pydantic-core 2.50.5 cp312, annotated-types, typing-inspection, typeguard, typing-extensions
# 4.16 which pydantic needs); amdsmi and tyro, zeus's other needs, are not imported on this path (zeus mocks a
# missing amdsmi).
# WATTCOUNTS_METER_ORDER: the runs, space-separated (default "nvml zeus nvml zeus"); a run starts only when the
# longest run so far fits in what is left. WATTCOUNTS_MEASURE_ARGS: other `wattcounts measure` flags replacing the
# configuration below. Results: $OUT/NAME.tgz with cmp-<i>-<meter>.json (measure --json), run-<i>-<meter>/
# (the sweep folder), measure-<i>-<meter>.log, compare.txt (one line per pair and the verdict), env.txt.
# Nothing is changed on the card.
set -u
. scripts/device_call_common.sh
call_begin "$1" "$2"
lib=/tmp/meter-lib
python3 -m pip install -q --no-deps --no-index --no-compile --target "$lib" .whl/meter/*.whl > "$R/install.log" 2>&1
export PYTHONPATH=$PWD:$lib PYTHONUNBUFFERED=1 PYTHONFAULTHANDLER=1 WATTCOUNTS_HOME=/tmp/wattcounts NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 -c "import torch, transformers, zeus, pandera, pydantic; from zeus.device import get_gpus; print('torch', torch.__version__, 'transformers', transformers.__version__, 'zeus', zeus.__version__, 'pandera', pandera.__version__, 'pydantic', pydantic.__version__, 'zeus gpus', len(get_gpus()))" >> "$R/env.txt" 2>&1
# Llama-3.1-8B shape, random bf16 weights (models/configs/llama-3.1-8b, tokenizer models/tiny-llama), eager
# transformers, batch 8 of 512 prompt / 128 output tokens, 8 requests, 3 windows of >= 10 s (the GPU default),
# 2 s idle baseline: ~75-100 s a run (eager b8 decodes ~790 tokens/s on an H200, so a window is ~8 batches).
config=${WATTCOUNTS_MEASURE_ARGS:---model llama-3.1-8b --framework transformers --quantization BF16 --batch-size 8 --input-tokens 512 --output-tokens 128 --num-requests 8 --repetitions 3 --idle-s 2}
i=0 longest=150  # the first run is assumed to take up to 150 s (process start, weights, warm-up, cool-down)
for meter in ${WATTCOUNTS_METER_ORDER:-nvml zeus nvml zeus}; do
  i=$((i + 1))
  [ "$(left)" -gt "$longest" ] || { echo "run $i ($meter): not started, $(left) s left" >> "$R/compare.txt"; break; }
  t0=$SECONDS
  # shellcheck disable=SC2086  # $config is a list of flags
  timeout -k 5 "$(left)" python3 -m wattcounts_pipeline.cli measure $config --meter "$meter" --json --no-bundle \
    --experiment meter-compare --out "$R/run-$i-$meter" > "$R/cmp-$i-$meter.json" 2> "$R/measure-$i-$meter.log"
  echo "run $i ($meter): rc $? in $((SECONDS - t0)) s" >> "$R/compare.txt"
  [ $((SECONDS - t0 + 10)) -gt "$longest" ] && longest=$((SECONDS - t0 + 10))
done
python3 - "$R" >> "$R/compare.txt" 2>&1 <<'EOF'
"""J/token per run and the verdict: Zeus against NVML, mean over runs of each meter and each adjacent pair."""
import glob, json, os, re, sys
runs = []
for path in sorted(glob.glob(os.path.join(sys.argv[1], "cmp-*.json")), key=lambda p: int(re.findall(r"cmp-(\d+)-", p)[0])):
    try:
        doc = json.loads(open(path).read().strip().splitlines()[-1])
    except (IndexError, ValueError):
        print(f"{os.path.basename(path)}: no JSON result"); continue
    if not doc.get("ok"):
        print(f"{os.path.basename(path)}: failed: {doc.get('error')}"); continue
    r, meter = doc["result"], path.rsplit("-", 1)[1][:-5]
    runs.append((meter, r))
    ci = r.get("energy_per_token_ci95_j") or [float("nan")] * 2
    print(f"{os.path.basename(path)}: {meter} {r['energy_method']} J/token {r['energy_per_token_j']:.5f} "
          f"[{ci[0]:.5f}, {ci[1]:.5f}] tok/s {r['tokens_per_s']:.1f} W {r['mean_power_w']:.1f} idle W {r['idle_power_w']:.1f}")
for (m1, a), (m2, b) in zip(runs, runs[1:]):
    print(f"pair {m1}->{m2}: {100 * (b['energy_per_token_j'] / a['energy_per_token_j'] - 1):+.2f}% J/token, "
          f"{100 * (b['tokens_per_s'] / a['tokens_per_s'] - 1):+.2f}% tok/s")
by = {m: [r["energy_per_token_j"] for mm, r in runs if mm == m] for m in ("nvml", "zeus")}
if by["nvml"] and by["zeus"]:
    n, z = sum(by["nvml"]) / len(by["nvml"]), sum(by["zeus"]) / len(by["zeus"])
    d = 100 * (z / n - 1)
    print(f"VERDICT zeus vs nvml: {z:.5f} vs {n:.5f} J/token ({len(by['zeus'])} vs {len(by['nvml'])} runs): "
          f"{d:+.2f}% -> {'within' if abs(d) <= 2 else 'NOT within'} 2%")
else:
    print("VERDICT: no comparison (a meter has no successful run)")
EOF
cat "$R/compare.txt"
nvidia-smi --query-gpu=temperature.gpu,power.draw --format=csv >> "$R/env.txt" 2>&1
call_pack
