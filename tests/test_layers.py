import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from pipeline.core import layers as L
from pipeline.core.primitives import conv, dense, pool
from pipeline.core.settings import SETTINGS
from pipeline.kernels import parallel


def _weighted_sum(y, seed=99):
    # A fixed random projection, so that every output element matters.
    weights = np.random.default_rng(seed).standard_normal(np.shape(y))
    return anp.sum(anp.sin(y) * weights)


CONV_CASES = [((3, 3), "valid"), ((3, 3), "same"), ((2, 3), "same"), ((1, 1), "valid"), ((5, 2), "same")]


@pytest.mark.parametrize("kernel_size,padding", CONV_CASES)
def test_conv2d_matches_reference_and_keeps_shape_rules(kernel_size, padding, reference_conv):
    rng = np.random.default_rng(0)
    init, apply = L.conv2d(4, kernel_size, padding)
    shape, params = init(rng, (-1, 7, 6, 3))
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    y = apply(params, x)
    kh, kw = kernel_size
    assert shape[1:] == y.shape[1:] == ((7, 6, 4) if padding == "same" else (7 - kh + 1, 6 - kw + 1, 4))
    assert y.dtype == np.float32
    pads = L._same_pads(kh, kw) if padding == "same" else (0, 0, 0, 0)
    np.testing.assert_allclose(y, reference_conv(x, *params, pads), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel_size,padding", CONV_CASES)
def test_conv2d_gradients_float64(kernel_size, padding, check_grads):
    rng = np.random.default_rng(1)
    init, apply = L.conv2d(4, kernel_size, padding)
    _, params = init(rng, (-1, 7, 6, 3))
    params = [p.astype(np.float64) + rng.standard_normal(p.shape) * 0.1 for p in params]
    x = rng.standard_normal((2, 7, 6, 3))
    check_grads(lambda p: _weighted_sum(apply(p, x)), params)
    check_grads(lambda x: _weighted_sum(apply(params, x)), x)


def test_conv2d_large_batch_crosses_blocks(check_grads, reference_conv):
    # Enough images that forward and backward work in several blocks.
    rng = np.random.default_rng(2)
    x = rng.standard_normal((60, 30, 30, 8))
    kernel, bias = rng.standard_normal((3, 3, 8, 5)), rng.standard_normal(5)
    assert len(conv.ConvPlan(x, kernel).blocks) > 1
    np.testing.assert_allclose(
        conv.conv2d(x, kernel, bias), reference_conv(x, kernel, bias, (0,) * 4), rtol=1e-10
    )
    check_grads(lambda k: _weighted_sum(conv.conv2d(x, k, bias)), kernel)


def test_dense_gradients_float64(check_grads):
    rng = np.random.default_rng(3)
    init, apply = L.dense(5)
    shape, params = init(rng, (-1, 7))
    assert shape == (-1, 5) and [p.shape for p in params] == [(7, 5), (5,)]
    params = [p.astype(np.float64) + rng.standard_normal(p.shape) for p in params]
    x = rng.standard_normal((4, 7))
    np.testing.assert_allclose(apply(params, x), x @ params[0] + params[1])
    check_grads(lambda p: _weighted_sum(apply(p, x)), params)
    check_grads(lambda x: _weighted_sum(apply(params, x)), x)


@pytest.mark.parametrize("relu", [False, True])
def test_a_transposed_weight_is_the_transpose_of_a_weight_bit_for_bit(relu):
    # Knet's layout: a classes x features matrix, multiplied as its transpose.
    rng = np.random.default_rng(4)
    x, weight, bias = (rng.standard_normal(shape).astype(np.float32) for shape in ((6, 9), (3, 9), (3,)))
    by_flag = autograd.value_and_grad(lambda p: _weighted_sum(dense.linear(*p, relu=relu, transposed=True)))(
        [x, weight, bias]
    )
    by_transpose = autograd.value_and_grad(
        lambda p: _weighted_sum(dense.linear(p[0], anp.transpose(p[1]), p[2], relu=relu))
    )([x, weight, bias])
    assert by_flag[0] == by_transpose[0]
    for got, expected in zip(by_flag[1], by_transpose[1]):
        assert got.flags.c_contiguous and got.tobytes() == np.ascontiguousarray(expected).tobytes()


@pytest.mark.parametrize("height,width", [(6, 8), (7, 5)])
def test_maxpool_values_and_gradient(height, width, check_grads):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, height, width, 3))
    init, apply = L.maxpool2d()
    shape, _ = init(rng, (-1, height, width, 3))
    y = apply([], x)
    expected = (
        x[:, : height // 2 * 2, : width // 2 * 2]
        .reshape(2, height // 2, 2, width // 2, 2, 3)
        .max(axis=(2, 4))
    )
    np.testing.assert_array_equal(y, expected)
    assert shape[1:] == y.shape[1:]
    check_grads(lambda x: _weighted_sum(apply([], x)), x)


def test_maxpool_tie_routes_gradient_once():
    x = np.zeros((1, 2, 2, 1))
    grad = autograd.grad(lambda x: anp.sum(pool.maxpool2x2(x)))(x)
    assert grad.sum() == 1.0


POOL_SHAPES = [(1, 2, 2, 1), (1, 7, 9, 3), (3, 13, 13, 64), (2, 30, 30, 32), (4, 5, 6, 17)]


def _pool_and_gradient(x):
    vjp, out = autograd.make_vjp(pool.maxpool2x2)(x)
    g = np.random.default_rng(8).standard_normal(out.shape).astype(x.dtype)
    return out, vjp(g)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", POOL_SHAPES, ids=str)
def test_compiled_maxpool_is_the_quadrant_passes_bit_for_bit(shape, dtype, monkeypatch):
    # After a relu many windows tie at 0; a NaN must propagate from any place
    # in its window (here the last), and an inf win.
    x = np.maximum(np.random.default_rng(6).standard_normal(shape), 0).astype(dtype)
    x[0, 1, 1, 0], x[-1, 0, 0, -1], x[-1, 0, 1, -1] = np.nan, np.inf, -np.inf
    compiled = _pool_and_gradient(x)
    monkeypatch.setattr(SETTINGS, "pooling", "quadrants")
    by_quadrants = _pool_and_gradient(x)
    for got, expected in zip(compiled, by_quadrants):
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


def test_relu_flatten_serial_gradients(check_grads):
    rng = np.random.default_rng(5)
    model = L.serial(L.dense(6), L.relu, L.dense(3))
    init, apply = model
    shape, params = init(rng, (-1, 4))
    assert shape == (-1, 3) and len(params) == 3 and params[1] == []
    x = rng.standard_normal((5, 4))
    flat = [params[0][0], params[0][1], params[2][0], params[2][1]]

    def fun(p):
        return _weighted_sum(apply([[p[0], p[1]], [], [p[2], p[3]]], x.astype(np.float64)))

    flat = [p.astype(np.float64) for p in flat]
    check_grads(fun, flat)
    h = np.maximum(x @ flat[0] + flat[1], 0)
    np.testing.assert_allclose(fun(flat), _weighted_sum(h @ flat[2] + flat[3]))

    init, apply = L.flatten
    assert init(rng, (-1, 2, 3, 4))[0] == (-1, 24)
    z = rng.standard_normal((2, 2, 3, 4))
    assert apply([], z).shape == (2, 24)
    check_grads(lambda z: _weighted_sum(apply([], z)), z)


def test_dropout_train_only_seeded_and_scaled(check_grads):
    _init, apply = L.dropout(0.25)
    x = np.ones((200, 50), np.float32)
    np.testing.assert_array_equal(apply([], x, train=False, rng=np.random.default_rng(0)), x)
    a = apply([], x, train=True, rng=np.random.default_rng(0))
    b = apply([], x, train=True, rng=np.random.default_rng(0))
    c = apply([], x, train=True, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.02
    with pytest.raises(ValueError, match="needs rng"):
        apply([], x, train=True)
    # Gradient through a fixed mask.
    rng = np.random.default_rng(6)
    x64 = rng.standard_normal((4, 6))
    fun = lambda x: _weighted_sum(apply([], x, train=True, rng=np.random.default_rng(3)))  # noqa: E731
    check_grads(fun, x64)


@pytest.mark.parametrize(
    "bad", [lambda: L.dropout(1.0), lambda: L.conv2d(3, padding="full"), lambda: L.maxpool2d((3, 3))]
)
def test_bad_layer_options(bad):
    with pytest.raises(ValueError):
        bad()


@pytest.mark.parametrize(
    "make,shape",
    [(lambda **a: L.conv2d(4, (3, 3), "same", **a), (-1, 6, 5, 3)), (lambda **a: L.dense(5, **a), (-1, 7))],
    ids=["conv2d", "dense"],
)
def test_fused_relu_equals_relu_after_layer_and_differentiates(make, shape, check_grads):
    rng = np.random.default_rng(8)
    init, apply = make(activation="relu")
    _, params = init(rng, shape)
    params = [p.astype(np.float64) + rng.standard_normal(p.shape) * 0.1 for p in params]
    x = rng.standard_normal((3, *shape[1:]))
    fused = apply(params, x)
    assert (fused == 0).any() and (fused > 0).any()
    _, unfused_apply = L.serial(make(), L.relu)
    np.testing.assert_allclose(fused, unfused_apply([params, []], x), rtol=1e-12)
    check_grads(lambda p: _weighted_sum(apply(p, x)), params)
    check_grads(lambda x: _weighted_sum(apply(params, x)), x)


def test_bad_activation():
    with pytest.raises(ValueError, match="activation"):
        L.dense(3, activation="tanh")


def test_maxpool_on_two_threads_equals_one_thread_bit_for_bit():
    x = np.maximum(np.random.default_rng(9).standard_normal((64, 30, 30, 32), dtype=np.float32), 0)
    assert len(pool._pool_blocks(x)) > 2
    parallel.set_workers(1)
    one = _pool_and_gradient(x)
    parallel.set_workers(2)  # the threads restored after (conftest)
    two = _pool_and_gradient(x)
    for got, expected in zip(two, one):
        assert got.tobytes() == expected.tobytes()
