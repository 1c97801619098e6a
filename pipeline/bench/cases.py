"""The bench's cases: each model with its own optimizer (Knet's and Keras'
examples), on a fixed random batch, as every framework gets it."""

from __future__ import annotations

import numpy as np

# name -> (input shape, optimizer, hyperparameters)
SETUPS = {
    "knet_softmax": ((28, 28, 1), "sgd", {"lr": 0.1}),
    "mnist_cnn": ((28, 28, 1), "adadelta", {}),
    "cifar_cnn": ((32, 32, 3), "rmsprop", {"lr": 1e-4, "decay": 1e-6}),
}
DEFAULT_CASES = ("knet_softmax:100", "mnist_cnn:128", "cifar_cnn:32", "cifar_cnn:128")


def batch(shape, batch_size, seed=0):
    """A fixed random batch of float32 images and labels."""
    rng = np.random.default_rng(seed)
    return rng.random((batch_size, *shape), dtype=np.float32), rng.integers(0, 10, batch_size)


def parse_case(text):
    """'MODEL:BATCH' -> (model, batch size)."""
    model, _, size = text.partition(":")
    if model not in SETUPS:
        raise ValueError(f"unknown benchmark model {model!r}; choose from {sorted(SETUPS)}")
    try:
        return model, whole(size)
    except ValueError:
        why = f"the batch size is a whole number >= 1, as {model}:128"
        raise ValueError(f"benchmark case {text!r}: {why}") from None


def whole(text):
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{text!r} is not a whole number >= 1")
    return int(text)
