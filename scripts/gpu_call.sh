#!/usr/bin/env bash
# One timed call on a lent 4-GPU host (the device tool, `$OUT` set): resumes the GPU sweeps where the
# recorded folders under data/measurements/ leave them, packs each sweep folder's tables into parquet
# (`sweep pack`) and everything into $OUT/NAME.tgz.
#   scripts/gpu_call.sh NAME SECONDS PLAN
# PLAN  fidelity  GPU 3: benchmarks/meter_fidelity.py (idle, sampler overhead, compiled J/token), then the
#                 compiled sweep; GPUs 0-2: the eager sweeps, one spec per GPU at a time
#       tp        GPUs 0,1: the 2-GPU specs (8B tensor-parallel, 70B pipeline); GPUs 2,3: all 1-GPU sweeps
#       eager     every GPU on the eager 1-GPU sweeps
#       captured  GPUs 0-2: the CUDA-graph sweep (compile: capture), then the eager ones; GPU 3: the compiled
#                 sweep (~130 s of compilation per configuration)
#       all       every GPU on all 1-GPU sweeps (eager, then captured, then compiled)
# An H100 host measures every spec pinned to h100 (new configuration ids); an H200 host keeps each
# file's own pin. Nothing is changed on the cards (clocks, power limits).
set -u
name=$1 seconds=$2 plan=$3
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
R=$OUT/$name
mkdir -p "$R"
{ nvidia-smi --query-gpu=index,name,driver_version,power.limit,memory.total,temperature.gpu,power.draw,persistence_mode --format=csv
  python3 -c "import torch, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'accelerate', accelerate.__version__)"
  python3 -c "import pyarrow; print('pyarrow', pyarrow.__version__)"  # needed to read the packed folders
  echo "cpus $(nproc)"; } > "$R/env.txt" 2>&1
case "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)" in
  *H100*) pin=(--hardware h100) ;;
  *) pin=() ;;
esac
recorded=()
for d in data/measurements/*/; do recorded+=(--recorded "$d"); done
eager=(experiments/gpu_h200_more.yaml experiments/gpu_transformers.yaml)
compiled=(experiments/gpu_compiled.yaml)
captured=(experiments/gpu_captured.yaml)
deadline=$((SECONDS + seconds - 20))  # 20 s to pack the results
left() { echo $((deadline - SECONDS)); }
# start no spec in the last 90 s (a spec takes 15-60 s, a compiled one longer); hard stop at the deadline
sweep() { local out=$1; shift; [ "$(left)" -gt 100 ] || return 0; timeout "$(left)" python3 -m wattcounts_pipeline.cli sweep "$@" --out "$R/$out" \
            "${pin[@]}" "${recorded[@]}" --max-seconds $(($(left) - 90)) >> "$R/$out.log" 2>&1; }
claims=$R/claims.txt
case $plan in
  fidelity)
    (CUDA_VISIBLE_DEVICES=3 timeout 330 python3 benchmarks/meter_fidelity.py --out "$R/fidelity" \
       --stages idle,overhead,reps_compiled --budget-s 320 > "$R/fidelity.log" 2>&1
     CUDA_VISIBLE_DEVICES=3 sweep compiled "${compiled[@]}") &
    CUDA_VISIBLE_DEVICES=0,1,2 sweep eager "${eager[@]}" --shards 3 ;;
  tp)
    (if [ ${#pin[@]} -eq 0 ]; then
       CUDA_VISIBLE_DEVICES=0,1 sweep multi experiments/gpu_multi_h200.yaml --only llama-3.1-8b
       CUDA_VISIBLE_DEVICES=0,1 sweep multi experiments/gpu_multi_h200.yaml --only 70b
     fi
     CUDA_VISIBLE_DEVICES=0 sweep late "${eager[@]}" "${compiled[@]}" --claims "$claims" &
     CUDA_VISIBLE_DEVICES=1 sweep late "${eager[@]}" "${compiled[@]}" --claims "$claims"; wait) &
    CUDA_VISIBLE_DEVICES=2,3 sweep shards "${eager[@]}" "${compiled[@]}" --shards 2 --claims "$claims" ;;
  eager)
    sweep shards "${eager[@]}" --shards 4 ;;
  captured)
    CUDA_VISIBLE_DEVICES=3 sweep compiled "${compiled[@]}" &
    CUDA_VISIBLE_DEVICES=0,1,2 sweep shards "${captured[@]}" "${eager[@]}" --shards 3 ;;
  all)
    sweep shards "${eager[@]}" "${captured[@]}" "${compiled[@]}" --shards 4 ;;
  *) echo "unknown plan $plan" >&2; exit 2 ;;
esac
wait
# every sweep has ended: JSONL -> parquet (each JSONL kept if its parquet does not read back identical)
for d in "$R"/*/; do
  [ -f "$d/runs.jsonl" ] && python3 -m wattcounts_pipeline.cli pack "$d" >> "$R/pack.log" 2>&1
done
tar czf "$OUT/$name.tgz" -C "$OUT" "$name" && rm -rf "$R"
