"""What subnormal optimizer slots cost: one RMSprop and one Adadelta update of
`cifar_cnn`'s dense layer (2304 x 512, float32) whose slots hold a given share
of subnormal floats (a dead unit's slot decaying toward zero, zero gradient),
against the same update with those slots flushed to zero, which no CPU slows
for. Ratios near 1 mean the CPU (or the loops) takes no penalty; Intel CPUs
take a microcode assist for each float operation on a subnormal.

    python benchmarks/subnormal_slots.py [--share 0.07] [--repeats 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from pipeline.common.machine import cpu_name
from pipeline.core import optim

SIZE = 2304 * 512


def slots_and_grads(share, n_slots, rng):
    """Slots with `share` subnormal (their gradients zero), the rest ordinary."""
    dead = rng.random(SIZE) < share
    slots = [
        np.where(dead, rng.uniform(1e-45, 1e-38, SIZE), 10.0 ** rng.uniform(-10, -4, SIZE))
        for _ in range(n_slots)
    ]
    grads = np.where(dead, 0.0, rng.standard_normal(SIZE) * 1e-3)
    return [s.astype(np.float32) for s in slots], grads.astype(np.float32)


def seconds_per_update(opt, params, grads, slots, repeats):
    state = optim.OptState(0, (tuple(slots),))
    opt.update(params, grads, state)  # compiled, warm
    start = time.perf_counter()
    for _ in range(repeats):
        opt.update(params, grads, state)
    return (time.perf_counter() - start) / repeats


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--share", type=float, default=0.07, help="share of subnormal slots (default: 0.07)")
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    params = [rng.standard_normal(SIZE).astype(np.float32)]
    print(
        f"{cpu_name()}; {SIZE} weights, {args.share:.0%} of slots subnormal; ms per update (flushed: slots zeroed)"
    )
    for name in ("rmsprop", "adadelta"):
        opt = optim.build(name)
        slots, grads = slots_and_grads(args.share, len(opt.init(params).slots[0]), rng)
        flushed = [np.where(s < np.finfo(np.float32).tiny, np.float32(0), s) for s in slots]
        times = {}
        for _ in range(3):  # alternate, so both see the same machine
            for label, these in (("subnormal", slots), ("flushed", flushed)):
                times.setdefault(label, []).append(
                    seconds_per_update(opt, params, [grads], these, args.repeats)
                )
        sub, flat = np.median(times["subnormal"]), np.median(times["flushed"])
        print(f"{name}: {sub * 1e3:.2f} with subnormal slots, {flat * 1e3:.2f} flushed: {sub / flat:.2f}x")


if __name__ == "__main__":
    main()
