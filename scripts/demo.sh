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
lacgan cohort --out "$OUT/cohort" --subjects 12 --tasks 8 --frames 40 --size 256 --seed 0
lacgan ingest --dataset bp4d --root "$OUT/cohort" --out "$OUT/manifest.parquet"
lacgan align --manifest "$OUT/manifest.parquet" --out "$OUT/aligned.zarr" --size 128
lacgan regions --store "$OUT/aligned.zarr" --out "$OUT/regions.png"
lacgan sheet --root "$OUT/cohort" --out "$OUT/cohort_sheet.png"
# The main job: plan -> LAC-GAN -> detectors -> generation on Dask -> scoring -> Table 1 report, as one Prefect flow
# in ephemeral mode (its own small 64-px cohort, sized for <= 30 min on 2 cores; see docs/pipeline.md).
lacgan augment --out "$OUT/augment" --preset demo
echo "demo outputs in $OUT; the augment report is in $OUT/augment/report"
