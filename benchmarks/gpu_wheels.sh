#!/usr/bin/env bash
# What a GPU machine without internet lacks, made ready here to travel with the
# check (docs/gpu.md): wheels of autograd and snakemake, and what they need
# beyond the machine's image, for its Python 3.12, in .whl/; and with a folder
# holding the two archives of the CIFAR-10 JPEG copy, those in .gpudata/.
#   bash benchmarks/gpu_wheels.sh [CIFAR10_JPEG_DIR]
# Both folders are ignored by git and sized to fit a run's 64 MiB transfer.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON312:-python3.12}
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 12), sys.version' \
  || { echo "gpu_wheels: needs Python 3.12, the GPU image's (set PYTHON312)" >&2; exit 1; }
rm -rf .whl && mkdir .whl
"$python" -m pip wheel --quiet --wheel-dir .whl "autograd>=1.7" "snakemake>=8.20"
# NumPy, the one large wheel, the GPU image holds already (its package list:
# docs/gpu.md); the small ones travel, whatever versions the image has.
rm -f .whl/numpy-*.whl
if [ $# -ge 1 ]; then
  mkdir -p .gpudata/cifar10-jpeg
  cp "$1"/cifar10-jpeg-train.tar.gz "$1"/cifar10-jpeg-test.tar.gz .gpudata/cifar10-jpeg/
fi
du -sh .whl .gpudata 2>/dev/null || true
