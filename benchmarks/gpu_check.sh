#!/usr/bin/env bash
# What the GPU backend owes on a GPU, in one command: the CuPy half of
# tests/test_backend.py (gradient parity NumPy vs CuPy for every loss, layer,
# model and optimizer, runs, one full-size epoch of CIFAR-10), then the
# benchmark beside PyTorch on the same GPU with the projected 500-epoch run.
#
# Usage, on a machine where CuPy and PyTorch see a GPU:
#   bash benchmarks/gpu_check.sh [OUTDIR]      (default OUTDIR: reports/gpu)
# Wheels in .whl/ (autograd, snakemake, ...) are installed first if present.
set -euo pipefail
out=${1:-reports/gpu}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/softloss-site .whl/*.whl
  export PYTHONPATH=/tmp/softloss-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
python3 -c "import cupy, numpy, torch; print('cupy', cupy.__version__, 'numpy', numpy.__version__, 'torch', torch.__version__)" \
  | tee -a "$out/gpu.txt"
status=0
python3 -m pytest -q -rs -p no:cacheprovider tests/test_backend.py -k "cupy" -s 2>&1 | tee "$out/gpu_tests.log" || status=1
python3 -m pipeline bench --backend cupy --cases knet_softmax:100 mnist_cnn:128 cifar_cnn:32 cifar_cnn:128 \
  --repeats 5 2>&1 | tee "$out/gpu_bench.log" || status=1
exit $status
