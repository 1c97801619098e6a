#!/usr/bin/env bash
# Everything the GPU path owes on a GPU, in one command, in under 10 minutes:
#   1. every CuPy test (tests/test_backend.py: gradient parity NumPy vs CuPy
#      for every loss, layer, model and optimizer, runs, a full-size epoch of
#      CIFAR-10); a test skipped for want of a GPU fails the check;
#   2. the bench beside PyTorch eager on the same GPU, with the projected
#      500-epoch run;
#   3. a short config/cifar10_jpeg.yaml study (two epochs of seed 1, every
#      loss, GPU jobs) through the whole workflow.
# It writes gpu.txt (machine, versions, time), gpu_tests.log, gpu_bench.log and
# gpu_study.log into OUTDIR (default reports/gpu), one folder to commit.
# Prepare here first (bash benchmarks/gpu_wheels.sh /path/to/cifar10-jpeg),
# then on the GPU machine, from the checkout:
#   bash benchmarks/gpu_check.sh [OUTDIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-reports/gpu}
mkdir -p "$out"
start=$SECONDS
status=0
fail() { echo "gpu_check: $*" | tee -a "$out/gpu.txt" >&2; status=1; }
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install --quiet --no-index --find-links .whl "autograd>=1.7" "snakemake>=8.20" \
    || fail "could not install the carried wheels (.whl/)"
fi
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import cupy, numpy, torch, autograd, snakemake; print('cupy', cupy.__version__, 'numpy', numpy.__version__,
'torch', torch.__version__, 'autograd', autograd.__version__ if hasattr(autograd, '__version__') else '?',
'snakemake', snakemake.__version__)"; } > "$out/gpu.txt" 2>&1 || fail "no GPU, CuPy, PyTorch, autograd or snakemake here"

# One process for the one GPU (and no need of pytest-xdist there): pyproject's addopts left out.
python3 -m pytest -q -rs -o addopts= -p no:cacheprovider tests/test_backend.py -k cupy 2>&1 | tee "$out/gpu_tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "CuPy tests failed"
grep -q "SKIPPED" "$out/gpu_tests.log" && fail "CuPy tests were skipped: $(grep -m1 SKIPPED "$out/gpu_tests.log")"
grep -Eq "[0-9]+ passed" "$out/gpu_tests.log" || fail "no CuPy test passed"

timeout 240 python3 -m pipeline bench --backend cupy --repeats 5 2>&1 | tee "$out/gpu_bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || fail "the GPU bench failed"

if [ -f .gpudata/cifar10-jpeg/cifar10-jpeg-train.tar.gz ]; then
  study=$(mktemp -d)
  SOFTLOSS_MIRROR=$PWD/.gpudata/cifar10-jpeg timeout 300 python3 -m snakemake -s Snakefile -d "$study" \
    --configfile config/cifar10_jpeg.yaml --cores 16 --resources gpu=1 \
    --config 'stage={max_epochs: 2, seeds: [1]}' backend=cupy -- reports/summary.html 2>&1 | tee "$out/gpu_study.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || fail "the short study failed"
  python3 -m pipeline aggregate --runs "$study"/results/cifar10_jpeg/cifar10_jpeg/cifar_cnn/*/seed1 --out "$out/gpu_study.json" \
    >> "$out/gpu_study.log" 2>&1 || fail "the short study left no runs"
else
  fail "no .gpudata/cifar10-jpeg (benchmarks/gpu_wheels.sh DIR): the study did not run"
fi
echo "gpu_check: $((SECONDS - start)) s, status $status" | tee -a "$out/gpu.txt"
exit $status
