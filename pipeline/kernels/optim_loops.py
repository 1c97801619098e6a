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
"""

from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(nogil=True, cache=True)


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
    for i in range(p.shape[0]):
        gi = g[i]
        a = gi * gi * one_minus_rho + rho * mean_square[i]
        new_mean_square[i] = a
        new_p[i] = gi / (np.sqrt(a) + eps) * minus_lr + p[i]


@_compiled
def adadelta(
    p, g, mean_square, mean_update, new_p, new_mean_square, new_mean_update, rho, one_minus_rho, eps, minus_lr
):
    for i in range(p.shape[0]):
        gi = g[i]
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
