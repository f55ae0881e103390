#!/usr/bin/env bash
# README command 2: set up, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${LACGAN_VENV:-.venv}
export PREFECT_HOME=${PREFECT_HOME:-$(mktemp -d)/prefect}
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}
exec "$VENV/bin/python" -m pytest -q -rs "$@"
