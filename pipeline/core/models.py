"""Models of the study: `build(name, **options) -> (init, apply)`.

    init(rng, input_shape) -> params      input_shape of one example, e.g. (28, 28, 1)
    apply(params, x, *, train=False, rng=None) -> logits (N, n_classes)

`rng` is a `numpy.random.Generator`. Images are NHWC float32.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np

from . import layers as L
from .primitives.dense import linear

__all__ = ["MODELS", "build"]


def _from_layers(layer):
    """Wrap a stax-style layer into the model interface (per-example input shape)."""
    layer_init, layer_apply = layer

    def init(rng, input_shape):
        return layer_init(rng, (-1, *input_shape))[1]

    def apply(params, x, *, train=False, rng=None):
        return layer_apply(params, x, train=train, rng=rng)

    return init, apply


def knet_softmax(n_classes=10):
    """Knet's linear softmax model: predict(w, x) = w[1] * x .+ w[2].

    Weights [0.1 * randn(n_classes, features), zeros(n_classes)], Knet's layout
    (the weight matrix is classes x features)."""

    def init(rng, input_shape):
        features = math.prod(input_shape)
        weight = (0.1 * rng.standard_normal((n_classes, features), dtype=np.float32)).astype(np.float32)
        return [weight, np.zeros(n_classes, np.float32)]

    def apply(params, x, *, train=False, rng=None):
        weight, bias = params
        return linear(anp.reshape(x, (anp.shape(x)[0], -1)), weight, bias, transposed=True)

    return init, apply


def mlp(hidden=64, n_classes=10):
    """One hidden ReLU layer: flatten > dense(hidden, relu) > dense(n_classes)."""
    return _from_layers(L.serial(L.flatten, L.dense(hidden, "relu"), L.dense(n_classes)))


def mnist_cnn(n_classes=10):
    """Keras examples/mnist_cnn.py (1,199,882 parameters for 28x28x1 input)."""
    return _from_layers(
        L.serial(
            L.conv2d(32, (3, 3), activation="relu"),
            L.conv2d(64, (3, 3), activation="relu"),
            L.maxpool2d(),
            L.dropout(0.25),
            L.flatten,
            L.dense(128, activation="relu"),
            L.dropout(0.5),
            L.dense(n_classes),
        )
    )


def cifar_cnn(n_classes=10):
    """Keras examples/cifar10_cnn.py (1,250,858 parameters for 32x32x3 input).

    Its separate Activation('relu') layers are fused into the layer before,
    which computes the same function with one pass less over each activation."""
    return _from_layers(
        L.serial(
            L.conv2d(32, (3, 3), padding="same", activation="relu"),
            L.conv2d(32, (3, 3), activation="relu"),
            L.maxpool2d(),
            L.dropout(0.25),
            L.conv2d(64, (3, 3), padding="same", activation="relu"),
            L.conv2d(64, (3, 3), activation="relu"),
            L.maxpool2d(),
            L.dropout(0.25),
            L.flatten,
            L.dense(512, activation="relu"),
            L.dropout(0.5),
            L.dense(n_classes),
        )
    )


MODELS = {
    "knet_softmax": knet_softmax,
    "mlp": mlp,
    "mnist_cnn": mnist_cnn,
    "cifar_cnn": cifar_cnn,
}


def build(name, **options):
    """(init, apply) of the model called `name`; options go to its constructor."""
    try:
        constructor = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODELS)}") from None
    try:
        return constructor(**options)
    except TypeError as error:
        raise ValueError(f"bad options for model {name!r}: {error}") from None
