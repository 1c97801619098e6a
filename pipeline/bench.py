"""Train-step throughput: softloss (autograd over NumPy or CuPy) beside PyTorch.

    python -m pipeline bench [--cases mnist_cnn:128 ...] [--steps N] [--repeats R]
                             [--backend numpy|cupy|auto]

A step is forward + backward + optimizer update in float32 on a fixed random
batch, with each model's own optimizer (SGD for knet_softmax, Adadelta for
mnist_cnn, RMSprop for cifar_cnn, as in Knet's and Keras' examples). The two
frameworks alternate, one timed block each, `repeats` times, and the median
of each is reported, so both see the same machine state. PyTorch is optional
(`pip install torch`); without it only softloss is timed. With a GPU backend
PyTorch runs on the same GPU, each block ends with a device synchronisation,
and a cifar_cnn case also projects the wall time of the paper's longest run
(NLLR, 500 epochs of 50,000 augmented images plus a 60,000-image evaluation
each epoch).
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import time

import numpy as np

from . import data, models, optim
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
    train and test sets (forward passes in batches of 1000), each timed here."""
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


def run(cases=DEFAULT_CASES, steps=None, repeats=3, with_torch=True, out=print, backend="numpy"):
    backend = resolve(backend, out)
    try:
        import torch

        torch_version = torch.__version__ if with_torch else None
    except ImportError:
        torch_version = None
    torch_device = "cpu"
    if torch_version and backend.on_device:
        if not torch.cuda.is_available():
            raise ValueError("softloss runs on a GPU but PyTorch sees none (a CPU build?): use --no-torch")
        torch_device = "cuda"
    out(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
        f"numpy {np.__version__}; torch {torch_version or 'not installed'}")  # fmt: skip
    out(f"softloss backend: {backend.name} on {backend.device}; torch device: {torch_device}")
    if torch_version and torch_device == "cpu":
        out(f"torch threads: {torch.get_num_threads()}")

    def sync_torch():
        if torch_device == "cuda":
            torch.cuda.synchronize()

    rows = []
    header = f"{'model':<14}{'batch':>6}{'softloss img/s':>16}{'torch img/s':>13}{'ratio':>8}"
    out(header)
    for case in cases:
        model, batch_size = case.split(":")
        batch_size = int(batch_size)
        if model not in SETUPS:
            raise ValueError(f"unknown benchmark model {model!r}; choose from {sorted(SETUPS)}")
        n = steps or max(3, int(round(2048 / batch_size)) if model != "knet_softmax" else 200)
        ours = softloss_stepper(model, batch_size, backend)
        theirs = torch_stepper(model, batch_size, torch_device) if torch_version else None
        for fn in (ours, theirs):
            if fn:
                fn(), fn()  # warm up allocators, caches and kernel caches
        ours_t, theirs_t = [], []
        for _ in range(repeats):
            ours_t.append(_time_block(ours, n, backend.synchronize))
            if theirs:
                theirs_t.append(_time_block(theirs, n, sync_torch))
        ours_rate = n * batch_size / statistics.median(ours_t)
        theirs_rate = n * batch_size / statistics.median(theirs_t) if theirs else None
        ratio = ours_rate / theirs_rate if theirs_rate else None
        rows.append({"model": model, "batch": batch_size, "softloss": ours_rate, "torch": theirs_rate, "ratio": ratio})
        out(f"{model:<14}{batch_size:>6}{ours_rate:>16.0f}"
            f"{(f'{theirs_rate:.0f}' if theirs_rate else '-'):>13}{(f'{ratio:.2f}x' if ratio else '-'):>8}")  # fmt: skip
    for row in rows:
        if row["model"] == "cifar_cnn":
            row["projected_seconds"] = project_paper_run("cifar_cnn", row["batch"], row["softloss"], backend, out=out)
    return rows
