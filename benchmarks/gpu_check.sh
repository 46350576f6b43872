#!/usr/bin/env bash
# The GPU checks (benchmarks/gpu_check.py), run from the repository root on a CUDA machine with the
# suite installed; the output goes to the terminal and to gpu_check.log. About 8 minutes on one H100.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
export SUITE_DATA_DIR=${SUITE_DATA_DIR:-$(cd .. && pwd)/shared/datasets} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
"$PY" benchmarks/gpu_check.py "$@" 2>&1 | tee gpu_check.log
