#!/usr/bin/env bash
# Set up, register the default experiment's partitions and start the Dagster UI on 127.0.0.1:3000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export DAGSTER_HOME=${DAGSTER_HOME:-$PWD/.dagster_home}
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp .dagster/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
.venv/bin/wattcounts register
exec .venv/bin/dagster dev -h 127.0.0.1 -p "${PORT:-3000}" -w workspace.yaml
