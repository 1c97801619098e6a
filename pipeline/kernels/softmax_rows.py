"""Cross-entropy over rows of logits on the CPU, forward and backward, as
compiled (numba) loops around NumPy's own exp and log1p.

The NumPy form (`core.primitives.logspace.cross_entropy`) makes a dozen passes
over (N, C) logits, and over 10 classes NumPy works a row at a time, a visible
share of a `knet_softmax` step (docs/speed.md). Here everything but the transcendental functions is one
loop per pass, and the results are the same bits as the NumPy form's: the
loops add in NumPy's order (`_row_sum`), take the first maximal element
as `argmax` does (NaN first of all), and leave exp and log1p to NumPy, whose
vectorized float32 versions round otherwise than LLVM's.
"""

from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(nogil=True, cache=True)


# NumPy sums longer rows by recursive halving; a recursive function loaded
# from numba's on-disk cache crashed the process, so those keep NumPy's passes.
MAX_CLASSES = 128


@_compiled
def _row_sum(row):
    """row.sum() in NumPy's order for up to 128 elements: eight running sums
    combined as a tree, the rest added in turn, all to the identity +0 (so
    that -0 terms sum to +0)."""
    n = row.shape[0]
    if n < 8:
        total = np.float32(0)  # float32 + a float64 row is float64
        for i in range(n):
            total += row[i]
        return total
    r0, r1, r2, r3, r4, r5, r6, r7 = row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7]
    stop = n - n % 8
    for i in range(8, stop, 8):
        r0, r1, r2, r3 = r0 + row[i], r1 + row[i + 1], r2 + row[i + 2], r3 + row[i + 3]
        r4, r5, r6, r7 = r4 + row[i + 4], r5 + row[i + 5], r6 + row[i + 6], r7 + row[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(stop, n):
        total += row[i]
    return np.float32(0) + total


@_compiled
def _first_max(row):
    """row.argmax(): the first maximal element, or the first NaN."""
    best = 0
    for j in range(1, row.shape[0]):
        if row[best] != row[best]:
            break
        if row[j] > row[best] or row[j] != row[j]:
            best = j
    return best


@_compiled
def shifted_differences(z, onehot, out, top, peak):
    """The forward's first part: with d = z - (z * onehot).sum(axis=1) per
    row, out = d - peak where peak = max(d), at column top."""
    for r in range(z.shape[0]):
        row = out[r]
        for j in range(z.shape[1]):
            row[j] = z[r, j] * onehot[r, j]
        true_logit = _row_sum(row)
        for j in range(z.shape[1]):
            row[j] = z[r, j] - true_logit
        top[r] = _first_max(row)
        peak[r] = row[top[r]]
        for j in range(z.shape[1]):
            row[j] -= peak[r]


@_compiled
def sum_of_others(terms, top, out):
    """out = the row sums of terms with each row's top term left out (the
    max's exp, exactly 1, which log1p adds back)."""
    for r in range(terms.shape[0]):
        terms[r, top[r]] = 0
        out[r] = _row_sum(terms[r])


@_compiled
def shifted_by_max(z, out):
    """out = z - max(z) per row, the gradient's first part."""
    for r in range(z.shape[0]):
        peak = z[r, _first_max(z[r])]
        for j in range(z.shape[1]):
            out[r, j] = z[r, j] - peak


@_compiled
def scaled_softmax_minus_targets(exps, onehot, g):
    """exps = g * (exps / exps.sum(axis=1) - onehot) per row, in place."""
    for r in range(exps.shape[0]):
        total = _row_sum(exps[r])
        for j in range(exps.shape[1]):
            exps[r, j] = g[r] * (exps[r, j] / total - onehot[r, j])


def cross_entropy(z, onehot):
    """Per-row -log softmax(z)_c for (N, C) logits, as `primitives.cross_entropy`."""
    shifted = np.empty_like(z)
    top, peak, others = np.empty(len(z), np.intp), np.empty(len(z), z.dtype), np.empty(len(z), z.dtype)
    shifted_differences(z, onehot, shifted, top, peak)
    np.exp(shifted, out=shifted)
    sum_of_others(shifted, top, others)
    np.log1p(others, out=others)
    return np.add(peak, others, out=others)


def cross_entropy_grad(z, onehot, g):
    """g[:, None] * (softmax(z) - onehot), the VJP of `cross_entropy`."""
    grad = np.empty_like(z)
    shifted_by_max(z, grad)
    np.exp(grad, out=grad)
    scaled_softmax_minus_targets(grad, onehot, g)
    return grad
