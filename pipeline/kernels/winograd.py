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
float64, several times slower: docs/speed.md). No fast-math: every float operation happens in the
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
their L1 cache sets and their addresses' low twelve bits ("4K aliasing"),
which slows the transforms. So the planes are views into arrays with an odd number
of tile rows per plane (`planes`): the compiled loops take the whole array
(numba compiles a loop over a non-contiguous view into slower code), and NumPy, the
GEMMs included, sees only the tiles.
"""

from __future__ import annotations

import numpy as np

from . import winograd_2x2, winograd_4x4


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

    # Both kernel maps as two small GEMMs over all channel pairs at once, not
    # np.einsum's contraction, which loops in C (docs/speed.md).
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
    if (
        whole is None
        or not whole.flags.c_contiguous
        or whole.ctypes.data != planes.ctypes.data
        or whole.strides != planes.strides
        or whole.shape[::2] != planes.shape[::2]
    ):
        return np.ascontiguousarray(planes)
    return whole


F2X2 = Tiling(
    2,
    [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
    (
        winograd_2x2.transform_input,
        winograd_2x2.input_gradient,
        winograd_2x2.transform_output,
        winograd_2x2.output_gradient,
    ),
)


F4X4 = Tiling(
    4,
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    (
        winograd_4x4.transform_input,
        winograd_4x4.input_gradient,
        winograd_4x4.transform_output,
        winograd_4x4.output_gradient,
    ),
)


def fewest_products(out_h, out_w):
    """The tiling of fewer products (GEMM work) for an (out_h, out_w) output,
    F(2x2) on a tie for its smaller float32 error: F(4x4) but for outputs of
    a few pixels, where its grid of 4x4 tiles overhangs most."""
    return min((F2X2, F4X4), key=lambda tiling: tiling.products(out_h, out_w))
