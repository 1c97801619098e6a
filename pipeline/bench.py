"""Train-step throughput: softloss (NumPy + autograd) beside PyTorch CPU.

    python -m pipeline bench [--cases mnist_cnn:128 ...] [--steps N] [--repeats R]

A step is forward + backward + optimizer update in float32 on a fixed random
batch, with each model's own optimizer (SGD for knet_softmax, Adadelta for
mnist_cnn, RMSprop for cifar_cnn, as in Knet's and Keras' examples). The two
frameworks alternate, one timed block each, `repeats` times, and the median
of each is reported, so both see the same machine state. PyTorch is optional
(`pip install torch`); without it only softloss is timed.
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time

import numpy as np

from . import models, optim
from .losses import ce
from .autodiff import value_and_grad

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


def softloss_stepper(model, batch_size):
    shape, opt_name, hyper = SETUPS[model]
    init, apply = models.build(model)
    rng = np.random.default_rng(0)
    params = init(rng, shape)
    opt = optim.build(opt_name, **hyper)
    state = opt.init(params)
    x, y = _batch(shape, batch_size)
    loss_and_grad = value_and_grad(lambda p: ce(apply(p, x, train=True, rng=rng), y))

    def step():
        nonlocal params, state
        _, grads = loss_and_grad(params)
        params, state = opt.update(params, grads, state)

    return step


def torch_stepper(model, batch_size):
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
    net.train()
    if opt_name == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=hyper["lr"])
    elif opt_name == "adadelta":
        opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    else:  # torch's RMSprop has no Keras time decay; the per-step cost is the same
        opt = torch.optim.RMSprop(net.parameters(), lr=hyper["lr"], alpha=0.9, eps=1e-7)
    x, y = _batch(shape, batch_size)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # NCHW, PyTorch's native layout
    y = torch.from_numpy(y)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return step


def _time_block(step, steps):
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return time.perf_counter() - start


def run(cases=DEFAULT_CASES, steps=None, repeats=3, with_torch=True, out=print):
    try:
        import torch

        torch_version = torch.__version__ if with_torch else None
    except ImportError:
        torch_version = None
    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"numpy {np.__version__}; torch {torch_version or 'not installed'}")  # fmt: skip
    if torch_version:
        out(f"torch threads: {torch.get_num_threads()}")
    rows = []
    header = f"{'model':<14}{'batch':>6}{'softloss img/s':>16}{'torch img/s':>13}{'ratio':>8}"
    out(header)
    for case in cases:
        model, batch_size = case.split(":")
        batch_size = int(batch_size)
        if model not in SETUPS:
            raise ValueError(f"unknown benchmark model {model!r}; choose from {sorted(SETUPS)}")
        n = steps or max(3, int(round(2048 / batch_size)) if model != "knet_softmax" else 200)
        ours = softloss_stepper(model, batch_size)
        theirs = torch_stepper(model, batch_size) if torch_version else None
        for fn in (ours, theirs):
            if fn:
                fn(), fn()  # warm up allocators and caches
        ours_t, theirs_t = [], []
        for _ in range(repeats):
            ours_t.append(_time_block(ours, n))
            if theirs:
                theirs_t.append(_time_block(theirs, n))
        ours_rate = n * batch_size / statistics.median(ours_t)
        theirs_rate = n * batch_size / statistics.median(theirs_t) if theirs else None
        ratio = ours_rate / theirs_rate if theirs_rate else None
        rows.append({"model": model, "batch": batch_size, "softloss": ours_rate, "torch": theirs_rate, "ratio": ratio})
        out(f"{model:<14}{batch_size:>6}{ours_rate:>16.0f}"
            f"{(f'{theirs_rate:.0f}' if theirs_rate else '-'):>13}{(f'{ratio:.2f}x' if ratio else '-'):>8}")  # fmt: skip
    return rows
