#!/usr/bin/env bash
# Step-time scaling and communication of the multi-task train step on the GPUs of one machine
# (the CPU numbers in benchmarks/README.md simulate the devices; this measures real ones).
# Under 8 minutes on a single H100/H200-class node; results in benchmarks/results/gpu/.
#
#   bash benchmarks/gpu_scaling.sh              # needs `pip install -e ".[examples]"` and
#                                               # jax[cuda12] (or jax[cuda13]) installed
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/results/gpu
mkdir -p "$out"
ngpu=$(python -c "import jax; print(len(jax.devices('gpu')))")
echo "GPUs: $ngpu"
counts=""
for n in 1 2 4 8; do if [ "$n" -le "$ngpu" ]; then counts="$counts $n"; fi; done

# Step time on 1, 2, 4, 8 GPUs (as many as there are), both models, K = 2, 3, 8.
timeout 330 python -m benchmarks.bench_scaling --devices $counts --tasks 2 3 8 \
  --methods ls_1bwd ls came mgda --repeats 10 --out "$out" | tee "$out/scaling.txt"

# Bytes per collective on an 8-device mesh of the GPU backend, when there are 8 GPUs.
if [ "$ngpu" -ge 8 ]; then
  timeout 120 python -m benchmarks.bench_comm --tasks 3 --meshes data=8 --out "$out" \
    | tee "$out/comm.txt"
fi
