"""Stride-1 NHWC convolution with its VJP: by Winograd or im2col + GEMM on
blocks of images (`ConvPlan`), on every core of the CPU; in a few large
operations on a GPU."""

from __future__ import annotations

import numpy as np
from autograd.extend import defvjp_argnums, primitive

from ...kernels import parallel
from ..backend import array_module, as_strided
from ..settings import SETTINGS
from .blocks import image_blocks, on_blocks, sum_in_order
from .dense import activate, through_activation


def _window_view(x, kh, kw):
    """(N, H, W, C) -> (N, Ho, Wo, kh, kw, C) view; C stays innermost so that
    copying it moves contiguous runs of channels."""
    n, h, w, c = x.shape
    sn, sh, sw, sc = x.strides
    return as_strided(x, (n, h - kh + 1, w - kw + 1, kh, kw, c), (sn, sh, sw, sh, sw, sc))


def _pad(x, pads):
    top, bottom, left, right = pads
    if not any(pads):
        return x
    return array_module(x).pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def im2col(x, kh, kw):
    """NHWC patches as rows, (N*Ho*Wo, kh*kw*C), in the order of a Keras
    (kh, kw, C, F) kernel reshaped to (kh*kw*C, F). One strided copy."""
    return array_module(x).ascontiguousarray(_window_view(x, kh, kw)).reshape(-1, kh * kw * x.shape[-1])


# On a GPU, each block costs kernel launches and small GEMMs fill it poorly:
# one block per batch unless its patches pass this size.
_DEVICE_PATCH_BLOCK_BYTES = 256 << 20


def _winograd_transforms():
    """pipeline.kernels.winograd, loaded on first use: its transforms are
    compiled with numba, which a GPU run never needs (nor its LLVM)."""
    from ...kernels import winograd

    return winograd


def _thin_conv():
    """pipeline.kernels.thin_conv, loaded on first use (numba, as above)."""
    from ...kernels import thin_conv

    return thin_conv


class ConvPlan:
    """How a stride-1 convolution of padded x (N, H, W, C) by kernel (kh, kw, C, F)
    is computed: by Winograd on the CPU where it measured faster (3x3, enough
    channels), else im2col + GEMM; and the blocks of images it is computed in."""

    def __init__(self, x_padded, kernel):
        self.xp = array_module(x_padded)
        n, h, w, c = x_padded.shape
        self.kh, self.kw, _, self.filters = kernel.shape
        self.out_h, self.out_w = h - self.kh + 1, w - self.kw + 1
        choice, wide = SETTINGS.convolution, c >= SETTINGS.winograd_min_channels
        self.winograd = (
            self.xp is np
            and (self.kh, self.kw) == (3, 3)
            and (wide if choice == "auto" else choice.startswith("winograd"))
        )
        # A layer too thin for Winograd: its kernel gradient by a compiled
        # loop (pipeline/kernels/thin_conv.py), faster than patches^T @ g.
        self.thin = self.xp is np and choice == "auto" and not wide
        size = x_padded.itemsize
        self.x = x_padded
        if self.winograd:
            winograd = _winograd_transforms()
            forced = {"winograd2x2": winograd.F2X2, "winograd4x4": winograd.F4X4}
            self.tiling = tiling = forced.get(choice) or winograd.fewest_products(self.out_h, self.out_w)
            self.th, self.tw = tiling.tiles(self.out_h, self.out_w)
            self.transformed_kernel = tiling.transform_kernel(kernel)
            self.blocks = image_blocks(
                n, tiling.products(self.out_h, self.out_w) * (c + self.filters) * size, SETTINGS.block_bytes
            )
        else:
            patch_bytes = self.out_h * self.out_w * self.kh * self.kw * c * size
            if self.xp is np:
                self.blocks = image_blocks(n, patch_bytes, SETTINGS.block_bytes)
            else:
                self.blocks = parallel.spans(n, _DEVICE_PATCH_BLOCK_BYTES // max(1, patch_bytes))

    def patches(self, start, stop):
        """The block's im2col rows, or its Winograd-transformed input tiles."""
        if self.winograd:
            return self.tiling.transform_input(self.x[start:stop], self.th, self.tw)
        return im2col(self.x[start:stop], self.kh, self.kw)


@primitive
def conv2d(x, kernel, bias, pads=(0, 0, 0, 0), relu=False):
    """Stride-1 NHWC convolution (cross-correlation, as in Keras) of x (N, H, W, C)
    with kernel (kh, kw, C, F) plus bias (F,); `pads` = (top, bottom, left, right)
    zeros; `relu` fuses the activation. A block of images at a time, each by
    Winograd or im2col + GEMM (`ConvPlan`)."""
    xp = array_module(x)
    plan = ConvPlan(_pad(x, pads), kernel)
    n, filters = x.shape[0], plan.filters
    out = xp.empty((n, plan.out_h, plan.out_w, filters), dtype=x.dtype)
    kernel2d = kernel.reshape(-1, filters)

    def block(span):
        start, stop = span
        out_block = out[start:stop]
        if plan.winograd:
            products = plan.tiling.multiply(plan.patches(start, stop), plan.transformed_kernel)
            plan.tiling.transform_output(products, bias, relu, out_block)
        else:
            out2d = out_block.reshape(-1, filters)
            xp.matmul(plan.patches(start, stop), kernel2d, out=out2d)
            if plan.thin:
                _thin_conv().add_bias(out2d, bias, relu)
            else:
                out_block += bias
                activate(out_block, relu)

    on_blocks(xp, block, plan.blocks)
    return out


def _conv2d_grads_whole_batch(g, ans, x, kernel, pads, relu, argnums):
    """The conv2d gradients in a few large operations, for a GPU, where each
    kernel launch costs more than a pass over memory. The input gradient is the
    full correlation of g with the flipped kernel: an im2col of g padded by
    the kernel size and one GEMM, instead of kh*kw thin GEMMs and adds."""
    xp = array_module(g)
    kh, kw, c, filters = kernel.shape
    g = through_activation(g, ans, relu)
    n, ho, wo, _ = g.shape
    g2d = g.reshape(-1, filters)
    grads = {
        2: lambda: g2d.sum(axis=0),
        1: lambda: (im2col(_pad(x, pads), kh, kw).T @ g2d).reshape(kernel.shape),
    }
    if 0 in argnums:
        flipped = xp.ascontiguousarray(kernel[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(-1, c)
        full = im2col(_pad(g, (kh - 1, kh - 1, kw - 1, kw - 1)), kh, kw) @ flipped
        top, _, left, _ = pads
        full = full.reshape(n, ho + kh - 1, wo + kw - 1, c)
        grads[0] = lambda: full[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return tuple(grads[i]() for i in argnums)


def _winograd_block(plan, g, ans, relu, span, kernel_t, want_kernel, dx):
    """(kernel, bias) gradient sums of a block of images by Winograd, its input
    gradient written into `dx` where `kernel_t` (the transposed transformed
    kernel) is given; the relu's mask applied inside the output transform."""
    start, stop = span
    d_products = plan.tiling.output_gradient(g[start:stop], ans[start:stop], relu, plan.th, plan.tw)
    d_kernel = plan.patches(start, stop).transpose(0, 2, 1) @ d_products if want_kernel else None
    if kernel_t is not None:
        d_tiles = plan.tiling.multiply(d_products, kernel_t)
        plan.tiling.input_gradient(d_tiles, plan.th, plan.tw, dx[start:stop])
    return d_kernel, d_products[plan.tiling.bias_entry].sum(axis=0)


def _conv2d_grads_blocked(g, ans, x, kernel, pads, relu, argnums):
    """The conv2d gradients on the CPU in one pass over blocks of images: each
    block of the cotangent is masked by the fused relu, summed for the bias,
    and multiplied with the block's patches (or tiles) for the kernel and with
    the kernel for the input, while it is in cache. Per-block kernel and bias
    sums are added in block order, so the result does not depend on threads."""
    kh, kw, c, filters = kernel.shape
    plan = ConvPlan(_pad(x, pads), kernel)
    want_x, want_kernel = 0 in argnums, 1 in argnums
    dx = np.zeros(plan.x.shape, dtype=g.dtype) if want_x else None
    if plan.winograd:
        kernel_t = plan.transformed_kernel.transpose(0, 2, 1)
    else:
        # dx is a sum of kh*kw shifted slabs g @ kernel[i, j].T: thin GEMMs
        # added in place beat a patch-shaped GEMM plus a col2im scatter, and
        # beat an im2col of the zero-padded g.
        taps = [[np.ascontiguousarray(kernel[i, j].T) for j in range(kw)] for i in range(kh)]

    def block(span):
        start, stop = span
        count, ho, wo = stop - start, plan.out_h, plan.out_w
        d_kernel = None
        if plan.winograd:
            return _winograd_block(plan, g, ans, relu, span, kernel_t if want_x else None, want_kernel, dx)
        if plan.thin and not want_x:  # the relu's mask applied inside the loop
            return _thin_conv().kernel_and_bias_gradients(
                plan.x[start:stop], g[start:stop], ans[start:stop], relu, kernel.shape
            )
        g_block = g[start:stop]
        if relu:
            g_block = np.where(ans[start:stop] > 0, g_block, 0)
        g2d = g_block.reshape(-1, filters)
        d_bias = g2d.sum(axis=0)
        if want_kernel:
            d_kernel = plan.patches(start, stop).T @ g2d
        if want_x:
            shifted = np.empty((g2d.shape[0], c), dtype=g.dtype)
            dx_block = dx[start:stop]
            for i in range(kh):
                for j in range(kw):
                    np.matmul(g2d, taps[i][j], out=shifted)
                    dx_block[:, i : i + ho, j : j + wo, :] += shifted.reshape(count, ho, wo, c)
        return d_kernel, d_bias

    parts = parallel.map_blocks(block, plan.blocks)
    grads = {2: lambda: sum_in_order(part[1] for part in parts)}
    if want_kernel:
        d_kernel = sum_in_order(part[0] for part in parts)
        grads[1] = lambda: (plan.tiling.kernel_gradient(d_kernel) if plan.winograd else d_kernel).reshape(
            kernel.shape
        )
    if want_x:
        top, _, left, _ = pads
        grads[0] = lambda: dx[:, top : top + x.shape[1], left : left + x.shape[2], :]
    return tuple(grads[i]() for i in argnums)


def _conv2d_vjp(argnums, ans, args, kwargs):
    x, kernel, _bias = args[:3]
    pads = args[3] if len(args) > 3 else kwargs.get("pads", (0, 0, 0, 0))
    relu = args[4] if len(args) > 4 else kwargs.get("relu", False)
    grads = _conv2d_grads_blocked if array_module(x) is np else _conv2d_grads_whole_batch
    return lambda g: grads(g, ans, x, kernel, pads, relu, argnums)


defvjp_argnums(conv2d, _conv2d_vjp)
