"""Per-step cost of each loss on a model's training step, relative to `ce`,
and of the loss alone (its value and gradient from the step's logits).

    python benchmarks/losses.py [--model mnist_cnn] [--batch 128] [--repeats 7]

Each loss trains the same model on the same fixed batch (forward, backward,
optimizer update; `pipeline.bench.run.softloss_stepper`); the losses take turns,
one timed block each, `repeats` times, and the medians are compared, so all
see the same machine state. The loss alone is timed the same way, on logits
of the model's class count for the same batch, and set beside ce's step.
"""

import argparse
import os
import statistics

import numpy as np

from pipeline.bench.run import _time_block, softloss_stepper
from pipeline.common.lossnames import LITERATURE
from pipeline.common.machine import blas_kernel, cpu_name
from pipeline.core.autodiff import value_and_grad
from pipeline.core.backend import resolve
from pipeline.core.losses import LOSSES

PAPER = ("ce", "ce_keras", "bce", "bce_keras", "nllr", "nllr_keras")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--losses",
        nargs="+",
        default=[*PAPER, *LITERATURE, "scl_exp", "pc"],
        help="losses to time (default: the paper's, the literature's and the complementary-label ones)",
    )
    args = parser.parse_args()
    backend = resolve("numpy", print)
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, {blas_kernel()}; "
        f"{args.model} batch {args.batch}, {args.steps} steps x {args.repeats} blocks per loss"
    )
    steppers = {loss: softloss_stepper(args.model, args.batch, backend, loss=loss) for loss in args.losses}
    steps = _medians(steppers, args.steps, args.repeats)
    alone = _medians(
        {loss: _loss_alone(loss, args.batch) for loss in args.losses}, 100 * args.steps, args.repeats
    )
    step_ce, alone_ce = steps.get("ce"), alone.get("ce")
    print(f"{'loss':<16}{'ms/step':>9}{'vs ce':>7}{'loss alone (ms)':>17}{'vs ce':>7}{'of ce step':>12}")
    for loss in args.losses:
        print(
            f"{loss:<16}{1000 * steps[loss]:>9.1f}{_ratio(steps[loss], step_ce):>7}{1000 * alone[loss]:>17.3f}"
            f"{_ratio(alone[loss], alone_ce):>7}{(f'{100 * alone[loss] / step_ce:.2f} %' if step_ce else '-'):>12}"
        )


def _medians(steps, count, repeats):
    """{name: median seconds per call}, the names taking turns, one block of `count` calls each."""
    for step in steps.values():
        step(), step()  # warm up
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            times[name].append(_time_block(step, count, lambda: None) / count)
    return {name: statistics.median(values) for name, values in times.items()}


def _loss_alone(loss, batch, classes=10):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((batch, classes)).astype(np.float32)
    labels = rng.integers(0, classes, batch)
    value_grad = value_and_grad(lambda z: LOSSES[loss](z, labels))
    return lambda: value_grad(logits)


def _ratio(value, base):
    return f"{value / base:.3f}" if base else "-"


if __name__ == "__main__":
    main()
