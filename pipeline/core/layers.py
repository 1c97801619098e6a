"""Layers as `(init, apply)` pairs, composed with `serial` (the JAX stax style).

    init(rng, input_shape) -> (output_shape, params)
    apply(params, x, *, train=False, rng=None) -> y

Shapes include the batch axis as -1; images are NHWC. `rng` is a
`numpy.random.Generator`: init draws weights from it, and in training dropout
draws its masks from it, so one seed fixes a whole run. Parameters are created
in float32 and every apply keeps the input's dtype.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as np

from ..kernels.draws import dropout_mask
from .primitives import conv as conv_op
from .primitives import dense as dense_op
from .primitives import pool as pool_op

DTYPE = np.float32


# ------------------------------------------------------------ initializers
def glorot_uniform(rng, shape, fan_in, fan_out):
    """Keras' default kernel initializer: U(-a, a), a = sqrt(6 / (fan_in + fan_out))."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(DTYPE)


# ------------------------------------------------------------------ layers
def _check_activation(activation):
    if activation not in (None, "relu"):
        raise ValueError(f"activation must be None or 'relu', got {activation!r}")
    return activation == "relu"


def dense(units, activation=None):
    """Fully connected: x @ W + b, W (in, units) glorot-uniform, b zeros.

    `activation="relu"` (Keras' argument) fuses the relu into the same primitive."""
    relu_after = _check_activation(activation)

    def init(rng, input_shape):
        fan_in = input_shape[-1]
        kernel = glorot_uniform(rng, (fan_in, units), fan_in, units)
        return (*input_shape[:-1], units), [kernel, np.zeros(units, DTYPE)]

    def apply(params, x, *, train=False, rng=None):
        kernel, bias = params
        return dense_op.linear(x, kernel, bias, relu=relu_after)

    return init, apply


def _same_pads(kh, kw):
    # TensorFlow's SAME for stride 1: the odd pixel, if any, goes bottom/right.
    return ((kh - 1) // 2, kh // 2, (kw - 1) // 2, kw // 2)


def conv2d(filters, kernel_size=(3, 3), padding="valid", activation=None):
    """2-D convolution, stride 1, NHWC, kernel (kh, kw, C, filters) as in Keras.

    `activation="relu"` (Keras' argument) fuses the relu into the convolution."""
    relu_after = _check_activation(activation)
    kh, kw = kernel_size
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    pads = _same_pads(kh, kw) if padding == "same" else (0, 0, 0, 0)

    def init(rng, input_shape):
        n, h, w, c = input_shape
        h, w = h + pads[0] + pads[1] - kh + 1, w + pads[2] + pads[3] - kw + 1
        if h < 1 or w < 1:
            raise ValueError(f"conv2d {kh}x{kw} ({padding}) does not fit input {input_shape}")
        kernel = glorot_uniform(rng, (kh, kw, c, filters), kh * kw * c, kh * kw * filters)
        return (n, h, w, filters), [kernel, np.zeros(filters, DTYPE)]

    def apply(params, x, *, train=False, rng=None):
        kernel, bias = params
        return conv_op.conv2d(x, kernel, bias, pads, relu_after)

    return init, apply


def _elementwise(fun):
    def init(rng, input_shape):
        return input_shape, []

    def apply(params, x, *, train=False, rng=None):
        return fun(x)

    return init, apply


relu = _elementwise(dense_op.relu)


def maxpool2d(pool_size=(2, 2)):
    """Non-overlapping max-pool; only 2x2 (the Keras examples' size) is provided."""
    if tuple(pool_size) != (2, 2):
        raise ValueError(f"only 2x2 max-pooling is implemented, got {pool_size}")

    def init(rng, input_shape):
        n, h, w, c = input_shape
        return (n, h // 2, w // 2, c), []

    def apply(params, x, *, train=False, rng=None):
        return pool_op.maxpool2x2(x)

    return init, apply


def _flatten_init(rng, input_shape):
    return (input_shape[0], math.prod(input_shape[1:])), []


def _flatten_apply(params, x, *, train=False, rng=None):
    return anp.reshape(x, (anp.shape(x)[0], -1))


flatten = (_flatten_init, _flatten_apply)


def dropout(rate):
    """Inverted dropout (Keras semantics): in training, zero each unit with
    probability `rate` and scale the rest by 1 / (1 - rate); identity otherwise."""
    if not 0 <= rate < 1:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")

    def init(rng, input_shape):
        return input_shape, []

    def apply(params, x, *, train=False, rng=None):
        if not train or rate == 0:
            return x
        if rng is None:
            raise ValueError("dropout in training needs rng (a numpy.random.Generator)")
        return x * dropout_mask(rng, anp.shape(x), rate, DTYPE)

    return init, apply


def serial(*layers):
    """Compose layers left to right; params are one list per layer."""
    inits, applies = zip(*layers)

    def init(rng, input_shape):
        params = []
        for layer_init in inits:
            input_shape, layer_params = layer_init(rng, input_shape)
            params.append(layer_params)
        return input_shape, params

    def apply(params, x, *, train=False, rng=None):
        for layer_apply, layer_params in zip(applies, params):
            x = layer_apply(layer_params, x, train=train, rng=rng)
        return x

    return init, apply
