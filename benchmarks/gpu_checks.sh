#!/usr/bin/env bash
# One prepared run for a session that has the GPU machine (device tool `run`), about 5-8 minutes:
# the CUDA tests, then the kernel benchmark (eager vs torch.compile vs Triton, contiguous and
# channels_last). Results land in $OUT (device tool) or benchmarks/results/ (elsewhere).
#   run: bash benchmarks/gpu_checks.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
python -m pytest -q -p no:cacheprovider tests/test_kernels_triton.py tests/test_kernels_integration.py \
    tests/test_kernels.py tests/test_model.py -rs 2>&1 | tee "$out/cuda_tests.log"
python benchmarks/kernels.py --device cuda --out-dir "$out" 2>&1 | tee "$out/kernels_cuda.log"
python benchmarks/kernels.py --device cuda --channels-last --tag channels-last --out-dir "$out" 2>&1 | tee -a "$out/kernels_cuda.log"
