"""Where a CPU training step's time goes: a timer around every primitive's
forward and backward call (convolutions, dense layers, max-pools), dropout's
mask draws and the optimizer's update, in the step that `pipeline bench` times.

    python benchmarks/step_shares.py [--cases cifar_cnn:128 ...] [--steps 30] [--layers]

Prints milliseconds per step and the share of the step for each kind, slowest
first; `--layers` splits the convolutions by layer. "rest" is what no timer
covers: autograd's tracing, the loss, dropout's multiply, flattening. The
timers add a few microseconds a call, so the step runs a little slower than in
the bench. Run it twice: a shared host moves figures between runs.
"""

import argparse
import collections
import contextlib
import time

from autograd.core import primitive_vjps
from autograd.extend import defvjp_argnums, primitive

from pipeline.bench import run as bench_run
from pipeline.common import machine
from pipeline.core import backend, layers, optim
from pipeline.core.primitives import conv, dense, pool
from pipeline.kernels import parallel


def _timed(fun, spent, key):
    def timed_call(*args, **kwargs):
        start = time.perf_counter()
        result = fun(*args, **kwargs)
        spent[key] += time.perf_counter() - start
        return result

    return timed_call


def _conv_key(kind, x, kernel):
    return f"{kind} {'x'.join(map(str, x.shape[1:]))} -> {kernel.shape[3]}"


def _timed_primitive(wrapped, spent, kind, by_layer):
    """A copy of an autograd primitive whose forward and vjp calls add to `spent`."""
    key = (lambda x, *rest: _conv_key(kind, x, rest[0])) if by_layer else (lambda *args: kind)

    def forward(*args, **kwargs):
        return _timed(wrapped.fun, spent, key(*args) + " fwd")(*args, **kwargs)

    copy = primitive(forward)
    vjp_maker = primitive_vjps[wrapped]  # autograd's table of vjp makers, keyed by primitive
    defvjp_argnums(
        copy,
        lambda argnums, ans, args, kwargs: _timed(
            vjp_maker(argnums, ans, args, kwargs), spent, key(*args) + " bwd"
        ),
    )
    return copy


@contextlib.contextmanager
def timers(spent, by_layer=False):
    """Timers in place while inside: the layers and the bench look these names up at call time."""
    saved = [
        (conv, "conv2d"),
        (dense, "linear"),
        (pool, "maxpool2x2"),
        (layers, "dropout_mask"),
        (optim, "build"),
    ]
    originals = [getattr(module, name) for module, name in saved]
    build = optim.build

    def build_timed(*args, **kwargs):
        opt = build(*args, **kwargs)
        return opt._replace(update=_timed(opt.update, spent, "optimizer"))

    conv.conv2d = _timed_primitive(conv.conv2d, spent, "conv", by_layer)
    dense.linear = _timed_primitive(dense.linear, spent, "dense", False)
    pool.maxpool2x2 = _timed_primitive(pool.maxpool2x2, spent, "max-pool", False)
    layers.dropout_mask = _timed(layers.dropout_mask, spent, "dropout masks")
    optim.build = build_timed
    try:
        yield
    finally:
        for (module, name), original in zip(saved, originals):
            setattr(module, name, original)


def shares(model, batch_size, steps, by_layer=False, warmup=5):
    """(milliseconds per step, [(kind, milliseconds per step)] slowest first, 'rest' last)."""
    spent = collections.defaultdict(float)
    with timers(spent, by_layer):
        step = bench_run.softloss_stepper(model, batch_size, backend.NUMPY)
        for _ in range(warmup):
            step()
        spent.clear()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        total = time.perf_counter() - start
    kinds = sorted(spent.items(), key=lambda item: -item[1])
    kinds.append(("rest", total - sum(spent.values())))
    return 1e3 * total / steps, [(kind, 1e3 * seconds / steps) for kind, seconds in kinds]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        default=["mnist_cnn:128", "cifar_cnn:32", "cifar_cnn:128"],
        metavar="MODEL:BATCH",
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--layers", action="store_true", help="split the convolutions by layer")
    args = parser.parse_args()
    machine.reuse_freed_memory()
    print(f"{machine.cpu_name()}, {parallel.workers()} threads")
    for case in args.cases:
        model, batch = case.split(":")
        per_step, kinds = shares(model, int(batch), args.steps, args.layers)
        print(f"\n{model}, batch {batch}: {per_step:.1f} ms a step ({args.steps} steps)")
        for kind, ms in kinds:
            print(f"  {kind:<28}{ms:8.2f} ms {100 * ms / per_step:6.1f} %")


if __name__ == "__main__":
    main()
