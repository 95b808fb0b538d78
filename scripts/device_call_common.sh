# Sourced by the scripts/gpu_*_call.sh scripts (one timed device call each). call_begin sets `name`, the
# deadline (`left` prints the seconds to it; 25 s are kept to pack) and `R` ($OUT/NAME), and starts
# $R/env.txt with the card, the host CPU and Python; call_sweep runs one experiment file as a sweep that
# resumes past every recorded folder under data/measurements/ of this card model (unless WATTCOUNTS_REPEAT is set) and stops
# starting specs `margin` seconds before the deadline; call_pack packs $OUT/NAME.tgz.
#   call_begin NAME SECONDS
#   call_sweep "EXPERIMENT.yaml [MORE.yaml...]" MARGIN_S   (specs in file order)
#   call_pack
#   call_llama_cuda   the CUDA llama.cpp build in /tmp/llama-cuda (`prefix`) with the environment the project's llama.cpp
#                     backends read: unpacked from .llama/llama-cuda-bin.tar.xz.part-* (carry `.llama`) where a call
#                     returned one, else built from .llama-src (~5 min) and returned in parts under $OUT
call_begin() {
  name=$1 deadline=$((SECONDS + $2 - 25))
  R=$OUT/$name
  mkdir -p "$R"
  { nvidia-smi --query-gpu=index,name,driver_version,power.limit,memory.total,temperature.gpu,power.draw,persistence_mode --format=csv
    grep -m1 "model name" /proc/cpuinfo; echo "cpus $(nproc)"; python3 --version; } > "$R/env.txt" 2>&1
}
left() { echo $((deadline - SECONDS)); }
call_sweep() {
  local experiment=$1 margin=$2 recorded=()
  # WATTCOUNTS_REPEAT=1: measure recorded specs again (a repeatability call: the release keeps the rows of the first folder by name on each card model)
  # a folder counts as recorded only if its meter ran on this card model (meter.json's gpu_name): a
  # `hardware: any` spec measured on an H100 is not measured for an H200
  local gpu; gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
  [ -z "${WATTCOUNTS_REPEAT:-}" ] && for d in data/measurements/*/; do
    grep -qF "\"gpu_name\": \"$gpu\"" "$d/meter.json" 2>/dev/null && recorded+=(--recorded "$d")
  done
  [ "$(left)" -gt $((margin + 15)) ] && timeout "$(left)" python3 -m wattcounts_pipeline.cli sweep $experiment --cold-idle-s 10 \
    --out "$R/sweep" "${recorded[@]}" --max-seconds $(($(left) - margin)) \
    ${WATTCOUNTS_SWEEP_ONLY:+--only="$WATTCOUNTS_SWEEP_ONLY"} > "$R/sweep.log" 2>&1
}
call_pack() {
  cp -r /tmp/wattcounts/logs "$R/" 2>/dev/null
  tar czf "$OUT/$name.tgz" -C "$OUT" "$name" && rm -rf "$R"
}
call_llama_cuda() {
  prefix=/tmp/llama-cuda
  if ls .llama/llama-cuda-bin.tar.xz.part-* >/dev/null 2>&1; then
    cat .llama/llama-cuda-bin.tar.xz.part-* | tar xJ -C /tmp
  else
    scripts/build_llamacpp_cuda.sh .llama-src/llama.cpp-0.3.36-src.tar.xz "$prefix" > "$R/build.log" 2>&1
    (cd /tmp && XZ_OPT=-T0 tar cJf - llama-cuda) | split -b 15M - "$OUT/llama-cuda-bin.tar.xz.part-"
  fi
  cp "$prefix/build-info.json" "$R/" 2>/dev/null
  export LLAMA_CPP_LIB_PATH=$prefix/bin LD_LIBRARY_PATH=$prefix/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export WATTCOUNTS_LLAMA_SERVER=$prefix/bin/llama-server WATTCOUNTS_LLAMA_BUILD_INFO=$prefix/build-info.json
  export WATTCOUNTS_HOME=/tmp/wattcounts WATTCOUNTS_RANDOM_GGUF_KEEP=${WATTCOUNTS_RANDOM_GGUF_KEEP:-2}  # 1 where files near the disk (70B: 42 GB)
}
