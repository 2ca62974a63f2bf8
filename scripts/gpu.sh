#!/usr/bin/env bash
# One prepared GPU run of bench/gpu.py (< 4 minutes on an H100 / H200), from the repo root:
#   bash scripts/gpu.sh [extra bench/gpu.py args]
# Installs the carried wheels (.whl/: the efficientnet packages icf-lite needs) into /tmp/site
# when present, then writes gpu.json + gpu.md to $OUT (or out/bench/gpu). Prints as it goes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" || echo "gpu.sh: installing .whl/*.whl failed; icf-lite may not build" >&2
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,utilization.gpu --format=csv 2>/dev/null || true
# 230 s hard stop: the JSON is rewritten after every row, so whatever finished is kept.
exec timeout -k 10 230 "$PY" -m bench.gpu --out "${OUT:-out/bench/gpu}" "$@"
