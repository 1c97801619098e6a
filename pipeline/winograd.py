"""Winograd F(2x2, 3x3): a 3x3 stride-1 convolution in 2.25x fewer multiplies.

Each 2x2 block of outputs ("tile") is computed from the 4x4 block of inputs
under it as A^T [(G k G^T) * (B^T d B)] A (Lavin and Gray, "Fast Algorithms
for Convolutional Neural Networks", 2016): the 16 products per tile and
channel pair become 16 GEMMs (tiles x C) @ (C x F), against 36 multiplies per
tile in the direct convolution. B, G and A hold only 0, +-1 and +-1/2, so the
transforms are adds of strided views, and float32 error stays near that of
the direct product. The gradients are the same three transforms transposed:
the kernel gradient is 16 GEMMs (C x tiles) @ (tiles x F), the input gradient
16 GEMMs (tiles x F) @ (F x C).

Arrays are NHWC, kernels (3, 3, C, F) as in Keras; inputs arrive padded (the
convolution's own zeros), and a grid of tiles that overhangs an odd output
size reads one extra row or column of zeros. The transforms are written for
one block of images at a time, so that callers can keep a block in cache and
hand blocks to several cores.
"""
from __future__ import annotations

import numpy as np

# The kernel transform G (4x3). B^T and A^T are applied as explicit adds below.
G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])


# Entry (1, 1) of the 16 reaches each of a tile's four outputs exactly once
# through A^T . A: a bias added there is added to every output, in 1/16 of
# the adds of adding it to the output.
BIAS_ENTRY = 1 * 4 + 1


def tiles(out_h, out_w):
    """The grid of 2x2 output tiles covering an (out_h, out_w) output."""
    return -(-out_h // 2), -(-out_w // 2)


def pad_to_tiles(x, out_h, out_w):
    """x (N, out_h + 2, out_w + 2, C) with one zero row / column added where the
    output size is odd, so that every 4x4 input block of the grid exists."""
    th, tw = tiles(out_h, out_w)
    extra_h, extra_w = 2 * th - out_h, 2 * tw - out_w
    if not (extra_h or extra_w):
        return x
    return np.pad(x, ((0, 0), (0, extra_h), (0, extra_w), (0, 0)))


def transform_kernel(kernel):
    """(3, 3, C, F) -> (16, C, F): G k G^T for every channel pair."""
    g = G.astype(kernel.dtype)
    c, f = kernel.shape[2:]
    return np.einsum("ia,abcf,jb->ijcf", g, kernel, g).reshape(16, c, f)


def kernel_gradient(d_transformed):
    """(16, C, F) -> (3, 3, C, F): the gradient through `transform_kernel`."""
    g = G.astype(d_transformed.dtype)
    c, f = d_transformed.shape[1:]
    return np.einsum("ia,ijcf,jb->abcf", g, d_transformed.reshape(4, 4, c, f), g)


def _b_transpose(d0, d1, d2, d3, out):
    """out[i] = sum_r B^T[i, r] d_r for the four input rows (or columns) of a tile."""
    np.subtract(d0, d2, out=out[0])
    np.add(d1, d2, out=out[1])
    np.subtract(d2, d1, out=out[2])
    np.subtract(d1, d3, out=out[3])


def transform_input(x, th, tw):
    """Padded x (n, 2 th + 2, 2 tw + 2, C) -> (16, n * th * tw, C): B^T d B for
    every 4x4 input block, the 16 entries outermost (the batched GEMMs' axis)."""
    n, _, width, c = x.shape
    rows = np.empty((4, n, th, width, c), dtype=x.dtype)
    _b_transpose(*(x[:, r : r + 2 * th : 2] for r in range(4)), out=rows)
    out = np.empty((16, n * th * tw, c), dtype=x.dtype)
    grid = out.reshape(4, 4, n, th, tw, c)
    for i in range(4):
        _b_transpose(*(rows[i][:, :, s : s + 2 * tw : 2] for s in range(4)), out=grid[i])
    return out


def _b_scatter(dv, target):
    """target(r) += sum_i B^T[i, r] dv[i]: the transpose of `_b_transpose`;
    target(r) is the strided view that offset r of the tiles read."""
    target(0)[...] += dv[0]
    target(1)[...] += dv[1] - dv[2] + dv[3]
    target(2)[...] += dv[1] + dv[2] - dv[0]
    target(3)[...] -= dv[3]


def input_gradient(d_transformed, n, th, tw, out):
    """(16, n * th * tw, C) -> adds the gradient through `transform_input` to
    `out` (n, 2 th + 2, 2 tw + 2, C), zeros on entry."""
    c = d_transformed.shape[-1]
    grid = d_transformed.reshape(4, 4, n, th, tw, c)
    rows = np.zeros((4, n, th, out.shape[2], c), dtype=out.dtype)
    for i in range(4):
        _b_scatter(grid[i], lambda s, i=i: rows[i][:, :, s : s + 2 * tw : 2])
    _b_scatter(rows, lambda r: out[:, r : r + 2 * th : 2])
    return out


def transform_output(m, n, th, tw, out):
    """(16, n * th * tw, F) -> out (n, 2 th, 2 tw, F): A^T m A for every tile."""
    f = m.shape[-1]
    m = m.reshape(4, 4, n, th, tw, f)
    # A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], over i, then over j.
    half = (m[0] + m[1] + m[2], m[1] - m[2] - m[3])
    for a in range(2):
        r = half[a]
        np.add(r[0] + r[1], r[2], out=out[:, a::2, 0::2])
        np.subtract(r[1] - r[2], r[3], out=out[:, a::2, 1::2])
    return out


def _a_transpose(u0, u1):
    """The four sums sum_a A^T[a, i] u_a, i = 0..3 (the transpose of A^T's rows)."""
    return u0, u0 + u1, u0 - u1, -u1


def output_gradient(g, th, tw, out):
    """g (n, 2 th, 2 tw, F) -> out (16, n * th * tw, F): the gradient through
    `transform_output` (A g A^T for every tile)."""
    n, f = g.shape[0], g.shape[-1]
    grid = out.reshape(4, 4, n, th, tw, f)
    # over the tile's columns, then its rows
    by_row = [_a_transpose(g[:, a::2, 0::2], g[:, a::2, 1::2]) for a in range(2)]
    for j in range(4):
        for i, value in enumerate(_a_transpose(by_row[0][j], by_row[1][j])):
            grid[i, j][...] = value
    return out
