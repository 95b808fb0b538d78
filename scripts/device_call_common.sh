# Sourced by the scripts/gpu_*_call.sh scripts (one timed device call each): `name`, `deadline`, `left` and
# `R` are theirs. Runs one experiment file as a sweep that resumes past every recorded folder under
# data/measurements/ (unless WATTCOUNTS_REPEAT is set) and stops starting specs `margin` seconds before the
# deadline, then packs $OUT/NAME.tgz.
#   call_sweep EXPERIMENT.yaml MARGIN_S
#   call_pack
call_sweep() {
  local experiment=$1 margin=$2 recorded=()
  # WATTCOUNTS_REPEAT=1: measure recorded specs again (a repeatability call: the release keeps the rows of the first folder by name)
  [ -z "${WATTCOUNTS_REPEAT:-}" ] && for d in data/measurements/*/; do recorded+=(--recorded "$d"); done
  [ "$(left)" -gt $((margin + 15)) ] && timeout "$(left)" python3 -m wattcounts_pipeline.sweep "$experiment" --cold-idle-s 10 \
    --out "$R/sweep" "${recorded[@]}" --max-seconds $(($(left) - margin)) \
    ${WATTCOUNTS_SWEEP_ONLY:+--only "$WATTCOUNTS_SWEEP_ONLY"} > "$R/sweep.log" 2>&1
}
call_pack() {
  cp -r /tmp/wattcounts/logs "$R/" 2>/dev/null
  tar czf "$OUT/$name.tgz" -C "$OUT" "$name" && rm -rf "$R"
}
