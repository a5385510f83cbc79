#!/usr/bin/env bash
# The GPU figures of benchmarks/README.md in one command, on one GPU, under 8 minutes:
# the came_grad update over the single-read floor, the train step over the K-gradient floor
# (`ls`: K task gradients summed) and the RRG / transformer step ratios, all written to
# benchmarks/results/gpu/gpu_check.json (then `python -m benchmarks.report` can print them).
#
#   bash benchmarks/gpu_check.sh      # needs `pip install -e ".[examples,bench]"` and
#                                     # jax[cuda12] (or jax[cuda13]) installed
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/gpu
mkdir -p "$out"
python -c "import jax; d = jax.devices(); print(d); assert d[0].platform == 'gpu', 'no GPU'"
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
timeout 450 python -m benchmarks.gpu_check --repeats 10 --out "$out" | tee "$out/gpu_check.txt"
