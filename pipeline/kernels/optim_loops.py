"""The optimizers' update rules on the CPU, each one compiled (numba) loop.

As NumPy expressions (`pipeline.core.optim`, what a GPU runs) RMSprop makes
eight passes over each weight array and Adadelta twelve, over temporaries of
their own; one loop makes one (docs/speed.md has the timings). Each
loop is its rule's arithmetic in the rule's order on the array's own float
type (the constants come cast to it, as NumPy casts a Python float beside a
float32 array): the same bits, since a product, sum, quotient and square
root round the same in LLVM as in NumPy and no multiply and add are fused.
The arguments: the weights, the gradient and the slots in, the new weights
and slots out (1-D, contiguous), then the rule's constants.

A slot of a weight whose gradient stays zero (a dead unit's) decays by `rho`
every step, through the subnormal floats on its way to zero. Intel CPUs take
a microcode assist for each float operation on a subnormal, which made RMSprop
several times slower on a network with dead units (docs/speed.md). Where the
gradient is zero and a float32 slot is subnormal, the loops decay the slot in
integers, rounded as the float product rounds, and skip the arithmetic whose
result the zero gradient already decides: the same bits, without the assists.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_compiled = numba.njit(nogil=True, cache=True)
_SMALLEST_NORMAL = 0x00800000  # float32 bit patterns in (0, this) are the positive subnormals


@_compiled
def _grid_factor(rho, slot):
    """(m, k) with rho = m * 2**-k exactly, for decaying float32 subnormals in
    integers; (0, 0), no integer path, for other floats or a rho out of range."""
    if slot.itemsize != 4 or not 0.0 < rho <= 1.0:
        return np.int64(0), np.int64(0)
    fraction, exponent = math.frexp(np.float64(rho))
    shift = 24 - exponent
    if shift > 62:
        return np.int64(0), np.int64(0)
    return np.int64(fraction * (1 << 24)), np.int64(shift)


@_compiled
def _decayed(bits, mantissa, shift):
    """The bits of rho * x for a positive float32 subnormal x, given x's bits and
    rho = mantissa * 2**-shift: the exact product rounded to the nearest
    subnormal, ties to even, as the float multiply rounds it."""
    product = np.int64(bits) * mantissa
    kept = product >> shift
    rest, half = product - (kept << shift), np.int64(1) << (shift - 1)
    if rest > half or (rest == half and kept & 1):
        kept += 1
    return kept


@_compiled
def _subnormal(bits, mantissa):
    return mantissa != 0 and 0 < bits < _SMALLEST_NORMAL


@_compiled
def _finite(bits):
    return bits & 0x7F800000 != 0x7F800000


@_compiled
def _decay(slot, bits, out, out_bits, i, rho, mantissa, shift):
    """out[i] = 0 * 0 * (1 - rho) + rho * slot[i] for a slot that is never -0: in
    integers where slot[i] is subnormal."""
    if _subnormal(bits[i], mantissa):
        out_bits[i] = _decayed(bits[i], mantissa, shift)
    else:
        out[i] = rho * slot[i]


@_compiled
def sgd(p, g, new_p, lr):
    for i in range(p.shape[0]):
        new_p[i] = p[i] - lr * g[i]


@_compiled
def momentum(p, g, velocity, new_p, new_velocity, lr, mu, nesterov):
    for i in range(p.shape[0]):
        step_g = lr * g[i]
        v = mu * velocity[i] - step_g
        new_velocity[i] = v
        new_p[i] = p[i] + (mu * v - step_g if nesterov else v)


@_compiled
def rmsprop(p, g, mean_square, new_p, new_mean_square, rho, one_minus_rho, eps, minus_lr):
    mantissa, shift = _grid_factor(rho, mean_square)
    bits, new_bits = mean_square.view(np.int32), new_mean_square.view(np.int32)
    for i in range(p.shape[0]):
        gi = g[i]
        if gi == 0 and _subnormal(bits[i], mantissa):
            new_bits[i] = _decayed(bits[i], mantissa, shift)
            new_p[i] = gi * minus_lr + p[i]  # gi / (a positive number) is gi
            continue
        a = gi * gi * one_minus_rho + rho * mean_square[i]
        new_mean_square[i] = a
        new_p[i] = gi / (np.sqrt(a) + eps) * minus_lr + p[i]


@_compiled
def adadelta(
    p, g, mean_square, mean_update, new_p, new_mean_square, new_mean_update, rho, one_minus_rho, eps, minus_lr
):
    mantissa, shift = _grid_factor(rho, mean_square)
    bits, new_bits = mean_square.view(np.int32), new_mean_square.view(np.int32)
    update_bits, new_update_bits = mean_update.view(np.int32), new_mean_update.view(np.int32)
    for i in range(p.shape[0]):
        gi = g[i]
        if (
            gi == 0
            and (_subnormal(bits[i], mantissa) or _subnormal(update_bits[i], mantissa))
            and _finite(bits[i])
            and _finite(update_bits[i])
        ):
            # delta, gi times a positive finite number, is gi: both slots only decay.
            _decay(mean_square, bits, new_mean_square, new_bits, i, rho, mantissa, shift)
            _decay(mean_update, update_bits, new_mean_update, new_update_bits, i, rho, mantissa, shift)
            new_p[i] = gi * minus_lr + p[i]
            continue
        a = gi * gi * one_minus_rho + rho * mean_square[i]
        new_mean_square[i] = a
        delta = np.sqrt(mean_update[i] + eps) / np.sqrt(a + eps) * gi
        new_mean_update[i] = delta * delta * one_minus_rho + rho * mean_update[i]
        new_p[i] = delta * minus_lr + p[i]


@_compiled
def adam(p, g, m, v, new_p, new_m, new_v, beta1, one_minus_beta1, beta2, one_minus_beta2, lr_t, eps):
    for i in range(p.shape[0]):
        gi = g[i]
        mi = beta1 * m[i] + one_minus_beta1 * gi
        vi = beta2 * v[i] + one_minus_beta2 * (gi * gi)
        new_m[i], new_v[i] = mi, vi
        new_p[i] = p[i] - lr_t * mi / (np.sqrt(vi) + eps)
