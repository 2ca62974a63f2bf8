#!/usr/bin/env bash
# Every GPU measurement in one prepared run (bench/gpu_all.py: <= 9 minutes, one JSON per step under
# $OUT, each step with its own time budget; a failed step never stops the next), from the repo root:
#   bash scripts/gpu.sh              # on the GPU machine
#   bash scripts/gpu.sh --dry-run    # anywhere: every step on the CPU at tiny size
# The small wheels the machine lacks (pyzmq, the efficientnet packages; `make gpu-wheels` fetches
# them into the ignored .whl/ folder, which travels with the tree) go into /tmp/site with --no-deps:
# the machine's own torch is never touched or reinstalled.
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" || echo "gpu.sh: installing .whl/*.whl failed; steps that need them will say so" >&2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m bench.gpu_all --out "${OUT:-out/gpu_all}" "$@"
