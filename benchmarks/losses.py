"""Per-step cost of each loss on a model's training step, relative to `ce`.

    python benchmarks/losses.py [--model mnist_cnn] [--batch 128] [--repeats 7]

Each loss trains the same model on the same fixed batch (forward, backward,
optimizer update; `pipeline.bench.run.softloss_stepper`); the losses take turns,
one timed block each, `repeats` times, and the medians are compared, so all
see the same machine state.
"""
import argparse
import os
import platform
import statistics

from pipeline.bench.run import _time_block, softloss_stepper
from pipeline.core.backend import resolve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mnist_cnn")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--losses", nargs="+", default=["ce", "ce_keras", "bce", "bce_keras", "nllr", "nllr_keras"])
    args = parser.parse_args()
    backend = resolve("numpy", print)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"{args.model} batch {args.batch}, {args.steps} steps x {args.repeats} blocks per loss")  # fmt: skip
    steppers = {loss: softloss_stepper(args.model, args.batch, backend, loss=loss) for loss in args.losses}
    for step in steppers.values():
        step(), step()  # warm up
    times = {loss: [] for loss in args.losses}
    for _ in range(args.repeats):
        for loss, step in steppers.items():
            times[loss].append(_time_block(step, args.steps, lambda: None) / args.steps)
    base = statistics.median(times["ce"]) if "ce" in times else None
    print(f"{'loss':<12}{'ms/step':>10}{'vs ce':>8}")
    for loss, values in times.items():
        median = statistics.median(values)
        print(f"{loss:<12}{1000 * median:>10.1f}{(f'{median / base:.3f}' if base else '-'):>8}")


if __name__ == "__main__":
    main()
