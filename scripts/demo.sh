#!/usr/bin/env bash
# README command 1: set up, then run the main job end to end on the embedded cohort. Outputs go to runs/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${LACGAN_VENV:-.venv}
export PATH="$PWD/$VENV/bin:$PATH"
export PREFECT_HOME=${PREFECT_HOME:-$PWD/runs/.prefect}
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}
OUT=${1:-runs/demo}
mkdir -p "$OUT"
# The main job as one Prefect flow in ephemeral mode (no server needed): embedded cohort (12 subjects, BP4D
# layout) -> ingest -> align -> LAC-GAN demo training -> JAA-Net + HOG+SVM training -> match-test plan ->
# generation on Dask into sharded Zarr -> scoring -> Table 1 report. Sized for <= 30 min on 2 CPU cores;
# re-running resumes (see docs/pipeline.md). Ends by printing the report's path and Table 1.
lacgan augment --out "$OUT/augment" --preset demo
# Pictures of the data the job ran on: cohort faces with each AU off/on, and the 12 AU regions.
lacgan sheet --root "$OUT/augment/cohort" --out "$OUT/cohort_sheet.png"
lacgan regions --store "$OUT/augment/aligned.zarr" --out "$OUT/regions.png"
echo "demo outputs in $OUT: report in $OUT/augment/report, pictures $OUT/cohort_sheet.png $OUT/regions.png"
