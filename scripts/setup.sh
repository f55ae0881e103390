#!/usr/bin/env bash
# Set-up shared by the README's two commands: a virtual environment in .venv with torch and the package.
# Idempotent: a second run only checks. Override the location with LACGAN_VENV.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LACGAN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
PY="$VENV/bin/python"
# A CPU build of torch when none is present (a user's CUDA build is kept; the package asks only for a range).
if ! "$PY" -c "import torch" 2>/dev/null; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
