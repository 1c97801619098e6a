import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from pipeline.core import models, tree
from pipeline.core.autodiff import value_and_grad
from pipeline.core.losses import ce

SHAPES = {"knet_softmax": (28, 28, 1), "mlp": (28, 28, 1), "mnist_cnn": (28, 28, 1), "cifar_cnn": (32, 32, 3)}


@pytest.mark.parametrize(
    "name,count",
    [
        ("mnist_cnn", 1_199_882),
        ("cifar_cnn", 1_250_858),
        ("knet_softmax", 7_850),
        ("mlp", 784 * 64 + 64 + 64 * 10 + 10),
    ],
)
def test_parameter_counts(name, count):
    init, _ = models.build(name)
    assert tree.count(init(np.random.default_rng(0), SHAPES[name])) == count


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shapes_dtypes_dropout_and_seeding(name):
    init, apply = models.build(name)
    params = init(np.random.default_rng(0), SHAPES[name])
    assert all(p.dtype == np.float32 for p in tree.leaves(params))
    x = np.random.default_rng(1).random((3, *SHAPES[name]), dtype=np.float32)
    logits = apply(params, x)
    assert logits.shape == (3, 10) and logits.dtype == np.float32
    # Evaluation ignores dropout: the rng does not matter.
    np.testing.assert_array_equal(logits, apply(params, x, rng=np.random.default_rng(5)))
    # Same seed, same weights and same training-mode output.
    again = init(np.random.default_rng(0), SHAPES[name])
    assert all(np.array_equal(a, b) for a, b in zip(tree.leaves(params), tree.leaves(again)))
    train_a = apply(params, x, train=True, rng=np.random.default_rng(2))
    train_b = apply(params, x, train=True, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(train_a, train_b)
    if name in ("mnist_cnn", "cifar_cnn"):  # models with dropout
        assert not np.allclose(train_a, logits)
        assert not np.array_equal(train_a, apply(params, x, train=True, rng=np.random.default_rng(3)))
    # float32 end to end: gradients too.
    loss, grads = value_and_grad(
        lambda p: ce(apply(p, x, train=True, rng=np.random.default_rng(2)), np.arange(3))
    )(params)
    assert loss.dtype == np.float32
    assert all(
        g.dtype == np.float32 and g.shape == p.shape for g, p in zip(tree.leaves(grads), tree.leaves(params))
    )


def test_knet_softmax_init_and_prediction():
    init, apply = models.build("knet_softmax")
    weight, bias = init(np.random.default_rng(0), (28, 28, 1))
    assert weight.shape == (10, 784) and bias.shape == (10,) and not bias.any()
    assert 0.09 < weight.std() < 0.11 and abs(weight.mean()) < 0.01
    x = np.random.default_rng(1).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(apply([weight, bias], x), x.reshape(4, -1) @ weight.T + bias, rtol=1e-6)


def test_keras_glorot_uniform_limits():
    init, _ = models.build("mnist_cnn")
    params = init(np.random.default_rng(0), (28, 28, 1))
    dense_kernel = params[5][0]  # flatten(9216) -> dense(128)
    limit = np.sqrt(6 / (9216 + 128))
    assert dense_kernel.shape == (9216, 128)
    assert np.abs(dense_kernel).max() <= limit and np.abs(dense_kernel).max() > 0.99 * limit
    conv_kernel = params[0][0]
    assert conv_kernel.shape == (3, 3, 1, 32)
    assert np.abs(conv_kernel).max() <= np.sqrt(6 / (9 * 1 + 9 * 32))
    assert not params[0][1].any()


def test_mlp_width_option_and_bad_names():
    init, _ = models.build("mlp", hidden=16)
    assert tree.count(init(np.random.default_rng(0), (4,))) == 4 * 16 + 16 + 16 * 10 + 10
    with pytest.raises(ValueError, match="unknown model"):
        models.build("resnet")
    with pytest.raises(ValueError, match="bad options"):
        models.build("mnist_cnn", hidden=3)


def test_value_and_grad_matches_autograd_and_zero_fills():
    rng = np.random.default_rng(0)
    params = [[rng.standard_normal((3, 2)), rng.standard_normal(2)], [], [rng.standard_normal(4)]]
    x = rng.standard_normal((5, 3))

    def fun(p):  # the third array is unused: its gradient must be zeros
        return anp.sum(anp.tanh(x @ p[0][0] + p[0][1]))

    value, grads = value_and_grad(fun)(params)
    expected = autograd.grad(fun)(params)
    assert value == fun(params)
    np.testing.assert_allclose(grads[0][0], expected[0][0])
    np.testing.assert_allclose(grads[0][1], expected[0][1])
    assert grads[1] == [] and grads[2][0].shape == (4,) and not grads[2][0].any()
    with pytest.raises(ValueError, match="does not depend"):
        value_and_grad(lambda p: 3.0)(params)
