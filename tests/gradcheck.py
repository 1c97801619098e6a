"""Test helpers: central finite differences in float64 along random directions, and a reference convolution."""
import autograd
import numpy as np

from pipeline.core.autodiff import value_and_grad


def directional_errors(fun, args, argnum, rng, directions=3, h=1e-5):
    """Relative errors |numeric - analytic| / max(|numeric|, |analytic|) of the
    derivative of scalar `fun(*args)` along random directions of args[argnum]."""
    grad = autograd.grad(fun, argnum)(*args)
    errors = []
    for _ in range(directions):
        v = rng.standard_normal(np.shape(args[argnum]))
        plus, minus = list(args), list(args)
        plus[argnum] = args[argnum] + h * v
        minus[argnum] = args[argnum] - h * v
        numeric = (fun(*plus) - fun(*minus)) / (2 * h)
        analytic = np.sum(grad * v)
        errors.append(abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-300))
    return errors


def params_errors(fun, params, rng, directions=3, h=1e-5):
    """The same for a scalar function of a parameter tree (flat list of arrays)."""
    _, grads = value_and_grad(fun)(params)
    errors = []
    for _ in range(directions):
        vs = [rng.standard_normal(p.shape) for p in params]
        plus = [p + h * v for p, v in zip(params, vs)]
        minus = [p - h * v for p, v in zip(params, vs)]
        numeric = (fun(plus) - fun(minus)) / (2 * h)
        analytic = sum(np.sum(g * v) for g, v in zip(grads, vs))
        errors.append(abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-300))
    return errors


def reference_conv(x, kernel, bias, pads):
    """Plain loops over kernel taps, float64: an independent definition."""
    top, bottom, left, right = pads
    x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, _, filters = kernel.shape
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], ho, wo, filters))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nhwc,cf->nhwf", x[:, i : i + ho, j : j + wo], kernel[i, j])
    return out + bias
