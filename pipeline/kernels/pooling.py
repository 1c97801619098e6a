"""2x2 max-pooling on the CPU, forward and backward, as compiled (numba) loops.

NumPy computes the pool as passes over four strided quadrants of the input:
three `maximum`s forward, and backward a dozen passes (compare each quadrant
with the pooled value, claim ties for the first, multiply), slower than these
loops on the CNNs' pools (`benchmarks/conv.py`; docs/speed.md). The backward
runs in two loops, as LLVM vectorizes a
loop over channels only when it touches few rows of memory: one finds each
window's winning quadrant (four inputs and the pooled value read, one byte
written), one routes the cotangent to it (one quadrant at a time). Written as
one loop (ten rows) it did not vectorize and ran slower than NumPy.

The results are the same bits as the NumPy passes over quadrants that a GPU
runs: `np.maximum` propagates NaN, the first maximal element of a window
takes the cotangent (ties are common after a relu), and the other three get
g * 0, a signed zero as NumPy's multiply by a False mask gives.
"""

from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(nogil=True, cache=True)


@_compiled
def maxpool(x, out):
    """out[n, y, x, c] = the max of x's 2x2 window at (2y, 2x); an odd last
    row or column of x is left out."""
    for n in range(out.shape[0]):
        for y in range(out.shape[1]):
            for x_ in range(out.shape[2]):
                a, b = x[n, 2 * y, 2 * x_], x[n, 2 * y, 2 * x_ + 1]
                c, d = x[n, 2 * y + 1, 2 * x_], x[n, 2 * y + 1, 2 * x_ + 1]
                pooled = out[n, y, x_]
                for ch in range(pooled.shape[0]):
                    pooled[ch] = np.maximum(np.maximum(a[ch], b[ch]), np.maximum(c[ch], d[ch]))


@_compiled
def _winners(x, ans, winner):
    """winner[n, y, x, c]: the first quadrant (0-3, row-major in the window)
    whose input equals the pooled value; 3 where none does (NaN)."""
    first, second, third, last = np.uint8(0), np.uint8(1), np.uint8(2), np.uint8(3)
    for n in range(ans.shape[0]):
        for y in range(ans.shape[1]):
            for x_ in range(ans.shape[2]):
                a, b = x[n, 2 * y, 2 * x_], x[n, 2 * y, 2 * x_ + 1]
                c = x[n, 2 * y + 1, 2 * x_]
                pooled, won = ans[n, y, x_], winner[n, y, x_]
                for ch in range(pooled.shape[0]):
                    value = pooled[ch]
                    quadrant = third if c[ch] == value else last
                    quadrant = second if b[ch] == value else quadrant
                    won[ch] = first if a[ch] == value else quadrant


@_compiled
def _route(g, winner, dx):
    """dx at each window's winner = g, elsewhere g * 0; an odd last row or
    column of dx is not written."""
    for n in range(g.shape[0]):
        for y in range(g.shape[1]):
            for quadrant in range(4):
                i, j, mine = quadrant // 2, quadrant % 2, np.uint8(quadrant)
                for x_ in range(g.shape[2]):
                    g_row, won, d_row = g[n, y, x_], winner[n, y, x_], dx[n, 2 * y + i, 2 * x_ + j]
                    for ch in range(g_row.shape[0]):
                        d_row[ch] = g_row[ch] * g_row.dtype.type(won[ch] == mine)


def maxpool_gradient(x, ans, g, dx):
    """Write into dx (x's shape) the gradient of the pool `ans` = maxpool(x)
    for its cotangent g; an odd last row or column of dx is left to the caller."""
    winner = np.empty(ans.shape, dtype=np.uint8)
    _winners(x, ans, winner)
    _route(g, winner, dx)
