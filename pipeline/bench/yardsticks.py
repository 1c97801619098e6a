"""The yardsticks a softloss step is timed against: PyTorch eager (CPU or GPU)
and, on the CPU, JAX's jit, each with the same network and optimizer. Neither
is a dependency: `pip install -e '.[bench]'`."""

from __future__ import annotations

import contextlib
import math

from .cases import SETUPS, batch


def torch_stepper(model, batch_size, device="cpu"):
    import torch
    from torch import nn

    shape, opt_name, hyper = SETUPS[model]
    torch.manual_seed(0)
    if model == "knet_softmax":
        net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), 10))
    elif model == "mnist_cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 3),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(9216, 128),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(128, 10),
        )
    else:
        net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Dropout(0.25),
            nn.Flatten(),
            nn.Linear(2304, 512),
            nn.ReLU(),
            nn.Dropout(0.5),
            nn.Linear(512, 10),
        )
    net.to(device).train()
    if opt_name == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=hyper["lr"])
    elif opt_name == "adadelta":
        opt = torch.optim.Adadelta(net.parameters(), lr=1.0, rho=0.95, eps=1e-7)
    else:  # torch's RMSprop has no Keras time decay; the per-step cost is the same
        opt = torch.optim.RMSprop(net.parameters(), lr=hyper["lr"], alpha=0.9, eps=1e-7)
    x, y = batch(shape, batch_size)
    x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device)  # NCHW, PyTorch's native layout
    y = torch.from_numpy(y).to(device)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    return step


def _jax_layers(stax, model):
    """The model's layers in JAX's stax, NHWC as softloss has them."""

    def conv(filters, padding):
        return [stax.Conv(filters, (3, 3), padding=padding), stax.Relu]

    def dropout(rate):
        return stax.Dropout(1 - rate, mode="train")  # stax's argument is the keep probability

    pool = stax.MaxPool((2, 2), strides=(2, 2))
    if model == "knet_softmax":
        return [stax.Flatten, stax.Dense(10)]
    if model == "mnist_cnn":
        return [
            *conv(32, "VALID"),
            *conv(64, "VALID"),
            pool,
            dropout(0.25),
            stax.Flatten,
            stax.Dense(128),
            stax.Relu,
            dropout(0.5),
            stax.Dense(10),
        ]
    return [
        *conv(32, "SAME"),
        *conv(32, "VALID"),
        pool,
        dropout(0.25),
        *conv(64, "SAME"),
        *conv(64, "VALID"),
        pool,
        dropout(0.25),
        stax.Flatten,
        stax.Dense(512),
        stax.Relu,
        dropout(0.5),
        stax.Dense(10),
    ]


def _jax_update(jax, jnp, opt_name, hyper):
    """Keras' update rules, as pipeline.core.optim has them (RMSprop's time decay
    left out, as for PyTorch: the per-step cost is the same)."""

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

    return update


def jax_stepper(model, batch_size):
    """The same network and optimizer in JAX (stax layers, NHWC), the whole step
    jit-compiled by XLA on the CPU."""
    import jax
    import jax.numpy as jnp
    from jax.example_libraries import stax

    shape, opt_name, hyper = SETUPS[model]
    init, apply = stax.serial(*_jax_layers(stax, model))
    _, params = init(jax.random.PRNGKey(0), (-1, *shape))
    x, y = (jnp.asarray(a) for a in batch(shape, batch_size))
    update = _jax_update(jax, jnp, opt_name, hyper)

    def loss(params, key):
        logits = apply(params, x, rng=key)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1))

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


def installed(backend, threads):
    """[(name, stepper factory, synchronize)] of the installed yardsticks."""
    found = []
    for yardstick in (_torch_yardstick, _jax_yardstick):
        with contextlib.suppress(ImportError):
            found.append(yardstick(backend, threads))
    return found
