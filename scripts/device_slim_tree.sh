#!/usr/bin/env bash
# Leave out of the working tree, for one lent-device call, what the call does not read, so that a carried
# llama.cpp build (.llama, 45 MB) fits beside the tracked tree in the call's 64 MiB: the packed tables of the
# measurement folders of other card models (their meter.json stays; a call resumes only past folders of its own
# card model), the lm-eval task data and the replayed test traces. Nothing is removed from git; restore after
# the call with `scripts/device_slim_tree.sh --restore`.
#   scripts/device_slim_tree.sh "NVIDIA H100 80GB HBM3"   (the card model the call will run on)
set -eu
cd "$(dirname "$0")/.."
paths=(data/measurements wattcounts_pipeline/quality/data tests/fixtures/traces)
if [ "${1:-}" = "--restore" ]; then
  git checkout -- "${paths[@]}"
  exit 0
fi
card=${1:?usage: scripts/device_slim_tree.sh "GPU NAME" | --restore}
if [ -n "$(git status --porcelain -- "${paths[@]}")" ]; then
  echo "device_slim_tree: uncommitted changes under data/measurements, quality/data or fixtures/traces: commit them first" >&2
  exit 1
fi
for d in data/measurements/*/; do
  grep -qF "\"gpu_name\": \"$card\"" "$d/meter.json" 2>/dev/null || rm -f "$d"*.parquet
done
rm -rf wattcounts_pipeline/quality/data tests/fixtures/traces
echo "tracked files left in the tree: $(git ls-files -z | xargs -0 cat 2>/dev/null | wc -c) bytes"
