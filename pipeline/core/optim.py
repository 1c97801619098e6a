"""Functional optimizers: state in, state out.

    opt = rmsprop(lr=1e-4, decay=1e-6)
    state = opt.init(params)
    params, state = opt.update(params, grads, state)

The update rules follow Keras 2 (the framework of the paper's examples); `sgd`
is Knet's loop, w -= lr * g. `decay` is Keras' per-iteration time decay,
lr_t = lr / (1 + decay * t) with t the number of updates made so far.
Arrays are never updated in place, and float32 stays float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..kernels import parallel
from . import tree
from .backend import array_module
from .settings import SETTINGS


class OptState(NamedTuple):
    step: int  # updates made so far (Keras' `iterations`)
    slots: tuple  # one tuple of accumulator arrays per parameter array


class Optimizer(NamedTuple):
    init: Callable[[Any], OptState]
    update: Callable[[Any, Any, OptState], tuple[Any, OptState]]


def _check_hyper(name, value, low=0.0, high=float("inf"), low_open=False):
    if not (low < value if low_open else low <= value) or not value < high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be in {lo}{low}, {high}), got {value}")
    return float(value)


def _elementwise(n_slots: int, rule, loop) -> Optimizer:
    """An optimizer that applies `rule(p, g, slots, step) -> (p, slots)` to each
    array; on the CPU as `loop(step) -> (compiled loop, its constants)`, the
    same arithmetic as one pass (pipeline.kernels.optim_loops)."""

    def init(params):
        return OptState(
            0,
            tuple(tuple(array_module(p).zeros_like(p) for _ in range(n_slots)) for p in tree.leaves(params)),
        )

    def update(params, grads, state):
        flat_params, flat_grads = tree.leaves(params), tree.leaves(grads)
        if len(flat_params) != len(flat_grads) or len(flat_params) != len(state.slots):
            raise ValueError("params, grads and optimizer state do not match")
        xp = array_module(*flat_params)
        if xp is not np and len({p.dtype for p in flat_params}) == 1:
            # On a GPU each operation is a kernel launch: apply the (elementwise)
            # rule once to all arrays laid end to end, then hand back views.
            p, slots = rule(
                _joined(xp, flat_params),
                _joined(xp, flat_grads),
                tuple(_joined(xp, kind) for kind in zip(*state.slots)),
                state.step,
            )
            new_params = _split(p, flat_params)
            new_slots = list(zip(*(_split(s, flat_params) for s in slots))) or [()] * len(flat_params)
        else:
            new_params, new_slots = [], []
            for p, g, slots in zip(flat_params, flat_grads, state.slots):
                p, slots = (
                    _on_cpu(rule, loop, p, g, slots, state.step)
                    if xp is np
                    else rule(p, g, slots, state.step)
                )
                new_params.append(p)
                new_slots.append(slots)
        return tree.rebuild(params, new_params), OptState(state.step + 1, tuple(new_slots))

    return Optimizer(init, update)


def _on_cpu(rule, loop, p, g, slots, step):
    """`rule`'s update of one array into fresh arrays, a large array in chunks
    on every core (NumPy's ufuncs run on one); by the compiled `loop` where the
    arrays share a float type. Elementwise: the same bits whatever the chunks."""
    ins = [np.ascontiguousarray(a).reshape(-1) for a in (p, g, *slots)]
    new_p, new_slots = np.empty(p.shape, p.dtype), tuple(np.empty(p.shape, p.dtype) for _ in slots)
    outs = [a.reshape(-1) for a in (new_p, *new_slots)]  # views: fresh arrays are C-ordered
    compiled = SETTINGS.optimizer_update == "compiled" and p.dtype.char in "fd"
    if compiled and all(a.dtype == p.dtype for a in (g, *slots)):
        kernel, constants = loop(step)
        constants = [p.dtype.type(c) if isinstance(c, float) else c for c in constants]  # as NumPy casts them

        def chunk(span):
            part = slice(*span)
            kernel(*(a[part] for a in ins), *(a[part] for a in outs), *constants)
    else:

        def chunk(span):
            part = slice(*span)
            p_part, slot_parts = rule(ins[0][part], ins[1][part], tuple(a[part] for a in ins[2:]), step)
            for out, result in zip(outs, (p_part, *slot_parts)):
                out[part] = result

    parallel.map_blocks(chunk, parallel.spans(p.size, _CHUNK))
    return new_p, new_slots


def _loops():
    """pipeline.kernels.optim_loops, loaded on first use: numba, which a GPU run
    never needs. The CPU updates by these loops, a GPU by the NumPy rules; both
    give the same bits (SETTINGS.optimizer_update "numpy" runs the rules on the
    CPU too, in the same chunks)."""
    from ..kernels import optim_loops

    return optim_loops


# Elements per chunk: large enough that the per-chunk calls cost little, small
# enough that the cores overlap (docs/speed.md has the measurements).
_CHUNK = 1 << 17


def _joined(xp, arrays):
    return xp.concatenate([a.ravel() for a in arrays])


def _split(joined, like):
    """Views of `joined` shaped like the arrays of `like`."""
    views, start = [], 0
    for a in like:
        views.append(joined[start : start + a.size].reshape(a.shape))
        start += a.size
    return views


# The helpers below write into arrays they allocated themselves: the update
# stays functional (inputs untouched) with fewer temporaries per parameter.
def _ema(average, value, rho):
    """rho * average + (1 - rho) * value, reusing the fresh `value` array."""
    value *= 1.0 - rho
    value += rho * average
    return value


def _minus(p, direction, lr):
    """p - lr * direction, reusing the fresh `direction` array."""
    direction *= -lr
    direction += p
    return direction


def _decayed(lr, decay, step):
    return lr / (1.0 + decay * step) if decay else lr


def sgd(lr=0.1, decay=0.0):
    """Knet's plain SGD: w -= lr * g."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)

    def rule(p, g, slots, step):
        return p - _decayed(lr, decay, step) * g, slots

    return _elementwise(0, rule, lambda step: (_loops().sgd, (_decayed(lr, decay, step),)))


def momentum(lr=0.01, momentum=0.9, nesterov=False, decay=0.0):
    """Keras SGD with momentum: v = m*v - lr*g; w += v (nesterov: w += m*v - lr*g)."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)
    mu = _check_hyper("momentum", momentum, high=1.0)

    def rule(p, g, slots, step):
        (velocity,) = slots
        step_g = _decayed(lr, decay, step) * g
        velocity = mu * velocity - step_g
        p = p + (mu * velocity - step_g if nesterov else velocity)
        return p, (velocity,)

    return _elementwise(1, rule, lambda step: (_loops().momentum, (_decayed(lr, decay, step), mu, nesterov)))


def rmsprop(lr=1e-3, rho=0.9, eps=1e-7, decay=0.0):
    """Keras RMSprop: a = rho*a + (1-rho)*g^2; w -= lr_t * g / (sqrt(a) + eps).

    The Keras cifar10_cnn example used lr=1e-4, decay=1e-6."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)
    rho, eps = _check_hyper("rho", rho, high=1.0), _check_hyper("eps", eps, low_open=True)

    def rule(p, g, slots, step):
        (mean_square,) = slots
        mean_square = _ema(mean_square, g * g, rho)
        step_size = array_module(p).sqrt(mean_square)
        step_size += eps
        return _minus(p, g / step_size, _decayed(lr, decay, step)), (mean_square,)

    def loop(step):
        return _loops().rmsprop, (rho, 1.0 - rho, eps, -_decayed(lr, decay, step))

    return _elementwise(1, rule, loop)


def adadelta(lr=1.0, rho=0.95, eps=1e-7, decay=0.0):
    """Keras Adadelta (the Keras mnist_cnn example's optimizer, with these defaults).

    a = rho*a + (1-rho)*g^2; u = g * sqrt(d + eps) / sqrt(a + eps);
    w -= lr_t * u; d = rho*d + (1-rho)*u^2."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)
    rho, eps = _check_hyper("rho", rho, high=1.0), _check_hyper("eps", eps, low_open=True)

    def rule(p, g, slots, step):
        mean_square, mean_update = slots
        xp = array_module(p)
        mean_square = _ema(mean_square, g * g, rho)
        delta = xp.sqrt(mean_update + eps)
        delta /= xp.sqrt(mean_square + eps)
        delta *= g
        mean_update = _ema(mean_update, delta * delta, rho)
        return _minus(p, delta, _decayed(lr, decay, step)), (mean_square, mean_update)

    def loop(step):
        return _loops().adadelta, (rho, 1.0 - rho, eps, -_decayed(lr, decay, step))

    return _elementwise(2, rule, loop)


def adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, decay=0.0):
    """Keras Adam: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t) with t = step + 1;
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lr_t * m / (sqrt(v) + eps)."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)
    beta1, beta2 = _check_hyper("beta1", beta1, high=1.0), _check_hyper("beta2", beta2, high=1.0)
    eps = _check_hyper("eps", eps, low_open=True)

    def corrected_lr(step):
        t = step + 1
        return _decayed(lr, decay, step) * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)

    def rule(p, g, slots, step):
        m, v = slots
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * (g * g)
        return p - corrected_lr(step) * m / (array_module(p).sqrt(v) + eps), (m, v)

    def loop(step):
        return _loops().adam, (beta1, 1.0 - beta1, beta2, 1.0 - beta2, corrected_lr(step), eps)

    return _elementwise(2, rule, loop)


OPTIMIZERS = {
    "sgd": sgd,
    "momentum": momentum,
    "rmsprop": rmsprop,
    "adadelta": adadelta,
    "adam": adam,
}


def build(name, **hyperparameters) -> Optimizer:
    """The optimizer called `name` with the given hyperparameters."""
    try:
        constructor = OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}") from None
    try:
        return constructor(**hyperparameters)
    except TypeError as error:
        raise ValueError(f"bad hyperparameters for optimizer {name!r}: {error}") from None
