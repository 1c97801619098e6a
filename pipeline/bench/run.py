"""Train-step throughput: softloss (autograd over NumPy or CuPy) beside PyTorch.

    python -m pipeline bench [--cases mnist_cnn:128 ...] [--steps N] [--repeats R]
                             [--backend numpy|cupy|auto] [--compare SETTING=A,B]

A step is forward + backward + optimizer update in float32 on a fixed random
batch, with each model's own optimizer (SGD for knet_softmax, Adadelta for
mnist_cnn, RMSprop for cifar_cnn, as in Knet's and Keras' examples). The
frameworks take turns, one timed block each, `repeats` times, and the median
of each is reported, so all see the same machine state. The yardsticks are
optional (`pip install -e '.[bench]'`): PyTorch eager, and on the CPU JAX's
jit; without them only softloss is timed. With a GPU backend
PyTorch runs on the same GPU, each block ends with a device synchronisation,
and a cifar_cnn case also projects the wall time of the paper's longest run
(NLLR, 500 epochs of 50,000 augmented images plus a 60,000-image evaluation
each epoch).

`--compare convolution=auto,winograd2x2` (or pooling, cross-entropy, optimizer-update, threads,
block-kib, winograd-min-channels: pipeline.bench.compare) times softloss alone, the setting switched
between its values block by block in one process: the way to see a change of
a few percent, which the machine's drift between two whole runs hides.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from functools import partial

import numpy as np

from ..common.machine import cpu_name
from ..core import models, optim
from ..core.autodiff import value_and_grad
from ..core.backend import resolve
from ..core.losses import LOSSES
from ..core.settings import SETTINGS
from ..datasets.batches import shift_and_flip
from ..kernels import parallel
from ..runs.inference import predict
from . import yardsticks
from .cases import DEFAULT_CASES, SETUPS, batch, parse_case
from .compare import COMPARABLE, parse_comparison


def softloss_stepper(model, batch_size, backend, loss="ce"):
    shape, opt_name, hyper = SETUPS[model]
    init, apply = models.build(model)
    rng = np.random.default_rng(0)
    params = backend.to_device(init(rng, shape))
    opt = optim.build(opt_name, **hyper)
    state = opt.init(params)
    x, y = backend.to_device(list(batch(shape, batch_size)))
    noise = backend.noise_rng(0, 0) if backend.on_device else rng
    loss_fn = LOSSES[loss]
    loss_and_grad = value_and_grad(lambda p: loss_fn(apply(p, x, train=True, rng=noise), y))

    def step():
        nonlocal params, state
        _, grads = loss_and_grad(params)
        params, state = opt.update(params, grads, state)

    return step


def _time_block(step, steps, synchronize):
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return time.perf_counter() - start


def project_paper_run(
    model,
    batch_size,
    train_rate,
    backend,
    epochs=500,
    train_size=50_000,
    eval_size=60_000,
    augment=True,
    out=print,
):
    """Projected wall time of `epochs` epochs: train steps at the measured
    rate, the augmentation of each batch, and the per-epoch evaluation of
    train and test sets (forward passes as `pipeline.runs.inference.predict` batches them),
    each timed here."""
    shape = SETUPS[model][0]
    init, apply = models.build(model)
    params = backend.to_device(init(np.random.default_rng(0), shape))
    images = (np.random.default_rng(1).random((1000, *shape)) * 255).astype(np.uint8)
    rng = np.random.default_rng(2)

    def evaluate():
        predict(apply, params, images, backend=backend)

    evaluate()  # warm up
    eval_seconds = _time_block(evaluate, 3, backend.synchronize) / 3 / len(images) * eval_size
    augment_seconds = 0.0
    if augment:  # where training does it: on the backend's device
        sample = backend.to_device(images[:batch_size].astype(np.float32) / 255)

        def augment_batch():
            shift_and_flip(sample, rng)

        augment_batch()  # warm up
        augment_seconds = (
            _time_block(augment_batch, 20, backend.synchronize) / 20 * math.ceil(train_size / batch_size)
        )
    epoch = train_size / train_rate + augment_seconds + eval_seconds
    out(
        f"projected {epochs}-epoch {model} run at batch {batch_size}: {epochs * epoch / 3600:.2f} h "
        f"({epoch:.1f} s per epoch: train {train_size / train_rate:.1f} s, augmentation "
        f"{augment_seconds:.1f} s, evaluation {eval_seconds:.1f} s)"
    )
    return epochs * epoch


def _medians_in_turns(steppers, steps, repeats):
    """{name: median seconds of a block of `steps` steps}, the steppers
    (prepare, step, synchronize) taking turns, one block each, `repeats` times."""
    for prepare, step, _ in steppers.values():
        prepare()
        step(), step()  # warm up allocators, caches, kernel caches and jit
    seconds = {name: [] for name in steppers}
    for _ in range(repeats):
        for name, (prepare, step, sync) in steppers.items():
            prepare()
            seconds[name].append(_time_block(step, steps, sync))
    return {name: statistics.median(times) for name, times in seconds.items()}


def _nothing():
    pass


def _contenders(comparison, backend, alone, cpu_threads, out):
    """[(name, prepare, stepper factory, synchronize)]: softloss first, then each
    installed yardstick; under `comparison`, softloss under each setting's value."""

    def softloss(model, batch_size):
        return softloss_stepper(model, batch_size, backend)

    if comparison:
        setting, values = comparison
        listed = ", ".join(map(str, values))
        out(f"compare: {setting} = {listed}, each against {values[0]} (one block each in turn)")
        write = COMPARABLE[setting][2]
        return [(str(value), partial(write, value), softloss, backend.synchronize) for value in values]
    found = [] if alone else yardsticks.installed(backend, cpu_threads)
    for name, _, _ in found:
        out(f"yardstick: {name}")
    if not alone and not found:
        out(
            "yardstick: none installed, so softloss is timed alone and compared with nothing "
            "(pip install -e '.[bench]' for PyTorch and JAX)"
        )
    return [("softloss", _nothing, softloss, backend.synchronize)] + [
        (name.split()[0], _nothing, factory, sync) for name, factory, sync in found
    ]


def _time_cases(cases, contenders, steps, repeats, comparison, out):
    """One row per case: images per second of each contender, and each one's
    ratio (softloss against a yardstick; under --compare, a value against the first)."""
    baseline, others = contenders[0][0], [contender[0] for contender in contenders[1:]]
    widths = {name: max(16, len(name) + 8) for name in (baseline, *others)}
    header = f"{'model':<14}{'batch':>6}{baseline + ' img/s':>{widths[baseline]}}"
    out(header + "".join(f"{name + ' img/s':>{widths[name]}}{'ratio':>8}" for name in others))
    rows = []
    for model, batch_size in cases:
        n = steps or max(3, round(2048 / batch_size) if model != "knet_softmax" else 200)
        steppers = {
            name: (prepare, factory(model, batch_size), sync) for name, prepare, factory, sync in contenders
        }
        medians = _medians_in_turns(steppers, n, repeats)
        row = {
            "model": model,
            "batch": batch_size,
            **{name: n * batch_size / s for name, s in medians.items()},
        }
        line = f"{model:<14}{batch_size:>6}{row[baseline]:>{widths[baseline]}.0f}"
        for name in others:
            row[f"ratio_{name}"] = row[name] / row[baseline] if comparison else row[baseline] / row[name]
            line += f"{row[name]:>{widths[name]}.0f}{row[f'ratio_{name}']:>7.2f}x"
        rows.append(row)
        out(line)
    return rows


def run(
    cases=DEFAULT_CASES,
    steps=None,
    repeats=3,
    alone=False,
    out=print,
    backend="numpy",
    threads=None,
    compare=None,
):
    """Time each case's step in softloss and in every yardstick installed
    (`alone`: softloss only), one block each in turn, `repeats` times;
    on the CPU softloss and PyTorch use `threads` threads (None: as many as BLAS
    has), JAX its own default. `compare` ('SETTING=A,B,...', see
    pipeline.bench.compare) times softloss alone under each value of a CPU
    setting instead, each against the first."""
    cases = [parse_case(case) for case in cases]
    backend = resolve(backend, out)
    comparison = parse_comparison(compare) if compare is not None else None
    if comparison and backend.on_device:
        raise ValueError("--compare switches CPU settings: run it with --backend numpy")
    if comparison and comparison[0] == "threads" and threads is not None:
        raise ValueError("--threads and --compare threads=... both set the thread count: give one")
    if not backend.on_device and threads is not None:
        parallel.set_workers(threads)
    cpu_threads = None if backend.on_device else parallel.workers()
    out(f"machine: {cpu_name()}, {os.cpu_count()} CPUs; numpy {np.__version__}")
    on_cpu = (
        f"the CPU, {cpu_threads} threads, blocks of {SETTINGS.block_bytes >> 10} KiB"  # its name is above
    )
    out(f"softloss: {backend.name} on {backend.device if backend.on_device else on_cpu}")
    contenders = _contenders(comparison, backend, alone, cpu_threads, out)
    before = COMPARABLE[comparison[0]][1]() if comparison else None
    try:
        rows = _time_cases(cases, contenders, steps, repeats, comparison, out)
    finally:
        if comparison:
            COMPARABLE[comparison[0]][2](before)
    for row in rows:
        if row["model"] == "cifar_cnn" and not comparison:
            row["projected_seconds"] = project_paper_run(
                "cifar_cnn", row["batch"], row["softloss"], backend, out=out
            )
    return rows
