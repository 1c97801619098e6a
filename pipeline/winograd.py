"""Winograd F(m x m, 3x3): a 3x3 stride-1 convolution in fewer multiplies.

Each m x m block of outputs ("tile") is computed from the (m+2) x (m+2)
block of inputs under it as A^T [(G k G^T) * (B^T d B)] A (Lavin and Gray,
"Fast Algorithms for Convolutional Neural Networks", 2016): the (m+2)^2
products per tile and channel pair become (m+2)^2 GEMMs (tiles x C) @ (C x F),
against 9 m^2 multiplies per tile in the direct convolution. The gradients are
the same three transforms transposed: the kernel gradient is (m+2)^2 GEMMs
(C x tiles) @ (tiles x F), the input gradient (tiles x F) @ (F x C).

Two tilings:
- F(2x2, 3x3): 16 products per 4 outputs, 2.25x fewer multiplies. B, G and A
  hold only 0, +-1 and +-1/2, so float32 error stays near the direct product's.
- F(4x4, 3x3): 36 products per 16 outputs, 4x fewer. Its transforms scale by
  up to 8 (interpolation points 0, +-1, +-2), so float32 error grows several
  fold, still far below what training notices.

The GEMMs go to BLAS; the transforms are compiled (numba) loops over tiles,
with the bias, the relu and its mask fused in: written with NumPy, each
transform was a dozen passes over memory and cost about what the saved
multiplies did. A tile is transformed in steps through small buffers, each
step a loop over channels that touches at most eight rows of memory, one such
loop per enclosing loop body, and constants of the array's own float type:
that is what LLVM vectorizes (otherwise it runs one channel at a time, or in
float64, 2-6x slower). No fast-math: every float operation happens in the
order written, so a result is the same bits on every run.

Arrays are NHWC, kernels (3, 3, C, F) as in Keras; inputs arrive padded (the
convolution's own zeros). A grid of tiles that overhangs the output reads
zeros beyond the input (a tile's block copied into a buffer, instead of a
padded copy of every image) and drops the outputs it would write there.
The transforms work on one block of images at a time, so that callers can
keep a block in cache and hand blocks to several cores (the loops release
the GIL).

A transform reads or writes a tile's (m+2)^2 entries in as many planes. Planes
stored back to back lie tiles x channels x itemsize apart, on the CNNs here a
multiple of 512 bytes and mostly of 4 KiB: then the entries of a tile share
their L1 cache sets and their addresses' low twelve bits, and the transforms
ran 1.1-1.8x slower. So the planes are views into arrays with an odd number
of tile rows per plane (`planes`): the compiled loops take the whole array
(numba compiles a loop over a non-contiguous view 2x slower), and NumPy, the
GEMMs included, sees only the tiles.
"""
from __future__ import annotations

import numba
import numpy as np

_compiled = numba.njit(nogil=True, cache=True)


class Tiling:
    """F(m x m, 3x3): the kernel transform G ((m+2) x 3) and the compiled
    input and output transforms and their gradients (B^T and A^T are written
    out in those loops)."""

    def __init__(self, m, kernel_transform, loops):
        self.m, self.entries = m, (m + 2) ** 2
        self.G = np.array(kernel_transform)
        # Entry (1, 1) is the one that A^T . A carries to each of a tile's
        # outputs with weight 1 (column 1 of A^T is all ones): a tile's output
        # gradient sums there, so the bias gradient is the sum of that entry.
        self.bias_entry = (m + 2) + 1
        self._transform_input, self._input_gradient, self._transform_output, self._output_gradient = loops

    def __repr__(self):
        return f"F({self.m}x{self.m}, 3x3)"

    def tiles(self, out_h, out_w):
        """The grid of m x m output tiles covering an (out_h, out_w) output."""
        return -(-out_h // self.m), -(-out_w // self.m)

    def products(self, out_h, out_w):
        """Elementwise products per channel pair and image: what the GEMMs cost."""
        th, tw = self.tiles(out_h, out_w)
        return self.entries * th * tw

    # Both kernel maps as two small GEMMs over all channel pairs at once: 20-35x
    # faster than the same contraction by np.einsum, which loops in C and cost
    # 13 % of a cifar_cnn step at batch 32 (three layers, three maps a step).
    def transform_kernel(self, kernel):
        """(3, 3, C, F) -> ((m+2)^2, C, F): G k G^T for every channel pair."""
        g = self.G.astype(kernel.dtype)
        side, (c, f) = self.m + 2, kernel.shape[2:]
        rows = (g @ kernel.reshape(3, 3 * c * f)).reshape(side, 3, c * f)  # G k
        return np.matmul(g, rows).reshape(self.entries, c, f)  # (G k) G^T, per row of G k

    def kernel_gradient(self, d_transformed):
        """((m+2)^2, C, F) -> (3, 3, C, F): the gradient through `transform_kernel`."""
        g = self.G.astype(d_transformed.dtype)
        side, (c, f) = self.m + 2, d_transformed.shape[1:]
        rows = (g.T @ d_transformed.reshape(side, side * c * f)).reshape(3, side, c * f)  # G^T d
        return np.matmul(g.T, rows).reshape(3, 3, c, f)  # (G^T d) G, per row of G^T d

    def planes(self, tiles, channels, dtype):
        """An uninitialized ((m+2)^2, tiles, channels) array, its planes an odd
        number of tile rows apart (see the module's docstring)."""
        return self._spaced(tiles, channels, dtype)[:, :tiles]

    def _spaced(self, tiles, channels, dtype):
        """The C-ordered array behind `planes`, for the loops that fill it."""
        return np.empty((self.entries, tiles | 1, channels), dtype)

    def multiply(self, transformed, matrices):
        """The batched GEMMs: ((m+2)^2, tiles, K) @ ((m+2)^2, K, N), into `planes`."""
        out = self.planes(transformed.shape[1], matrices.shape[2], np.result_type(transformed, matrices))
        return np.matmul(transformed, matrices, out=out)

    def transform_input(self, x, th, tw):
        """Padded x (n, H + 2, W + 2, C) -> ((m+2)^2, n th tw, C): B^T d B for
        every input block of a (th, tw) grid of tiles, the entries outermost
        (the batched GEMMs' axis)."""
        tiles = x.shape[0] * th * tw
        out = self._spaced(tiles, x.shape[3], x.dtype)
        self._transform_input(x, th, tw, out)
        return out[:, :tiles]

    def input_gradient(self, d_transformed, th, tw, out):
        """((m+2)^2, n th tw, C) -> adds the gradient through `transform_input`
        to `out` (n, H + 2, W + 2, C)."""
        self._input_gradient(_whole(d_transformed), th, tw, out)
        return out

    def transform_output(self, m, bias, relu, out):
        """((m+2)^2, n th tw, F) -> out (n, H, W, F): A^T m A for every tile plus
        the bias, through a relu if `relu`; outputs of an overhanging grid dropped."""
        self._transform_output(_whole(m), bias, relu, *self.tiles(out.shape[1], out.shape[2]), out)
        return out

    def output_gradient(self, g, ans, relu, th, tw):
        """g (n, H, W, F) -> ((m+2)^2, n th tw, F): the gradient through
        `transform_output` (A g A^T for every tile), g taken as zero where the
        relu's output `ans` was not positive if `relu`."""
        tiles = g.shape[0] * th * tw
        out = self._spaced(tiles, g.shape[3], g.dtype)
        self._output_gradient(g, ans, relu, th, tw, out)
        return out[:, :tiles]


def _whole(planes):
    """For the compiled loops that read `planes`: the C-ordered array behind a
    view made by `Tiling.planes` (they touch only its first rows), `planes`
    itself if it is C-ordered, else a C-ordered copy."""
    if planes.flags.c_contiguous:
        return planes
    whole = planes.base
    if (whole is None or not whole.flags.c_contiguous or whole.ctypes.data != planes.ctypes.data
            or whole.strides != planes.strides or whole.shape[::2] != planes.shape[::2]):  # fmt: skip
        return np.ascontiguousarray(planes)
    return whole


# An overhanging tile's block is copied in and added back by loops over
# channels, which LLVM vectorizes: as slice expressions numba walks every
# element through a generic indexer, and such a tile cost 2-3.4x a whole one.
@_compiled
def _input_block(x, n, r, s, side, block):
    """Image n of x and the corner (r, s) of a tile's side x side input block;
    for a tile that overhangs x, the block copied into `block` with zeros
    beyond x, and its corner (0, 0)."""
    rows, columns = min(side, x.shape[1] - r), min(side, x.shape[2] - s)
    if rows == side and columns == side:
        return x[n], r, s
    block[...] = 0
    for i in range(rows):
        for j in range(columns):
            to, source = block[i, j], x[n, r + i, s + j]
            for ch in range(block.shape[2]):
                to[ch] = source[ch]
    return block, 0, 0


@_compiled
def _gradient_block(out, n, r, s, side, block):
    """Where a tile adds its input gradient: image n of `out` and the corner
    (r, s); for a tile that overhangs `out`, `block` zeroed and (0, 0), for
    `_add_overhang` to add back. Last: whether it overhangs."""
    if r + side <= out.shape[1] and s + side <= out.shape[2]:
        return out[n], r, s, False
    block[...] = 0
    return block, 0, 0, True


@_compiled
def _add_overhang(block, out, n, r, s):
    """Adds a tile's input gradient, gathered in `block`, where its block lay in
    image n of `out`: the counterpart of `_input_block`."""
    rows, columns = min(block.shape[0], out.shape[1] - r), min(block.shape[1], out.shape[2] - s)
    for i in range(rows):
        for j in range(columns):
            to, source = out[n, r + i, s + j], block[i, j]
            for ch in range(block.shape[2]):
                to[ch] += source[ch]


@_compiled
def _constants(dtype):
    """0..8 in `dtype`: a float32 loop times a Python int computes in float64."""
    t = dtype.type
    return t(0), t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(8)


# F(2x2, 3x3). B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
# A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].


@_compiled
def _b_transpose_2x2(d0, d1, d2, d3):
    """sum_r B^T[i, r] d_r, i = 0..3."""
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@_compiled
def _b_2x2(v0, v1, v2, v3):
    """sum_i B^T[i, r] v_i, r = 0..3: the transpose of `_b_transpose_2x2`."""
    return v0, v1 - v2 + v3, v2 + v1 - v0, -v3


@_compiled
def _a_transpose_2x2(m0, m1, m2, m3):
    """sum_i A^T[a, i] m_i, a = 0, 1."""
    return m0 + m1 + m2, m1 - m2 - m3


@_compiled
def _a_2x2(u0, u1):
    """sum_a A^T[a, i] u_a, i = 0..3: the transpose of `_a_transpose_2x2`."""
    return u0, u0 + u1, u0 - u1, -u1


@_compiled
def _transform_input_2x2(x, th, tw, out):
    half = np.empty((4, 4, x.shape[3]), x.dtype)  # B^T over a tile's columns, row by row
    block = np.empty((4, 4, x.shape[3]), x.dtype)
    for n in range(x.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s = _input_block(x, n, 2 * ti, 2 * tj, 4, block)
                for i in range(4):
                    row, h = image[r + i], half[i]
                    for ch in range(x.shape[3]):
                        h[0, ch], h[1, ch], h[2, ch], h[3, ch] = _b_transpose_2x2(row[s, ch], row[s + 1, ch], row[s + 2, ch], row[s + 3, ch])
                for j in range(4):  # then over its rows
                    for ch in range(x.shape[3]):
                        out[j, t, ch], out[4 + j, t, ch], out[8 + j, t, ch], out[12 + j, t, ch] = _b_transpose_2x2(
                            half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch]
                        )


@_compiled
def _input_gradient_2x2(d, th, tw, out):
    half = np.empty((4, 4, out.shape[3]), out.dtype)  # B over the 16 entries' rows
    block = np.empty((4, 4, out.shape[3]), out.dtype)
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s, overhangs = _gradient_block(out, n, 2 * ti, 2 * tj, 4, block)
                for j in range(4):
                    for ch in range(out.shape[3]):
                        half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch] = _b_2x2(
                            d[j, t, ch], d[4 + j, t, ch], d[8 + j, t, ch], d[12 + j, t, ch]
                        )
                for i in range(4):  # then over their columns, added where the tile read
                    row, h = image[r + i], half[i]
                    for ch in range(out.shape[3]):
                        v0, v1, v2, v3 = _b_2x2(h[0, ch], h[1, ch], h[2, ch], h[3, ch])
                        row[s, ch] += v0
                        row[s + 1, ch] += v1
                        row[s + 2, ch] += v2
                        row[s + 3, ch] += v3
                if overhangs:
                    _add_overhang(block, out, n, 2 * ti, 2 * tj)


@_compiled
def _transform_output_2x2(m, bias, relu, th, tw, out):
    height, width, filters = out.shape[1], out.shape[2], out.shape[3]
    zero = out.dtype.type(0)
    half = np.empty((2, 4, filters), m.dtype)  # A^T over the 16 entries' rows
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for j in range(4):
                    for f in range(filters):
                        half[0, j, f], half[1, j, f] = _a_transpose_2x2(m[j, t, f], m[4 + j, t, f], m[8 + j, t, f], m[12 + j, t, f])
                # then over their columns; a grid overhanging an odd size drops its last row or column
                columns = min(2, width - s)
                for a in range(min(2, height - r)):
                    row, h = out[n, r + a], half[a]
                    if columns == 2:
                        for f in range(filters):
                            left, right = _a_transpose_2x2(h[0, f], h[1, f], h[2, f], h[3, f])
                            row[s, f], row[s + 1, f] = left + bias[f], right + bias[f]
                    else:
                        for f in range(filters):
                            row[s, f] = _a_transpose_2x2(h[0, f], h[1, f], h[2, f], h[3, f])[0] + bias[f]
                    if relu:
                        written = row[s : s + columns].ravel()
                        for q in range(written.size):
                            written[q] = max(written[q], zero)


@_compiled
def _output_gradient_2x2(g, ans, relu, th, tw, out):
    height, width, filters = g.shape[1], g.shape[2], g.shape[3]
    zero = g.dtype.type(0)
    half = np.empty((2, 4, filters), g.dtype)  # A over a tile's columns, row by row
    for n in range(g.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 2 * ti, 2 * tj
                for a in range(2):
                    h = half[a]
                    if r + a == height:  # a grid overhanging an odd size: zeros
                        h[...] = 0
                        continue
                    row, kept = g[n, r + a], ans[n, r + a]
                    if s + 1 == width:
                        for f in range(filters):
                            left = row[s, f] if not relu or kept[s, f] > 0 else zero
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(left, zero)
                    elif relu:  # the cotangent before the fused relu
                        for f in range(filters):
                            left = row[s, f] if kept[s, f] > 0 else zero
                            right = row[s + 1, f] if kept[s + 1, f] > 0 else zero
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(left, right)
                    else:
                        for f in range(filters):
                            h[0, f], h[1, f], h[2, f], h[3, f] = _a_2x2(row[s, f], row[s + 1, f])
                for j in range(4):  # then over its rows
                    for f in range(filters):
                        out[j, t, f], out[4 + j, t, f], out[8 + j, t, f], out[12 + j, t, f] = _a_2x2(half[0, j, f], half[1, j, f])


F2X2 = Tiling(2, [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
              (_transform_input_2x2, _input_gradient_2x2, _transform_output_2x2, _output_gradient_2x2))


# F(4x4, 3x3), interpolation points 0, +-1, +-2 and infinity:
#   B^T = [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
#          [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]]
#   A^T = [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]]
# Each is split in two halves of rows that read five of the six inputs, so
# that a loop touches at most eight rows of memory.


# B^T rows 0, 1, 2 (from d0..d4) and 3, 4, 5 (from d1..d5)
@_compiled
def _bt_low_4x4(d0, d1, d2, d3, d4, k):
    return k[4] * d0 - k[5] * d2 + d4, (d3 + d4) - k[4] * (d1 + d2), (d4 - d3) + k[4] * (d1 - d2)


@_compiled
def _bt_high_4x4(d1, d2, d3, d4, d5, k):
    return (d4 - d2) + k[2] * (d3 - d1), (d4 - d2) - k[2] * (d3 - d1), k[4] * d1 - k[5] * d3 + d5


# B = (B^T)^T: entries 0, 2, 4 (from v0..v4) and 1, 3, 5 (from v1..v5)
@_compiled
def _b_even_4x4(v0, v1, v2, v3, v4, k):
    return k[4] * v0, -k[5] * v0 - k[4] * (v1 + v2) - (v3 + v4), v0 + v1 + v2 + v3 + v4


@_compiled
def _b_odd_4x4(v1, v2, v3, v4, v5, k):
    return k[4] * (v2 - v1 + v5) + k[2] * (v4 - v3), (v1 - v2) + k[2] * (v3 - v4) - k[5] * v5, v5


# A^T rows 0, 1 (from m0..m4) and 2, 3 (from m1..m5)
@_compiled
def _at_low_4x4(m0, m1, m2, m3, m4, k):
    return m0 + m1 + m2 + m3 + m4, (m1 - m2) + k[2] * (m3 - m4)


@_compiled
def _at_high_4x4(m1, m2, m3, m4, m5, k):
    return (m1 + m2) + k[4] * (m3 + m4), (m1 - m2) + k[8] * (m3 - m4) + m5


# A = (A^T)^T: entries 0, 1, 2 and 3, 4, 5 from u0..u3
@_compiled
def _a_low_4x4(u0, u1, u2, u3):
    return u0, u0 + u1 + u2 + u3, u0 - u1 + u2 - u3


@_compiled
def _a_high_4x4(u0, u1, u2, u3, k):
    return u0 + k[2] * u1 + k[4] * u2 + k[8] * u3, u0 - k[2] * u1 + k[4] * u2 - k[8] * u3, u3


@_compiled
def _transform_input_4x4(x, th, tw, out):
    k = _constants(x.dtype)
    half = np.empty((6, 6, x.shape[3]), x.dtype)  # B^T over a tile's columns, row by row
    block = np.empty((6, 6, x.shape[3]), x.dtype)
    channels = x.shape[3]
    for n in range(x.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s = _input_block(x, n, 4 * ti, 4 * tj, 6, block)
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        h[0, ch], h[1, ch], h[2, ch] = _bt_low_4x4(row[s, ch], row[s + 1, ch], row[s + 2, ch], row[s + 3, ch], row[s + 4, ch], k)
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        h[3, ch], h[4, ch], h[5, ch] = _bt_high_4x4(row[s + 1, ch], row[s + 2, ch], row[s + 3, ch], row[s + 4, ch], row[s + 5, ch], k)
                for j in range(6):  # then over its rows
                    for ch in range(channels):
                        out[j, t, ch], out[6 + j, t, ch], out[12 + j, t, ch] = _bt_low_4x4(
                            half[0, j, ch], half[1, j, ch], half[2, j, ch], half[3, j, ch], half[4, j, ch], k)
                for j in range(6):
                    for ch in range(channels):
                        out[18 + j, t, ch], out[24 + j, t, ch], out[30 + j, t, ch] = _bt_high_4x4(
                            half[1, j, ch], half[2, j, ch], half[3, j, ch], half[4, j, ch], half[5, j, ch], k)


@_compiled
def _input_gradient_4x4(d, th, tw, out):
    k = _constants(out.dtype)
    channels = out.shape[3]
    half = np.empty((6, 6, channels), out.dtype)  # B over the 36 entries' rows
    block = np.empty((6, 6, channels), out.dtype)
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t = (n * th + ti) * tw + tj
                image, r, s, overhangs = _gradient_block(out, n, 4 * ti, 4 * tj, 6, block)
                for j in range(6):
                    for ch in range(channels):
                        half[0, j, ch], half[2, j, ch], half[4, j, ch] = _b_even_4x4(
                            d[j, t, ch], d[6 + j, t, ch], d[12 + j, t, ch], d[18 + j, t, ch], d[24 + j, t, ch], k)
                for j in range(6):
                    for ch in range(channels):
                        half[1, j, ch], half[3, j, ch], half[5, j, ch] = _b_odd_4x4(
                            d[6 + j, t, ch], d[12 + j, t, ch], d[18 + j, t, ch], d[24 + j, t, ch], d[30 + j, t, ch], k)
                for i in range(6):  # then over their columns, added where the tile read
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        v0, v2, v4 = _b_even_4x4(h[0, ch], h[1, ch], h[2, ch], h[3, ch], h[4, ch], k)
                        row[s, ch] += v0
                        row[s + 2, ch] += v2
                        row[s + 4, ch] += v4
                for i in range(6):
                    row, h = image[r + i], half[i]
                    for ch in range(channels):
                        v1, v3, v5 = _b_odd_4x4(h[1, ch], h[2, ch], h[3, ch], h[4, ch], h[5, ch], k)
                        row[s + 1, ch] += v1
                        row[s + 3, ch] += v3
                        row[s + 5, ch] += v5
                if overhangs:
                    _add_overhang(block, out, n, 4 * ti, 4 * tj)


@_compiled
def _transform_output_4x4(m, bias, relu, th, tw, out):
    k = _constants(out.dtype)
    height, width, filters = out.shape[1], out.shape[2], out.shape[3]
    zero = out.dtype.type(0)
    half = np.empty((4, 6, filters), m.dtype)  # A^T over the 36 entries' rows
    tile = np.empty((4, 4, filters), m.dtype)  # then over their columns
    for n in range(out.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 4 * ti, 4 * tj
                for j in range(6):
                    for f in range(filters):
                        half[0, j, f], half[1, j, f] = _at_low_4x4(m[j, t, f], m[6 + j, t, f], m[12 + j, t, f], m[18 + j, t, f], m[24 + j, t, f], k)
                for j in range(6):
                    for f in range(filters):
                        half[2, j, f], half[3, j, f] = _at_high_4x4(m[6 + j, t, f], m[12 + j, t, f], m[18 + j, t, f], m[24 + j, t, f], m[30 + j, t, f], k)
                for a in range(4):
                    h, y = half[a], tile[a]
                    for f in range(filters):
                        y[0, f], y[1, f] = _at_low_4x4(h[0, f], h[1, f], h[2, f], h[3, f], h[4, f], k)
                for a in range(4):
                    h, y = half[a], tile[a]
                    for f in range(filters):
                        y[2, f], y[3, f] = _at_high_4x4(h[1, f], h[2, f], h[3, f], h[4, f], h[5, f], k)
                # the tile's outputs, plus the bias, through the relu; a grid
                # overhanging the output drops what falls outside
                for a in range(min(4, height - r)):
                    for b in range(min(4, width - s)):
                        y, o = tile[a, b], out[n, r + a, s + b]
                        if relu:
                            for f in range(filters):
                                o[f] = max(y[f] + bias[f], zero)
                        else:
                            for f in range(filters):
                                o[f] = y[f] + bias[f]


@_compiled
def _output_gradient_4x4(g, ans, relu, th, tw, out):
    k = _constants(g.dtype)
    height, width, filters = g.shape[1], g.shape[2], g.shape[3]
    zero = g.dtype.type(0)
    tile = np.zeros((4, 4, filters), g.dtype)  # the tile's cotangent before the fused relu
    half = np.empty((4, 6, filters), g.dtype)  # A over the tile's columns, row by row
    for n in range(g.shape[0]):
        for ti in range(th):
            for tj in range(tw):
                t, r, s = (n * th + ti) * tw + tj, 4 * ti, 4 * tj
                rows, columns = min(4, height - r), min(4, width - s)
                if rows < 4 or columns < 4:
                    tile[...] = 0  # a grid overhanging the output: zeros there
                for a in range(rows):
                    for b in range(columns):
                        y, kept, c = g[n, r + a, s + b], ans[n, r + a, s + b], tile[a, b]
                        if relu:
                            for f in range(filters):
                                c[f] = y[f] if kept[f] > 0 else zero
                        else:
                            for f in range(filters):
                                c[f] = y[f]
                for a in range(4):
                    c, h = tile[a], half[a]
                    for f in range(filters):
                        h[0, f], h[1, f], h[2, f] = _a_low_4x4(c[0, f], c[1, f], c[2, f], c[3, f])
                for a in range(4):
                    c, h = tile[a], half[a]
                    for f in range(filters):
                        h[3, f], h[4, f], h[5, f] = _a_high_4x4(c[0, f], c[1, f], c[2, f], c[3, f], k)
                for j in range(6):  # then over its rows
                    for f in range(filters):
                        out[j, t, f], out[6 + j, t, f], out[12 + j, t, f] = _a_low_4x4(half[0, j, f], half[1, j, f], half[2, j, f], half[3, j, f])
                for j in range(6):
                    for f in range(filters):
                        out[18 + j, t, f], out[24 + j, t, f], out[30 + j, t, f] = _a_high_4x4(half[0, j, f], half[1, j, f], half[2, j, f], half[3, j, f], k)


F4X4 = Tiling(4, [[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
              (_transform_input_4x4, _input_gradient_4x4, _transform_output_4x4, _output_gradient_4x4))


def fewest_products(out_h, out_w):
    """The tiling of fewer products (GEMM work) for an (out_h, out_w) output,
    F(2x2) on a tie for its smaller float32 error: F(4x4) but for outputs of
    a few pixels, where its grid of 4x4 tiles overhangs most."""
    return min((F2X2, F4X4), key=lambda tiling: tiling.products(out_h, out_w))
