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
block-kib, winograd-min-channels: COMPARABLE) times softloss alone, the setting switched
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

from . import data, models, optim, parallel, primitives
from .autodiff import value_and_grad
from .backend import resolve
from .losses import LOSSES
from .train import predict

# name -> (input shape, optimizer, hyperparameters)
SETUPS = {
    "knet_softmax": ((28, 28, 1), "sgd", {"lr": 0.1}),
    "mnist_cnn": ((28, 28, 1), "adadelta", {}),
    "cifar_cnn": ((32, 32, 3), "rmsprop", {"lr": 1e-4, "decay": 1e-6}),
}
DEFAULT_CASES = ("knet_softmax:100", "mnist_cnn:128", "cifar_cnn:32", "cifar_cnn:128")


def _batch(shape, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, *shape), dtype=np.float32), rng.integers(0, 10, batch_size)


def softloss_stepper(model, batch_size, backend, loss="ce"):
    shape, opt_name, hyper = SETUPS[model]
    init, apply = models.build(model)
    rng = np.random.default_rng(0)
    params = backend.to_device(init(rng, shape))
    opt = optim.build(opt_name, **hyper)
    state = opt.init(params)
    x, y = backend.to_device(list(_batch(shape, batch_size)))
    noise = backend.noise_rng(0, 0) if backend.on_device else rng
    loss_fn = LOSSES[loss]
    loss_and_grad = value_and_grad(lambda p: loss_fn(apply(p, x, train=True, rng=noise), y))

    def step():
        nonlocal params, state
        _, grads = loss_and_grad(params)
        params, state = opt.update(params, grads, state)

    return step


def torch_stepper(model, batch_size, device="cpu"):
    import torch
    from torch import nn

    shape, opt_name, hyper = SETUPS[model]
    torch.manual_seed(0)
    if model == "knet_softmax":
        net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 10))
    elif model == "mnist_cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10),
        )  # fmt: skip
    else:
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3), nn.ReLU(),
            nn.MaxPool2d(2), nn.Dropout(0.25), nn.Flatten(),
            nn.Linear(2304, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10),
        )  # fmt: skip
    net.to(device).train()
    if opt_name == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=hyper["lr"])
    elif opt_name == "adadelta":
        opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    else:  # torch's RMSprop has no Keras time decay; the per-step cost is the same
        opt = torch.optim.RMSprop(net.parameters(), lr=hyper["lr"], alpha=0.9, eps=1e-7)
    x, y = _batch(shape, batch_size)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)  # NCHW, PyTorch's native layout
    y = torch.from_numpy(y).to(device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return step


def jax_stepper(model, batch_size):
    """The same network and optimizer in JAX (stax layers, NHWC), the whole step
    jit-compiled by XLA on the CPU."""
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import stax

    shape, opt_name, hyper = SETUPS[model]

    def conv(filters, padding):
        return [stax.Conv(filters, (3, 3), padding=padding), stax.Relu]

    def dropout(rate):
        return stax.Dropout(1 - rate, mode="train")  # stax's argument is the keep probability

    pool = stax.MaxPool((2, 2), strides=(2, 2))
    if model == "knet_softmax":
        layers = [stax.Flatten, stax.Dense(10)]
    elif model == "mnist_cnn":
        layers = [*conv(32, "VALID"), *conv(64, "VALID"), pool, dropout(0.25), stax.Flatten,
                  stax.Dense(128), stax.Relu, dropout(0.5), stax.Dense(10)]  # fmt: skip
    else:
        layers = [*conv(32, "SAME"), *conv(32, "VALID"), pool, dropout(0.25),
                  *conv(64, "SAME"), *conv(64, "VALID"), pool, dropout(0.25), stax.Flatten,
                  stax.Dense(512), stax.Relu, dropout(0.5), stax.Dense(10)]  # fmt: skip
    init, apply = stax.serial(*layers)
    _, params = init(jax.random.PRNGKey(0), (-1, *shape))
    x, y = (jnp.asarray(a) for a in _batch(shape, batch_size))

    def loss(params, key):
        logits = apply(params, x, rng=key)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

    # Keras' update rules, as softloss.optim has them (RMSprop's time decay left
    # out, as for PyTorch: the per-step cost is the same).
    def update(params, grads, state):
        tree = jax.tree_util.tree_map
        if opt_name == "sgd":
            return tree(lambda p, g: p - hyper["lr"] * g, params, grads), state
        rho = 0.95 if opt_name == "adadelta" else 0.9
        squares = tree(lambda a, g: rho * a + (1 - rho) * g * g, state[0], grads)
        if opt_name == "rmsprop":
            steps = tree(lambda g, a: hyper["lr"] * g / (jnp.sqrt(a) + 1e-7), grads, squares)
            return tree(jnp.subtract, params, steps), (squares, state[1])
        steps = tree(lambda g, a, d: g * jnp.sqrt(d + 1e-7) / jnp.sqrt(a + 1e-7), grads, squares, state[1])
        deltas = tree(lambda d, s: rho * d + (1 - rho) * s * s, state[1], steps)
        return tree(jnp.subtract, params, steps), (squares, deltas)

    @jax.jit
    def train_step(params, state, key):
        key, dropout_key = jax.random.split(key)
        grads = jax.grad(loss)(params, dropout_key)
        return (*update(params, grads, state), key)

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (params, (zeros, zeros), jax.random.PRNGKey(1))

    def step():
        nonlocal carry
        carry = jax.block_until_ready(train_step(*carry))

    return step


def _time_block(step, steps, synchronize):
    synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return time.perf_counter() - start


def project_paper_run(model, batch_size, train_rate, backend, epochs=500, train_size=50_000, eval_size=60_000,
                      augment=True, out=print):  # fmt: skip
    """Projected wall time of `epochs` epochs: train steps at the measured
    rate, the augmentation of each batch, and the per-epoch evaluation of
    train and test sets (forward passes as `train.predict` batches them),
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
        batch = backend.to_device(images[:batch_size].astype(np.float32) / 255)

        def augment_batch():
            data.shift_and_flip(batch, rng)

        augment_batch()  # warm up
        augment_seconds = _time_block(augment_batch, 20, backend.synchronize) / 20 * math.ceil(train_size / batch_size)
    epoch = train_size / train_rate + augment_seconds + eval_seconds
    out(f"projected {epochs}-epoch {model} run at batch {batch_size}: {epochs * epoch / 3600:.2f} h "
        f"({epoch:.1f} s per epoch: train {train_size / train_rate:.1f} s, augmentation "
        f"{augment_seconds:.1f} s, evaluation {eval_seconds:.1f} s)")  # fmt: skip
    return epochs * epoch


def _torch_yardstick(backend, threads):
    """PyTorch eager on softloss' kind of device (on the CPU with `threads` threads)."""
    import torch

    device = "cpu"
    if backend.on_device:
        if not torch.cuda.is_available():
            raise ValueError("softloss runs on a GPU but PyTorch sees none (a CPU build?): use --alone")
        device = "cuda"
    else:
        torch.set_num_threads(threads)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    name = f"torch {torch.__version__} ({device}, {torch.get_num_threads()} threads)"
    return name, (lambda model, batch: torch_stepper(model, batch, device)), sync


def _jax_yardstick(backend, threads):
    """JAX's jit with XLA's own threads, on the CPU only."""
    import jax

    if backend.on_device:
        raise ImportError("JAX is timed on the CPU only")
    return f"jax {jax.__version__} (jit, {jax.default_backend()})", jax_stepper, (lambda: None)


def _yardsticks(backend, threads):
    """[(name, stepper factory, synchronize)] of the installed yardsticks."""
    found = []
    for yardstick in (_torch_yardstick, _jax_yardstick):
        try:
            found.append(yardstick(backend, threads))
        except ImportError:
            pass
    return found


def _choice(choices):
    def parse(text):
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _whole(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number >= 1")
    return int(text)


def _module_setting(module, name, parse):
    return parse, (lambda: getattr(module, name)), (lambda value: setattr(module, name, value))


def _set_block_kib(kib):
    primitives._BLOCK_BYTES = kib << 10


# CPU settings that `--compare` switches between timed blocks of one process:
# name -> (parse a value, read the current one, set one). On a shared machine
# a ratio of a whole bench can move by 0.25 between runs, more than a change
# worth a few percent; alternate blocks in one process see the same machine
# state.
COMPARABLE = {
    "convolution": _module_setting(primitives, "CONVOLUTION", _choice(primitives.CONVOLUTIONS)),
    "pooling": _module_setting(primitives, "POOLING", _choice(primitives.POOLINGS)),
    "cross-entropy": _module_setting(primitives, "CROSS_ENTROPY", _choice(primitives.CROSS_ENTROPIES)),
    "optimizer-update": _module_setting(optim, "UPDATE", _choice(optim.UPDATES)),
    "threads": (_whole, parallel.workers, parallel.set_workers),
    "block-kib": (_whole, lambda: primitives._BLOCK_BYTES >> 10, _set_block_kib),
    "winograd-min-channels": _module_setting(primitives, "WINOGRAD_MIN_CHANNELS", _whole),
}


def parse_comparison(text):
    """'SETTING=A,B[,...]' -> (setting, [values]), the first value the baseline."""
    name, _, listed = text.partition("=")
    if name not in COMPARABLE:
        known = ", ".join(COMPARABLE)
        raise ValueError(f"--compare {text!r}: the setting is one of {known} (as SETTING=A,B)")
    try:
        values = [COMPARABLE[name][0](value) for value in listed.split(",")] if listed else []
    except ValueError as error:
        raise ValueError(f"--compare {text!r}: {error}") from None
    if len(values) < 2 or len(set(values)) < len(values):
        raise ValueError(f"--compare {text!r}: give two or more different values, as {name}=A,B")
    return name, values


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


def run(cases=DEFAULT_CASES, steps=None, repeats=3, alone=False, out=print, backend="numpy", threads=None,
        compare=None):  # fmt: skip
    """Time each case's step in softloss and in every yardstick installed
    (`alone`: softloss only), one block each in turn, `repeats` times;
    on the CPU softloss and PyTorch use `threads` threads (None: as many as BLAS
    has), JAX its own default. `compare` ('SETTING=A,B,...', see COMPARABLE)
    times softloss alone under each value of a CPU setting instead, each
    against the first."""
    cases = [_case(case) for case in cases]
    backend = resolve(backend, out)
    comparison = parse_comparison(compare) if compare is not None else None
    if comparison and backend.on_device:
        raise ValueError("--compare switches CPU settings: run it with --backend numpy")
    if comparison and comparison[0] == "threads" and threads is not None:
        raise ValueError("--threads and --compare threads=... both set the thread count: give one")
    if not backend.on_device and threads is not None:
        parallel.set_workers(threads)
    cpu_threads = None if backend.on_device else parallel.workers()
    out(f"machine: {parallel.cpu_name()}, {os.cpu_count()} CPUs; numpy {np.__version__}")
    on_cpu = f"the CPU, {cpu_threads} threads, blocks of {primitives._BLOCK_BYTES >> 10} KiB"  # its name is above
    out(f"softloss: {backend.name} on {backend.device if backend.on_device else on_cpu}")

    def softloss(model, batch_size):
        return softloss_stepper(model, batch_size, backend)

    if comparison:
        setting, values = comparison
        listed = ", ".join(map(str, values))
        out(f"compare: {setting} = {listed}, each against {values[0]} (one block each in turn)")
        read, write = COMPARABLE[setting][1:]
        contenders = [(str(value), partial(write, value), softloss, backend.synchronize) for value in values]
    else:
        yardsticks = [] if alone else _yardsticks(backend, cpu_threads)
        for name, _, _ in yardsticks:
            out(f"yardstick: {name}")
        contenders = [("softloss", _nothing, softloss, backend.synchronize)]
        contenders += [(name.split()[0], _nothing, factory, sync) for name, factory, sync in yardsticks]
    baseline, others = contenders[0][0], [contender[0] for contender in contenders[1:]]
    widths = {name: max(16, len(name) + 8) for name in (baseline, *others)}
    header = f"{'model':<14}{'batch':>6}{baseline + ' img/s':>{widths[baseline]}}"
    out(header + "".join(f"{name + ' img/s':>{widths[name]}}{'ratio':>8}" for name in others))
    before = read() if comparison else None
    rows = []
    try:
        for model, batch_size in cases:
            n = steps or max(3, round(2048 / batch_size) if model != "knet_softmax" else 200)
            steppers = {name: (prepare, factory(model, batch_size), sync)
                        for name, prepare, factory, sync in contenders}  # fmt: skip
            medians = _medians_in_turns(steppers, n, repeats)
            row = {"model": model, "batch": batch_size}
            row.update({name: n * batch_size / seconds for name, seconds in medians.items()})
            line = f"{model:<14}{batch_size:>6}{row[baseline]:>{widths[baseline]}.0f}"
            for name in others:
                # softloss against a yardstick; under --compare, a value against the first
                row[f"ratio_{name}"] = row[name] / row[baseline] if comparison else row[baseline] / row[name]
                line += f"{row[name]:>{widths[name]}.0f}{row[f'ratio_{name}']:>7.2f}x"
            rows.append(row)
            out(line)
    finally:
        if comparison:
            write(before)
    for row in rows:
        if row["model"] == "cifar_cnn" and not comparison:
            row["projected_seconds"] = project_paper_run("cifar_cnn", row["batch"], row["softloss"], backend, out=out)
    return rows


def _nothing():
    pass


def _case(text):
    """'MODEL:BATCH' -> (model, batch size)."""
    model, _, batch = text.partition(":")
    if model not in SETUPS:
        raise ValueError(f"unknown benchmark model {model!r}; choose from {sorted(SETUPS)}")
    try:
        return model, _whole(batch)
    except ValueError:
        why = f"the batch size is a whole number >= 1, as {model}:128"
        raise ValueError(f"benchmark case {text!r}: {why}") from None
