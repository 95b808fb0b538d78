#!/usr/bin/env bash
# Start this host's Watt Counts Celery workers (dagster-celery), in the foreground until stopped.
#
#   deploy/celery/worker.sh gpu-h100 8     # 8 device workers, one per GPU, on queue measure-gpu-h100
#   deploy/celery/worker.sh cpu 1          # 1 device worker measuring CPU inference, queue measure-cpu
#   deploy/celery/worker.sh --cpu-stages 4 # CPU stages (validation, aggregation, ...): queue dagster, 4 at once
#
# A device worker runs ONE task at a time (solo pool) and sees one GPU (CUDA_VISIBLE_DEVICES), so no two
# measurements ever share a device; WATTCOUNTS_HOST_HARDWARE makes it refuse a spec of other hardware.
# For a tag with -x<N> (N GPUs per configuration) each worker gets N consecutive GPUs.
# Environment: WATTCOUNTS_CELERY_BROKER / _BACKEND (or WATTCOUNTS_CELERY_CONFIG naming another config
# file), DAGSTER_HOME (an instance pointing at the shared Postgres), WATTCOUNTS_STORE (the shared store).
# Extra arguments after `--` go to `celery worker`.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ -d .venv/bin ] && export PATH="$PWD/.venv/bin:$PATH"   # the checkout's venv (scripts/setup.sh), if any
export WATTCOUNTS_EXECUTOR=celery
CONFIG=${WATTCOUNTS_CELERY_CONFIG:-deploy/celery/celery.yaml}
COMMON=(--without-mingle --without-gossip --without-heartbeat)   # no broadcast traffic: any broker works

args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do args+=("$1"); shift; done
[ $# -gt 0 ] && shift   # what is left goes to celery
[ ${#args[@]} -ge 1 ] || { echo "usage: worker.sh TAG [DEVICES] | --cpu-stages [N]  [-- celery args]" >&2; exit 2; }

if [ "${args[0]}" = "--cpu-stages" ]; then
  exec dagster-celery worker start -A dagster_celery.app -y "$CONFIG" -q dagster -n "cpu-stages" \
    -- -P prefork -c "${args[1]:-2}" "${COMMON[@]}" "$@"
fi

tag=${args[0]}
devices=${args[1]:-1}
per_worker=1
if [[ "$tag" =~ -x([0-9]+)$ ]]; then per_worker=${BASH_REMATCH[1]}; fi
# Stop the workers by stopping this script's process group (systemd's default KillMode does).
for ((w = 0; w < devices / per_worker; w++)); do
  gpus=$(seq -s, $((w * per_worker)) $((w * per_worker + per_worker - 1)))
  if [[ "$tag" == gpu* ]]; then export CUDA_VISIBLE_DEVICES=$gpus; else export CUDA_VISIBLE_DEVICES=""; fi
  WATTCOUNTS_HOST_HARDWARE="$tag" dagster-celery worker start -A dagster_celery.app -y "$CONFIG" \
    -q "measure-$tag" -n "measure-$tag-$w" -- -P solo "${COMMON[@]}" "$@" &
done
wait
