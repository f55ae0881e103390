#!/usr/bin/env bash
# GPU check: generation frames/s (1 GPU; all GPUs through Dask), training s/step (1 GPU; DDP on all), peak GPU
# memory, for LAC-GAN and (when it builds) GANimation, in one table, under 5 minutes. Without CUDA, or with
# --device cpu, the same rows run on the CPU at tiny sizes (the CPU fallback). The work is in bench/gpu_check.py;
# its --help lists the options (--gpus N, --steps, --frames, --rows, --keep, ...). Exit 0 when no row failed.
#
#   bash bench/gpu_check.sh [--device auto|cuda|cpu] [--gpus N] [...]
#
# Python: $PYTHON if set, else this checkout's .venv, else python3 / python on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
if [[ -n "${PYTHON:-}" ]]; then
    python="$PYTHON"
elif [[ -x "$root/.venv/bin/python" ]]; then
    python="$root/.venv/bin/python"
elif command -v python3 >/dev/null 2>&1; then
    python="$(command -v python3)"
elif command -v python >/dev/null 2>&1; then
    python="$(command -v python)"
else
    echo "gpu_check.sh: no Python found (set PYTHON, or create $root/.venv)" >&2
    exit 2
fi

exec "$python" "$here/gpu_check.py" "$@"
