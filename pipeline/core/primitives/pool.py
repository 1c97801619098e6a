"""2x2 max-pooling with its VJP: by compiled loops on the CPU, by passes over
the four quadrants on a GPU."""

from __future__ import annotations

import math

import numpy as np
from autograd.extend import defvjp, primitive

from ..backend import array_module
from ..settings import SETTINGS
from .blocks import image_blocks, on_blocks


def _pooling():
    """pipeline.kernels.pooling, loaded on first use: numba, which a GPU run never needs."""
    from ...kernels import pooling

    return pooling


def _pool_quadrants(x):
    """The four strided (N, H//2, W//2, C) views of a 2x2 max-pool; an odd last
    row or column is dropped, as Keras' 'valid' pooling does."""
    ho, wo = x.shape[1] // 2, x.shape[2] // 2
    return [x[:, i : 2 * ho : 2, j : 2 * wo : 2, :] for i in (0, 1) for j in (0, 1)]


def _pool_blocks(x):
    """Blocks of about 1 MiB of input on the CPU; the whole batch on a GPU."""
    if array_module(x) is not np:
        return [(0, x.shape[0])]
    return image_blocks(x.shape[0], x.itemsize * math.prod(x.shape[1:]), SETTINGS.block_bytes // 4)


def _maxpool_by_quadrants(xp, x, out):
    a, b, c, d = _pool_quadrants(x)
    xp.maximum(xp.maximum(a, b), xp.maximum(c, d), out=out)


def _maxpool_gradient_by_quadrants(xp, x, ans, g, dx):
    # Route each cotangent to the first maximal element only, so ties (common
    # after relu) do not count a gradient twice. Every element of the
    # even-sized part of dx is written by exactly one quadrant.
    unclaimed = xp.ones(ans.shape, dtype=bool)
    hit = xp.empty(ans.shape, dtype=bool)
    quadrants = list(zip(_pool_quadrants(x), _pool_quadrants(dx)))
    for quadrant, dquadrant in quadrants[:-1]:
        xp.equal(quadrant, ans, out=hit)
        hit &= unclaimed
        xp.multiply(g, hit, out=dquadrant)
        unclaimed ^= hit  # hit is a subset of unclaimed
    xp.multiply(g, unclaimed, out=quadrants[-1][1])  # what is left is the last's max


def _pool_by_quadrants(xp):
    """A GPU pools by passes over quadrants; the CPU by compiled loops, which
    give the same bits (SETTINGS.pooling "quadrants" runs the passes there too)."""
    return xp is not np or SETTINGS.pooling == "quadrants"


@primitive
def maxpool2x2(x):
    xp = array_module(x)
    out = xp.empty((x.shape[0], x.shape[1] // 2, x.shape[2] // 2, x.shape[3]), dtype=x.dtype)
    by_quadrants = _pool_by_quadrants(xp)

    def block(span):
        x_block, out_block = x[span[0] : span[1]], out[span[0] : span[1]]
        if by_quadrants:
            _maxpool_by_quadrants(xp, x_block, out_block)
        else:
            _pooling().maxpool(x_block, out_block)

    on_blocks(xp, block, _pool_blocks(x))
    return out


def _maxpool2x2_vjp(ans, x):
    def vjp(g):
        xp = array_module(g)
        dx = xp.empty(x.shape, dtype=g.dtype)
        by_quadrants = _pool_by_quadrants(xp)

        def block(span):
            blocks = [a[span[0] : span[1]] for a in (x, ans, g, dx)]
            dx_block = blocks[-1]
            dx_block[:, 2 * ans.shape[1] :] = 0  # an odd last row or column gets nothing
            dx_block[:, :, 2 * ans.shape[2] :] = 0
            if by_quadrants:
                _maxpool_gradient_by_quadrants(xp, *blocks)
            else:
                _pooling().maxpool_gradient(*blocks)

        on_blocks(xp, block, _pool_blocks(x))
        return dx

    return vjp


defvjp(maxpool2x2, _maxpool2x2_vjp)
