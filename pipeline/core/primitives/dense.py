"""The dense layer's primitives: relu and x @ w + b (with a fused relu), its
GEMMs cut into blocks on every core of the CPU."""

from __future__ import annotations

import numpy as np
from autograd.extend import defvjp, defvjp_argnums, primitive

from ...kernels import parallel
from ..backend import array_module
from .blocks import sum_in_order


@primitive
def relu(x):
    return array_module(x).maximum(x, 0)


defvjp(relu, lambda ans, x: lambda g: g * (ans > 0))


def activate(out, relu):
    """In-place bias-free activation of a freshly computed output."""
    if relu:
        array_module(out).maximum(out, 0, out=out)
    return out


def through_activation(g, ans, relu):
    """The cotangent before a fused relu: zero where the output was clipped."""
    return array_module(g).where(ans > 0, g, 0) if relu else g


# A dense layer's GEMMs go to the cores in blocks of about this many
# floating-point operations, cut along the longest of the product's three
# dimensions (a thin cut re-packs the other operand for each block and runs
# narrow kernels); blocks along the inner dimension are partial sums, added in
# block order.
_MATMUL_BLOCK_FLOPS = 64_000_000


def matmul(a, b):
    """a @ b for 2-D arrays; on the CPU in blocks on every core."""
    if array_module(a) is not np:
        return a @ b
    parallel.workers()  # BLAS single-threaded from the first product on, small ones included
    (rows, inner), columns = a.shape, b.shape[1]
    longest = max(rows, inner, columns)
    pieces = min(longest // 16, -(-2 * rows * inner * columns // _MATMUL_BLOCK_FLOPS))
    if pieces <= 1:
        return a @ b
    spans = parallel.spans(longest, 16 * -(-longest // (16 * pieces)))
    if longest == inner:
        parts = parallel.map_blocks(lambda span: a[:, span[0] : span[1]] @ b[span[0] : span[1]], spans)
        return sum_in_order(parts)
    out = np.empty((rows, columns), dtype=np.result_type(a, b))
    if longest == rows:
        parallel.map_blocks(
            lambda span: np.matmul(a[span[0] : span[1]], b, out=out[span[0] : span[1]]), spans
        )
    else:
        parallel.map_blocks(
            lambda span: np.matmul(a, b[:, span[0] : span[1]], out=out[:, span[0] : span[1]]), spans
        )
    return out


@primitive
def linear(x, w, b, *, relu=False, transposed=False):
    """x @ w + b for 2-D x (dense layers), optionally followed by a fused relu.

    transposed=True takes w as (outputs, inputs), Knet's layout, and computes
    x @ w.T + b: one traced node where a transpose would add one, and the
    weight's gradient comes as g.T @ x in w's own memory order (through a
    transpose it came F-ordered, which doubled the optimizer's passes)."""
    out = matmul(x, w.T if transposed else w)
    out += b
    return activate(out, relu)


def _linear_vjp(argnums, ans, args, kwargs):
    x, w = args[:2]
    relu, transposed = kwargs.get("relu", False), kwargs.get("transposed", False)

    def vjp(g):
        g = through_activation(g, ans, relu)
        grads = {
            0: lambda: matmul(g, w if transposed else w.T),
            1: lambda: matmul(g.T, x) if transposed else matmul(x.T, g),
            2: lambda: g.sum(axis=0),
        }
        return tuple(grads[i]() for i in argnums)

    return vjp


defvjp_argnums(linear, _linear_vjp)
