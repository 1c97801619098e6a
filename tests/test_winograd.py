"""Winograd F(2x2, 3x3) and F(4x4, 3x3) against the direct convolution, and
blocks on threads against one thread."""

import autograd
import numpy as np
import pytest

from pipeline.core.primitives import conv
from pipeline.core.settings import SETTINGS
from pipeline.kernels import parallel, thin_conv
from pipeline.kernels import winograd as winograd_kernel

# (batch, height, width, channels, filters, pads): valid and same, even and odd
# output sizes, batch 1, one image smaller than a tile grid of 2.
SHAPES = [
    (4, 32, 32, 32, 32, (0, 0, 0, 0)),
    (3, 15, 15, 32, 64, (1, 1, 1, 1)),
    (1, 15, 15, 64, 16, (0, 0, 0, 0)),
    (2, 9, 12, 16, 5, (1, 1, 1, 1)),
    (5, 7, 4, 24, 3, (0, 0, 0, 0)),
    (1, 3, 3, 16, 2, (0, 0, 0, 0)),
    (2, 1, 1, 16, 4, (1, 1, 1, 1)),
]


def _case(shape, dtype, seed=0):
    n, h, w, c, f, pads = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(dtype)
    kernel = (rng.standard_normal((3, 3, c, f)) / np.sqrt(9 * c)).astype(dtype)
    bias = rng.standard_normal(f).astype(dtype)
    return x, kernel, bias, pads


def _forward_and_grads(x, kernel, bias, pads, relu=True):
    out = conv.conv2d(x, kernel, bias, pads, relu)
    g = np.random.default_rng(7).standard_normal(out.shape).astype(x.dtype)
    return (out, *conv._conv2d_vjp((0, 1, 2), out, (x, kernel, bias, pads, relu), {})(g))


def _force(monkeypatch, algorithm):
    """Every 3x3 convolution by `algorithm`, whatever its shape."""
    monkeypatch.setattr(SETTINGS, "convolution", algorithm)


@pytest.fixture(autouse=True)
def winograd(monkeypatch):
    _force(monkeypatch, "winograd")


# Each tiling, forced on every shape, and its float32 error bound relative to
# the largest value: F(2x2)'s transforms add and halve, F(4x4)'s scale by up to
# 8, and it measured up to 32 ulp where the direct product measured up to 10.
TILINGS = {"winograd2x2": 16, "winograd4x4": 64}
tilings = pytest.mark.parametrize("tiling", TILINGS)


def test_plan_takes_winograd_where_it_measured_faster(monkeypatch):
    monkeypatch.undo()

    def takes(shape, kernel=(3, 3)):
        _n, _h, _w, c = shape
        return conv.ConvPlan(np.zeros(shape, np.float32), np.zeros((*kernel, c, 4), np.float32)).winograd

    assert (
        takes((2, 26, 26, 32))
        and takes((2, 32, 32, 32))
        and takes((2, 17, 17, 32))
        and takes((2, 15, 15, 16))
    )
    assert (
        not takes((2, 28, 28, 1)) and not takes((2, 34, 34, 3)) and not takes((2, 15, 15, 15))
    )  # few channels
    assert not takes((2, 26, 26, 32), kernel=(1, 3)) and not takes((2, 26, 26, 32), kernel=(5, 5))


def test_the_plan_takes_the_tiling_of_fewer_products():

    def tiling(out_h, out_w):
        return conv.ConvPlan(
            np.zeros((1, out_h + 2, out_w + 2, 16), np.float32), np.zeros((3, 3, 16, 4), np.float32)
        ).tiling

    assert (
        tiling(30, 30) is tiling(13, 13) is tiling(24, 24) is tiling(3, 3) is winograd_kernel.F4X4
    )  # 30x30: 36 * 8 * 8 products vs 16 * 15 * 15
    assert (
        tiling(1, 1) is tiling(2, 2) is tiling(5, 5) is winograd_kernel.F2X2
    )  # 5x5: 36 * 2 * 2 = 16 * 3 * 3, a tie


@tilings
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_winograd_float64_equals_the_reference_convolution(shape, tiling, monkeypatch, reference_conv):
    _force(monkeypatch, tiling)
    x, kernel, bias, pads = _case(shape, np.float64)
    np.testing.assert_allclose(
        conv.conv2d(x, kernel, bias, pads), reference_conv(x, kernel, bias, pads), rtol=0, atol=1e-12
    )


@tilings
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_winograd_gradients_float64_equal_the_direct_ones(shape, tiling, monkeypatch):
    _force(monkeypatch, tiling)
    case = _case(shape, np.float64)
    fast = _forward_and_grads(*case)
    _force(monkeypatch, "direct")
    for got, want in zip(fast, _forward_and_grads(*case)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * max(1, np.abs(want).max()))


@tilings
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_winograd_float32_error_is_near_that_of_the_direct_convolution(shape, tiling, monkeypatch):
    """float32 error against float64, forward and both gradients, relative to
    the largest value: Winograd's within 5x the direct product's or the
    tiling's bound in ulp (`TILINGS`)."""
    _force(monkeypatch, tiling)
    exact = _forward_and_grads(*_case(shape, np.float64))
    fast = _forward_and_grads(*_case(shape, np.float32))
    _force(monkeypatch, "direct")
    slow = _forward_and_grads(*_case(shape, np.float32))
    for name, want, got_fast, got_slow in zip(("out", "dx", "dkernel", "dbias"), exact, fast, slow):
        assert got_fast.dtype == np.float32, name
        scale = np.abs(want).max()
        fast_error = np.abs(got_fast - want).max() / scale
        slow_error = np.abs(got_slow - want).max() / scale
        assert fast_error <= max(5 * slow_error, TILINGS[tiling] * np.finfo(np.float32).eps), (
            name,
            fast_error,
            slow_error,
        )


@pytest.mark.parametrize(
    "channels,kernel_size,pads",
    [
        (1, (3, 3), (0, 0, 0, 0)),
        (3, (3, 3), (1, 1, 1, 1)),
        (3, (2, 5), (0, 1, 2, 2)),
        (15, (3, 3), (0, 0, 0, 0)),
    ],
)
@pytest.mark.parametrize("relu", [True, False])
def test_a_thin_layers_compiled_kernel_gradient_equals_patches_times_g(
    channels, kernel_size, pads, relu, monkeypatch
):
    monkeypatch.setattr(SETTINGS, "convolution", "auto")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 11, 10, channels))
    kernel, bias = rng.standard_normal((*kernel_size, channels, 6)), rng.standard_normal(6)
    assert conv.ConvPlan(conv._pad(x, pads), kernel).thin
    out = conv.conv2d(x, kernel, bias, pads, relu)
    g = rng.standard_normal(out.shape)

    def gradients(x, kernel, bias, g):
        return conv._conv2d_vjp((1, 2), out.astype(x.dtype), (x, kernel, bias, pads, relu), {})(g)

    thin = gradients(x, kernel, bias, g)
    thin32 = gradients(*(a.astype(np.float32) for a in (x, kernel, bias, g)))
    _force(monkeypatch, "direct")
    for got, got32, want in zip(thin, thin32, gradients(x, kernel, bias, g)):
        assert got32.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())
        np.testing.assert_allclose(got32, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("relu", [True, False])
def test_the_compiled_bias_and_relu_are_numpys_passes_bit_for_bit(dtype, relu):

    rng = np.random.default_rng(5)
    out = rng.standard_normal((300, 32)).astype(dtype)
    bias = rng.standard_normal(32).astype(dtype)
    out[:2, :6] = [[np.nan, -0.0, np.inf, -np.inf, 0.0, -0.0], [1e30, -0.0, -np.inf, np.nan, -0.0, 0.0]]
    bias[:6] = [0.0, -0.0, -np.inf, 1.0, -0.0, 0.0]  # -0 + -0 = -0, through the relu +0
    with np.errstate(invalid="ignore"):  # inf + -inf
        want = out + bias
    if relu:
        np.maximum(want, 0, out=want)
    got = out.copy()
    thin_conv.add_bias(got, bias, relu)
    bits = np.int32 if dtype == np.float32 else np.int64
    np.testing.assert_array_equal(got.view(bits), want.view(bits))
    assert not relu or np.signbit(got[:2, [1, 4, 5]]).sum() == 0


@tilings
def test_winograd_gradients_match_finite_differences(tiling, monkeypatch, check_grads):

    _force(monkeypatch, tiling)
    x, kernel, bias, pads = _case((2, 7, 8, 16, 3, (1, 1, 1, 1)), np.float64)
    rng = np.random.default_rng(3)
    weights = rng.standard_normal((2, 7, 8, 3))

    def objective(x, kernel):
        return autograd.numpy.sum(autograd.numpy.sin(conv.conv2d(x, kernel, bias, pads, True)) * weights)

    check_grads(lambda a: objective(a, kernel), x)
    check_grads(lambda k: objective(x, k), kernel)


@pytest.fixture
def two_workers():
    parallel.set_workers(2)
    yield
    parallel.set_workers(1)


@pytest.mark.parametrize("tiling_name", ["F2X2", "F4X4"])
def test_transforms_through_spaced_planes_equal_packed_ones_bit_for_bit(tiling_name):

    tiling = getattr(winograd_kernel, tiling_name)
    rng = np.random.default_rng(3)
    n, side, channels, filters = 2, 2 * tiling.m + 3, 32, 16
    th, tw = tiling.tiles(side - 2, side - 2)
    tiles = n * th * tw  # even: the planes are spaced by one tile row
    x = rng.standard_normal((n, side, side, channels)).astype(np.float32)
    g = rng.standard_normal((n, side - 2, side - 2, filters)).astype(np.float32)
    ans = np.maximum(rng.standard_normal(g.shape), 0).astype(np.float32)
    bias = rng.standard_normal(filters).astype(np.float32)

    spaced = tiling.planes(tiles, channels, np.float32)
    whole = winograd_kernel._whole(spaced)
    assert (
        tiles % 2 == 0 and whole.shape == (tiling.entries, tiles + 1, channels) and whole.flags.c_contiguous
    )
    assert spaced.shape == (tiling.entries, tiles, channels) and np.shares_memory(spaced, whole)
    assert winograd_kernel._whole(whole) is whole
    whole[...] = rng.standard_normal(whole.shape)
    shifted = whole[:, 1:]  # not a prefix of the rows: the loops get a copy
    assert np.array_equal(winograd_kernel._whole(shifted), shifted) and not np.shares_memory(
        winograd_kernel._whole(shifted), whole
    )

    tiled = tiling.transform_input(x, th, tw)
    packed = np.empty(tiled.shape, np.float32)
    tiling._transform_input(x, th, tw, packed)
    assert (tiled.strides[0] // tiled.strides[1]) % 2 == 1 and np.array_equal(tiled, packed)
    d_products = tiling.output_gradient(g, ans, True, th, tw)
    packed = np.empty(d_products.shape, np.float32)
    tiling._output_gradient(g, ans, True, th, tw, packed)
    assert np.array_equal(d_products, packed)
    out, out_packed = (np.empty(g.shape, np.float32) for _ in range(2))
    tiling.transform_output(d_products, bias, True, out)
    tiling.transform_output(np.ascontiguousarray(d_products), bias, True, out_packed)
    assert np.array_equal(out, out_packed)
    dx, dx_packed = (np.zeros_like(x) for _ in range(2))
    tiling.input_gradient(tiled, th, tw, dx)
    tiling.input_gradient(np.ascontiguousarray(tiled), th, tw, dx_packed)
    assert np.array_equal(dx, dx_packed)


@pytest.mark.parametrize("algorithm", [*TILINGS, "direct"])
def test_convolution_on_two_threads_equals_one_thread_bit_for_bit(algorithm, monkeypatch):
    _force(monkeypatch, algorithm)
    case = _case((96, 16, 16, 32, 32, (1, 1, 1, 1)), np.float32)
    assert len(conv.ConvPlan(conv._pad(case[0], case[3]), case[1]).blocks) > 2
    one = _forward_and_grads(*case)
    parallel.set_workers(2)
    try:
        two = _forward_and_grads(*case)
    finally:
        parallel.set_workers(1)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
