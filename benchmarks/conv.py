"""Per-layer cost of the CNNs' convolutions: im2col + GEMM ("direct"),
Winograd F(2x2, 3x3) and F(4x4, 3x3), and what `conv.ConvPlan` chooses
("auto": Winograd from 16 input channels in the tiling of fewer products, else
direct with a compiled kernel gradient), on one thread and on every core; and
of their 2x2 max-pools, by NumPy passes over quadrants (what a GPU runs) and by
the compiled loops that the CPU runs.

    python benchmarks/conv.py [--batch 128] [--repeats 5]

For every convolution of mnist_cnn and cifar_cnn, the forward pass and the
backward pass (input, kernel and bias gradients; the first layer's input
needs none) are timed with each algorithm and each thread count, taking turns,
and the best of `repeats` is printed in milliseconds: what each choice costs.
The pools' backward pass is their input gradient.
"""

import argparse
import time

import numpy as np

from pipeline.common import machine
from pipeline.core.primitives import conv, pool
from pipeline.core.settings import SETTINGS
from pipeline.kernels import parallel

# name, input (H, W, C), filters, pads (top, bottom, left, right)
LAYERS = [
    ("mnist_cnn conv1", (28, 28, 1), 32, (0, 0, 0, 0)),
    ("mnist_cnn conv2", (26, 26, 32), 64, (0, 0, 0, 0)),
    ("cifar_cnn conv1", (32, 32, 3), 32, (1, 1, 1, 1)),
    ("cifar_cnn conv2", (32, 32, 32), 32, (0, 0, 0, 0)),
    ("cifar_cnn conv3", (15, 15, 32), 64, (1, 1, 1, 1)),
    ("cifar_cnn conv4", (15, 15, 64), 64, (0, 0, 0, 0)),
]
# name, input (H, W, C)
POOLS = [
    ("mnist_cnn pool", (24, 24, 64)),
    ("cifar_cnn pool1", (30, 30, 32)),
    ("cifar_cnn pool2", (13, 13, 64)),
]


def _best_ms(work, repeats):
    work()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return 1e3 * best


def _time_convolutions(batch, repeats, cores, rng):
    settings = [
        (algorithm, threads)
        for algorithm in ("direct", "winograd2x2", "winograd4x4", "auto")
        for threads in sorted({1, cores})
    ]
    print(f"{'layer':<17}" + "".join(f"{f'{a} x{t} fwd':>20}{'bwd':>7}" for a, t in settings))
    for name, (h, w, c), filters, pads in LAYERS:
        x = rng.random((batch, h, w, c), dtype=np.float32)
        kernel = (rng.random((3, 3, c, filters), dtype=np.float32) - 0.5) / np.float32(3 * np.sqrt(c))
        bias = np.zeros(filters, np.float32)
        line = f"{name:<17}"
        for algorithm, threads in settings:
            SETTINGS.convolution = algorithm
            parallel.set_workers(threads)
            out = conv.conv2d(x, kernel, bias, pads, True)
            g = rng.random(out.shape, dtype=np.float32)
            argnums = (1, 2) if name.endswith("conv1") else (0, 1, 2)
            backward = conv._conv2d_vjp(argnums, out, (x, kernel, bias, pads, True), {})
            forward_ms = _best_ms(lambda: conv.conv2d(x, kernel, bias, pads, True), repeats)
            backward_ms = _best_ms(lambda: backward(g), repeats)
            line += f"{forward_ms:>20.1f}{backward_ms:>7.1f}"
        print(line, flush=True)
    SETTINGS.convolution = "auto"


def _time_pools(batch, repeats, cores, rng):
    settings = [(pooling, threads) for pooling in ("quadrants", "compiled") for threads in sorted({1, cores})]
    print(f"{'pool':<17}" + "".join(f"{f'{p} x{t} fwd':>20}{'bwd':>7}" for p, t in settings))
    for name, (h, w, c) in POOLS:
        x = np.maximum(rng.standard_normal((batch, h, w, c), dtype=np.float32), 0)  # after a relu: ties
        line = f"{name:<17}"
        for pooling, threads in settings:
            SETTINGS.pooling = pooling
            parallel.set_workers(threads)
            out = pool.maxpool2x2(x)
            g = rng.random(out.shape, dtype=np.float32)
            backward = pool._maxpool2x2_vjp(out, x)
            forward_ms = _best_ms(lambda: pool.maxpool2x2(x), repeats)
            backward_ms = _best_ms(lambda: backward(g), repeats)
            line += f"{forward_ms:>20.2f}{backward_ms:>7.2f}"
        print(line, flush=True)
    SETTINGS.pooling = "compiled"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cores = parallel.workers()
    print(f"machine: {machine.cpu_name()}; batch {args.batch}, float32, best of {args.repeats}, milliseconds")
    rng = np.random.default_rng(0)
    _time_convolutions(args.batch, args.repeats, cores, rng)
    _time_pools(args.batch, args.repeats, cores, rng)
    parallel.set_workers(cores)


if __name__ == "__main__":
    main()
