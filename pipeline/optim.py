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

from typing import Any, Callable, NamedTuple

import numpy as np

from . import parallel, tree
from .backend import array_module


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


def _elementwise(n_slots: int, rule) -> Optimizer:
    """An optimizer that applies `rule(p, g, slots, step) -> (p, slots)` to each array."""

    def init(params):
        return OptState(0, tuple(tuple(array_module(p).zeros_like(p) for _ in range(n_slots)) for p in tree.leaves(params)))

    def update(params, grads, state):
        flat_params, flat_grads = tree.leaves(params), tree.leaves(grads)
        if len(flat_params) != len(flat_grads) or len(flat_params) != len(state.slots):
            raise ValueError("params, grads and optimizer state do not match")
        xp = array_module(*flat_params)
        if xp is not np and len({p.dtype for p in flat_params}) == 1:
            # On a GPU each operation is a kernel launch: apply the (elementwise)
            # rule once to all arrays laid end to end, then hand back views.
            p, slots = rule(_joined(xp, flat_params), _joined(xp, flat_grads),
                            tuple(_joined(xp, kind) for kind in zip(*state.slots)), state.step)  # fmt: skip
            new_params = _split(p, flat_params)
            new_slots = list(zip(*(_split(s, flat_params) for s in slots))) or [()] * len(flat_params)
        else:
            new_params, new_slots = [], []
            threaded = xp is np and parallel.workers() > 1
            for p, g, slots in zip(flat_params, flat_grads, state.slots):
                p, slots = (_in_chunks if threaded and p.size > _CHUNK else rule)(p, g, slots, state.step)
                new_params.append(p)
                new_slots.append(slots)
        return tree.rebuild(params, new_params), OptState(state.step + 1, tuple(new_slots))

    def _in_chunks(p, g, slots, step):
        """`rule` over chunks on every core, into fresh arrays (NumPy's ufuncs
        run on one). The rule is elementwise: the same bits as in one call."""
        p_flat, g_flat, *slot_flats = (np.ascontiguousarray(a).reshape(-1) for a in (p, g, *slots))
        new_p, new_slots = np.empty(p.shape, p.dtype), tuple(np.empty(s.shape, s.dtype) for s in slots)
        outs = [a.reshape(-1) for a in (new_p, *new_slots)]  # views: fresh arrays are C-ordered

        def chunk(span):
            part = slice(*span)
            p_part, slot_parts = rule(p_flat[part], g_flat[part], tuple(s[part] for s in slot_flats), step)
            for out, result in zip(outs, (p_part, *slot_parts)):
                out[part] = result

        parallel.map_blocks(chunk, parallel.spans(p.size, _CHUNK))
        return new_p, new_slots

    return Optimizer(init, update)


# Elements per chunk: RMSprop on cifar_cnn's 1.2M-weight dense kernel took 1.5-2.0
# ms at 2 threads in chunks of 2^17 or 2^18, against 3.5 ms in one call and
# 2-3 ms in chunks of 2^15 or 2^19 (the per-chunk calls, or less overlap).
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

    return _elementwise(0, rule)


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

    return _elementwise(1, rule)


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

    return _elementwise(1, rule)


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

    return _elementwise(2, rule)


def adam(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, decay=0.0):
    """Keras Adam: lr_t = lr * sqrt(1 - b2^t) / (1 - b1^t) with t = step + 1;
    m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g^2; w -= lr_t * m / (sqrt(v) + eps)."""
    lr, decay = _check_hyper("lr", lr, low_open=True), _check_hyper("decay", decay)
    beta1, beta2 = _check_hyper("beta1", beta1, high=1.0), _check_hyper("beta2", beta2, high=1.0)
    eps = _check_hyper("eps", eps, low_open=True)

    def rule(p, g, slots, step):
        m, v = slots
        xp = array_module(p)
        t = step + 1
        lr_t = _decayed(lr, decay, step) * (1.0 - beta2**t) ** 0.5 / (1.0 - beta1**t)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * (g * g)
        return p - lr_t * m / (xp.sqrt(v) + eps), (m, v)

    return _elementwise(2, rule)


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
