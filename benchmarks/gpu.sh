#!/usr/bin/env bash
# The overhead benchmark on CUDA: weights on the GPU, weightwatch's device path
# (torch ops on the device, one host transfer per log), fp32 and bf16, vit_b_16
# and a stack of linear layers of >= 1 billion parameters. Prints the same
# tables as benchmarks/overhead.py and writes them to RESULTS.md under
# "Logging overhead on CUDA (<dtype>)". Needs a CUDA build of torch and a GPU
# with >= 8 GB free (1B fp32 weights are 4 GB). Usage: bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
for dtype in float32 bfloat16; do
  "$PY" benchmarks/overhead.py --device cuda --dtype "$dtype" --repeats 5 \
    --models resnet18 vit_b_16 --sizes 1e7 1e8 1e9 1.2e9 --layer-counts 10 100 1000 --fixed-total 1e8 \
    --section "Logging overhead on CUDA ($dtype)"
done
