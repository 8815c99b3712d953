#!/usr/bin/env bash
# GPU check of the full profile, about 5 minutes on one H100/H200 (fits in 8):
#   1. benchmarks/gpu_check.py: per notebook one paper-scale grid point for a few epochs, timed
#      (synthetic data in the real on-disk formats; peak GPU memory per step);
#   2. benchmarks/bench_train_throughput.py: training images/s of the full-profile step vs a plain
#      PyTorch loop, with and without AMP / channels-last, PGD-AT and PGD-20 evaluation throughput.
# Usage: benchmarks/gpu_check.sh [OUT_DIR]   (logs go to OUT_DIR, default build/gpu_check)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-build/gpu_check}
mkdir -p "$OUT"
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
export PYTHONPATH="$PWD/lib${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg PYTHONHASHSEED=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
status=0
SECONDS=0
timeout 330 "$PY" benchmarks/gpu_check.py --device cuda --data-dir "$OUT/data" 2>&1 | tee "$OUT/gpu_check.log"
rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && { echo "gpu_check.py exited $rc"; status=1; }
echo "gpu_check.py: ${SECONDS} s"
timeout 140 "$PY" benchmarks/bench_train_throughput.py --device cuda --model resnet18 --n 10000 --epochs 1 \
    --workers 4 2>&1 | tee "$OUT/throughput.log"
rc=${PIPESTATUS[0]}; [ "$rc" -ne 0 ] && { echo "bench_train_throughput.py exited $rc"; status=1; }
echo "total: ${SECONDS} s"
rm -rf "$OUT/data"
exit $status
