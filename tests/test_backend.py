"""Backends: the same autograd code on NumPy and on a GPU array module.

Every device test runs twice: on `strictdevice`, a CPU stand-in that refuses
NumPy-only paths the way CuPy does (so CI exercises the device code), and on
CuPy when a CUDA GPU is visible (skipped otherwise, with the reason).
"""

import json
import subprocess
import sys
import types

import autograd.numpy as anp
import numpy as np
import pytest
import strictdevice

from pipeline import cli
from pipeline.bench import run as bench_run
from pipeline.common.errors import SoftlossError
from pipeline.core import autograd_device, backend, layers, losses, models, optim, tree
from pipeline.core.autodiff import value_and_grad
from pipeline.core.primitives import logspace
from pipeline.datasets import batches, prepare
from pipeline.runs import inference, rundir, train
from pipeline.runs.config import RunConfig


def _cupy_or_reason():
    try:
        import cupy
    except ImportError:
        return None, "CuPy is not installed"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "CuPy sees no CUDA GPU"
    except Exception as error:  # no driver, no device
        return None, f"CuPy finds no usable CUDA GPU ({type(error).__name__})"
    return cupy, None


CUPY, NO_GPU = _cupy_or_reason()
needs_gpu = pytest.mark.skipif(CUPY is None, reason=f"needs a CUDA GPU: {NO_GPU}")
STRICT = backend.device_backend(strictdevice, "strict", "CPU stand-in for CuPy")


@pytest.fixture(params=["strict", pytest.param("cupy", marks=needs_gpu)])
def device(request):
    return STRICT if request.param == "strict" else backend.resolve("cupy")


def assert_close(host, on_device, device, rtol=1e-4):
    """Relative to the largest magnitude (the issue's float32 parity: 1e-4)."""
    got = device.to_host(on_device)
    for a, b in zip(tree.leaves(host), tree.leaves(got)):
        assert type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape
        scale = max(float(np.max(np.abs(a))) if a.size else 0.0, 1e-30)
        assert float(np.max(np.abs(a - b))) <= rtol * scale, (float(np.max(np.abs(a - b))), scale)


def grads_on(device, fun, params, *args):
    """(value, grads) of fun(params, *args) computed on `device`, with the device's array types checked."""
    value, grads = value_and_grad(fun)(device.to_device(params), *device.to_device(list(args)))
    assert all(isinstance(g, device.xp.ndarray) for g in tree.leaves(grads))
    return device.to_host(value), grads


# ------------------------------------------------------------- choosing one
def test_resolve_numpy_and_bad_names():
    assert backend.resolve("numpy") is backend.NUMPY and not backend.NUMPY.on_device
    assert backend.resolve(STRICT) is STRICT
    with pytest.raises(SoftlossError, match="backend must be one of auto, numpy, cupy, got 'gpu'"):
        backend.resolve("gpu")


def test_cupy_missing_is_an_error_and_auto_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy -> ImportError
    with pytest.raises(SoftlossError, match="CuPy is not installed"):
        backend.resolve("cupy")
    said = []
    assert backend.resolve("auto", log=said.append) is backend.NUMPY
    assert said and "using NumPy on the CPU" in said[0] and "not installed" in said[0]


def test_cupy_without_a_gpu_is_an_error_and_auto_falls_back(monkeypatch):
    class NoDevice(RuntimeError):
        pass

    def device_count():
        raise NoDevice("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=device_count))
    )
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(SoftlossError, match="no usable CUDA GPU .NoDevice: cudaErrorNoDevice"):
        backend.resolve("cupy")
    assert backend.resolve("auto", log=lambda *_: None) is backend.NUMPY


@pytest.mark.skipif(CUPY is not None, reason="a CUDA GPU is visible here")
def test_cli_asking_for_cupy_without_a_gpu_says_why(mnist_h5, tmp_path, capsys):
    code = cli.main(
        [
            "train",
            "--data",
            str(mnist_h5),
            "--model",
            "mlp",
            "--loss",
            "ce",
            "--optimizer",
            "sgd",
            "--epochs",
            "1",
            "--batch-size",
            "10",
            "--seed",
            "1",
            "--backend",
            "cupy",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: backend cupy:") and "Traceback" not in err
    assert not (tmp_path / "run" / "model.npz").exists()


def test_the_stand_in_is_as_strict_as_cupy():
    x = strictdevice.asarray(np.arange(6.0).reshape(2, 3))
    with pytest.raises(TypeError, match="implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError):
        x + np.ones(3)  # mixing with a host array
    with pytest.raises(TypeError, match="NumPy array as index"):
        x[np.array([0, 1])]
    with pytest.raises(TypeError, match="NumPy array as value"):
        x[0] = np.zeros(3)
    assert isinstance(x.sum(), strictdevice.ndarray) and x.sum().shape == ()  # 0-d, as CuPy returns
    assert backend.array_module(x) is strictdevice and backend.array_module(np.ones(2)) is np


def test_the_stand_in_has_cupys_names_and_no_others():
    """CuPy as published (tests/cupy_names.json): what NumPy has and CuPy lacks is refused."""
    x = strictdevice.asarray(np.arange(6.0))
    assert strictdevice.log1p is np.log1p and strictdevice.CUPY["version"].startswith("14.")
    with pytest.raises(AttributeError, match="cupy has no attribute 'insert'"):
        strictdevice.insert  # noqa: B018 (a NumPy-only function)
    with pytest.raises(TypeError, match="no implementation found for 'numpy.insert'"):
        np.insert(x, 0, 1.0)  # dispatched from NumPy: CuPy has no insert to take it
    with pytest.raises(AttributeError, match="cupy.ndarray has no attribute 'resize'"):
        x.resize((3, 2))
    with pytest.raises(AttributeError, match="cupy.random.Generator has no attribute 'bytes'"):
        strictdevice.random.default_rng(0).bytes(4)
    assert np.add.reduce(x).shape == () and np.add.outer(x, x).shape == (6, 6)  # ufunc methods CuPy has


# ------------------------------------------------------- autograd's VJPs
def _dot_ops():
    return {
        "dot 2x2": lambda x: anp.dot(x[0], anp.transpose(x[1])),
        "dot 3x1": lambda x: anp.dot(x, x[0, 0]),
        "dot 1x1": lambda x: anp.dot(x[0, 0], x[1, 1]),
        "dot 3x2": lambda x: anp.dot(x, anp.transpose(x[0])),
        "dot 0x3": lambda x: anp.dot(x[0, 0, 0], x),
    }


OPS = {
    "sum all": lambda x: anp.sum(x),
    "sum axis": lambda x: anp.sum(x, axis=1),
    "sum axes keepdims": lambda x: anp.sum(x, axis=(0, -1), keepdims=True),
    "mean": lambda x: anp.mean(x, axis=1),
    "max": lambda x: anp.max(x, axis=2),
    "min": lambda x: anp.min(x, axis=0),
    "prod": lambda x: anp.prod(x, axis=1),
    "var": lambda x: anp.var(x, axis=0),
    "std": lambda x: anp.std(x, axis=2),
    **_dot_ops(),
    "where": lambda x: anp.where(x > 0, x, 3 * x),
    "basic index": lambda x: x[1:, ::2, 3],
    "repeated index": lambda x: x[:, [0, 0, 2]],
    "list index": lambda x: x[[2, 0, 2]],
    "concatenate": lambda x: anp.concatenate([x, 2 * x[:1]], axis=0),
    "einsum sum": lambda x: anp.einsum("ijk->i", x),
    "einsum pair": lambda x: anp.einsum("ijk,ijk->j", x, x),
    "einsum vector": lambda x: anp.einsum("ijk,k->ij", x, x[0, 0]),
    "einsum ellipsis": lambda x: anp.einsum("...k,k->...", x, x[1, 2]),
    "logsumexp": lambda x: logspace.logsumexp(x),
}


def _scalar(op):
    return lambda x: anp.sum(anp.sin(op(x)))  # a nonlinearity, so every gradient entry differs


@pytest.mark.parametrize("name", OPS)
def test_patched_vjps_are_right_on_numpy(name, check_grads):
    check_grads(_scalar(OPS[name]), np.random.default_rng(0).standard_normal((3, 4, 5)))


def test_device_vjps_keep_float32():
    """On a device the replaced VJPs keep float32 (autograd's own, which NumPy
    arrays keep, turn some of these float64)."""
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for op in (
        lambda x: anp.mean(x),
        lambda x: anp.where(x > 0, x, 0.5 * x),
        lambda x: anp.dot(x, x[0]),
        lambda x: anp.einsum("ij->i", x),
    ):
        _, grads = grads_on(STRICT, lambda p: anp.sum(op(p[0])), [x])
        assert grads[0].dtype == np.float32


@pytest.mark.parametrize("name", OPS)
def test_autograd_vjps_on_device(device, name):
    x = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    fun = lambda p: _scalar(OPS[name])(p[0])  # noqa: E731
    value, grads = value_and_grad(fun)([x])
    device_value, device_grads = grads_on(device, fun, [x])
    assert_close(np.asarray(value), device_value, backend.NUMPY)
    dtype = device.to_host(device_grads)[0].dtype  # float32, or float64 where autograd's own VJP turns it so
    assert dtype in (np.float32, grads[0].dtype)
    assert_close([grads[0].astype(dtype)], device_grads, device)


# ------------------------------------------------------------- the study
LOGITS = {
    "random": np.random.default_rng(0).standard_normal((6, 10)).astype(np.float32) * 3,
    "one-hot 1e4": (np.eye(10, dtype=np.float32)[[0, 3, 3, 9, 1, 2]] * 2e4 - 1e4),
}


@pytest.mark.parametrize("logits", LOGITS)
@pytest.mark.parametrize("loss", losses.LOSSES)
def test_losses_on_device(device, loss, logits):
    z, labels = LOGITS[logits], np.array([0, 3, 5, 9, 1, 2])
    fun = lambda p, y: losses.LOSSES[loss](p[0], y)  # noqa: E731
    value, grads = value_and_grad(fun)([z], labels)
    device_value, device_grads = grads_on(device, fun, [z], labels)
    assert np.isfinite(device_value) and abs(float(device_value) - float(value)) <= 1e-4 * max(
        1.0, abs(float(value))
    )
    assert_close(grads, device_grads, device)


def test_mixed_feedback_on_device(device):
    z, labels = LOGITS["random"], np.array([0, 3, 5, 9, 1, 2])
    negative = np.array([False, True, False, True, True, False])
    fun = lambda p, y, n: losses.mixed_feedback(p[0], y, n)  # noqa: E731
    _, grads = value_and_grad(fun)([z], labels, negative)
    assert_close(grads, grads_on(device, fun, [z], labels, negative)[1], device)


LAYERS = {
    "dense relu": (layers.dense(7, "relu"), (5, 12)),
    "conv valid": (layers.conv2d(4, (3, 3)), (3, 9, 8, 2)),
    "conv same relu": (layers.conv2d(4, (3, 3), padding="same", activation="relu"), (3, 9, 8, 2)),
    "conv 2x3": (layers.conv2d(3, (2, 3), padding="same"), (2, 7, 6, 3)),
    "maxpool odd": (layers.maxpool2d(), (2, 7, 9, 3)),
    "serial": (
        layers.serial(layers.conv2d(4), layers.maxpool2d(), layers.flatten, layers.dense(3)),
        (2, 8, 8, 1),
    ),
}


@pytest.mark.parametrize("name", LAYERS)
def test_layers_on_device(device, name):
    (init, apply), shape = LAYERS[name]
    _, params = init(np.random.default_rng(0), (-1, *shape[1:]))
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    fun = lambda p: anp.sum(anp.sin(apply(p[0], p[1])))  # noqa: E731
    _, grads = value_and_grad(fun)([params, x])
    assert_close(grads, grads_on(device, fun, [params, x])[1], device)


def test_dropout_on_device_is_seeded_scaled_and_stays_there(device):
    _, apply = layers.dropout(0.25)
    x = device.to_device(np.ones((200, 50), np.float32))
    first = apply([], x, train=True, rng=device.noise_rng(7, 1))
    again = apply([], x, train=True, rng=device.noise_rng(7, 1))
    other = apply([], x, train=True, rng=device.noise_rng(7, 2))
    assert isinstance(first, device.xp.ndarray) and first.dtype == np.float32
    first, again, other = device.to_host([first, again, other])
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert set(np.unique(first)) == {0.0, np.float32(1 / 0.75)} and abs((first == 0).mean() - 0.25) < 0.02


@pytest.mark.parametrize(
    "name,shape",
    [
        ("knet_softmax", (28, 28, 1)),
        ("mlp", (28, 28, 1)),
        ("mnist_cnn", (28, 28, 1)),
        ("cifar_cnn", (32, 32, 3)),
    ],
)
def test_models_on_device(device, name, shape):
    init, apply = models.build(name)
    params = init(np.random.default_rng(0), shape)
    rng = np.random.default_rng(1)
    x, y = rng.random((6, *shape), dtype=np.float32), rng.integers(0, 10, 6)
    fun = lambda p, x, y: losses.bce(apply(p, x), y)  # noqa: E731
    value, grads = value_and_grad(fun)(params, x, y)
    device_value, device_grads = grads_on(device, fun, params, x, y)
    assert abs(float(device_value) - float(value)) <= 1e-4 * abs(float(value))
    assert_close(grads, device_grads, device)
    noise = device.noise_rng(0, 1)  # training mode: dropout masks drawn on the device
    _, train_grads = grads_on(
        device, lambda p, x, y: losses.ce(apply(p, x, train=True, rng=noise), y), params, x, y
    )
    assert all(
        g.dtype == np.float32 and np.isfinite(g).all() for g in tree.leaves(device.to_host(train_grads))
    )


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
def test_optimizers_on_device(device, name):
    rng = np.random.default_rng(0)
    params = [rng.standard_normal((4, 3)).astype(np.float32), [rng.standard_normal(3).astype(np.float32)]]
    opt = optim.build(name, lr=0.01)
    host, on_device = (
        (params, opt.init(params)),
        (device.to_device(params), opt.init(device.to_device(params))),
    )
    for _step in range(3):
        grads = [rng.standard_normal((4, 3)).astype(np.float32), [rng.standard_normal(3).astype(np.float32)]]
        host = opt.update(host[0], grads, host[1])
        on_device = opt.update(on_device[0], device.to_device(grads), on_device[1])
    assert_close(host[0], on_device[0], device)
    assert_close(list(host[1].slots), list(on_device[1].slots), device)


# ----------------------------------------------------------------- runs
def _config(mnist_h5, **changes):
    settings = dict(
        data=str(mnist_h5),
        model="mlp",
        loss="ce",
        optimizer="sgd",
        epochs=2,
        batch_size=50,
        seed=3,
        hyperparameters={"lr": 0.1},
        model_options={"hidden": 16},
        train_size=600,
        test_size=300,
    )
    settings.update(changes)
    return RunConfig(**settings)


def _history(run_dir):
    return [
        {k: v for k, v in row.items() if k not in ("seconds", "eval_seconds")}
        for row in rundir.read_history(run_dir / "history.csv")
    ]


def test_run_on_device_matches_numpy_without_dropout(device, mnist_h5, tmp_path, monkeypatch):
    if device is STRICT:
        # The stand-in multiplies with the host's BLAS, where a row's product can round
        # otherwise in a product of another number of rows (OpenBLAS's Haswell kernels
        # do): to be the same bits, both evaluate in batches of the host's size.
        monkeypatch.setattr(inference, "DEVICE_EVAL_BATCH", inference.HOST_EVAL_BATCH)
    config = _config(mnist_h5)
    train.run(config, tmp_path / "cpu", quiet=True, backend="numpy")
    status = train.run(config, tmp_path / "dev", quiet=True, backend=device)
    assert status["status"] == "completed" and status["backend"] == device.name
    assert json.loads((tmp_path / "dev" / "status.json").read_text())["device"] == device.device
    cpu, dev = _history(tmp_path / "cpu"), _history(tmp_path / "dev")
    for a, b in zip(cpu, dev):
        for key in a:
            assert abs(a[key] - b[key]) <= (0 if device is STRICT else 2e-3) * max(1.0, abs(a[key])), key
    host_model, _ = rundir.load_arrays(tmp_path / "dev" / "model.npz")
    assert all(type(a) is np.ndarray and a.dtype == np.float32 for a in host_model)


def test_run_on_device_is_deterministic_and_resumes_exactly(device, mnist_h5, tmp_path):
    config = _config(
        mnist_h5,
        model="mnist_cnn",
        model_options={},
        optimizer="adadelta",
        hyperparameters={},
        train_size=256,
        test_size=128,
        batch_size=64,
    )
    train.run(config, tmp_path / "straight", quiet=True, backend=device)
    train.run(config, tmp_path / "twice", quiet=True, backend=device)
    train.run(RunConfig(**{**config.__dict__, "epochs": 1}), tmp_path / "resumed", quiet=True, backend=device)
    train.run(config, tmp_path / "resumed", quiet=True, backend=device)  # resumes after epoch 1
    straight = _history(tmp_path / "straight")
    assert len(straight) == 2
    assert straight == _history(tmp_path / "twice") == _history(tmp_path / "resumed")


def test_divergence_on_device_is_caught_and_the_last_finite_model_kept(device, mnist_h5, tmp_path):
    config = _config(
        mnist_h5,
        loss="negated_ce",
        hyperparameters={"lr": 1.0},
        epochs=20,
        batch_size=100,
        train_size=2000,
        test_size=200,
    )
    status = train.run(config, tmp_path, quiet=True, log=lambda *a: None, backend=device)
    assert status["status"] == "diverged" and status["epoch"] < 20
    assert "non-finite" in status["reason"] or "loss became" in status["reason"]
    arrays, _ = rundir.load_arrays(tmp_path / "model.npz")
    assert all(np.isfinite(a).all() for a in arrays)


def _cifar_h5(tmp_path, per_batch):
    from tinydata import cifar_spec, make_cifar_archive

    archive, _ = make_cifar_archive(per_batch=per_batch, seed=5)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    return prepare.prepare(cifar_spec(archive), tmp_path, tmp_path / "cifar10.h5", log=lambda *a: None)


def test_one_epoch_of_cifar10_on_device(device, tmp_path):
    """The paper's CIFAR-10 setting (cifar_cnn, RMSprop, batch 32, augmentation) for
    one epoch, the data resident on the device: a tiny file on the stand-in, a
    full-size one on a GPU."""
    per_batch = 40 if device is STRICT else 10_000
    config = RunConfig(
        data=str(_cifar_h5(tmp_path, per_batch)),
        model="cifar_cnn",
        loss="nllr",
        optimizer="rmsprop",
        hyperparameters={"lr": 1e-4, "decay": 1e-6},
        epochs=1,
        batch_size=32,
        seed=1,
        augment=True,
    )
    status = train.run(config, tmp_path / "run", quiet=True, backend=device)
    again = train.run(config, tmp_path / "again", quiet=True, backend=device)
    assert status["backend"] == device.name and status["epoch"] == 1
    (row,) = rundir.read_history(tmp_path / "run" / "history.csv")
    (same,) = rundir.read_history(tmp_path / "again" / "history.csv")
    # One epoch on the device, computed as the host computes, and the same again from the same seed.
    assert (
        np.isfinite(row["train_loss"])
        and row["train_loss"] != 0
        and {**row, "seconds": 0, "eval_seconds": 0} == {**same, "seconds": 0, "eval_seconds": 0}
        and status["status"] == again["status"]
    )
    print(f"one epoch of {5 * per_batch} CIFAR-10 images on {device.device}: {row['seconds']:.1f} s")


def test_benchmark_runs_on_a_device():
    said = []
    rows = bench_run.run(
        cases=["knet_softmax:8"], steps=1, repeats=1, alone=True, out=said.append, backend=STRICT
    )
    assert rows[0]["softloss"] > 0 and "strict" in said[1]


def test_augmentation_on_device_matches_the_host(device):
    """The same seed gives the same shifted and flipped batch where the images live."""
    images = (np.random.default_rng(0).random((16, 12, 10, 3)) * 255).astype(np.uint8)
    labels = np.arange(16) % 10
    host = list(batches.batches(images, labels, 8, np.random.default_rng(3), augment=True))
    on_device = list(
        batches.batches(*device.to_device([images, labels]), 8, np.random.default_rng(3), augment=True)
    )
    for (x, y), (dx, dy) in zip(host, on_device):
        np.testing.assert_array_equal(y, device.to_host(dy))
        np.testing.assert_allclose(device.to_host(dx), x, rtol=0, atol=1e-6)


def test_autograd_bridge_is_idempotent_and_rejects_complex():
    assert autograd_device.enable(strictdevice) is strictdevice
    with pytest.raises(TypeError, match="complex device arrays"):
        autograd_device.DeviceArrayVSpace(strictdevice.zeros(2, dtype=np.complex64))


def test_a_step_by_the_gpus_algorithms_never_loads_numba():
    """numba compiles the CPU's Winograd transforms, pooling and cross-entropy
    loops only: a GPU run (im2col + GEMM, pooling by quadrants, cross-entropy
    by NumPy's passes) must not need it, nor its LLVM."""
    import sys

    code = (
        "import sys, numpy as np\n"
        "from pipeline.core import models\n"
        "from pipeline.core.autodiff import value_and_grad\n"
        "from pipeline.core.losses import LOSSES\n"
        "from pipeline.core.settings import SETTINGS\n"
        "SETTINGS.convolution = sys.argv[1]\n"
        "SETTINGS.pooling = sys.argv[2]\n"
        "SETTINGS.cross_entropy = sys.argv[3]\n"
        "init, apply = models.build('cifar_cnn')\n"
        "params = init(np.random.default_rng(0), (32, 32, 3))\n"
        "x, y = np.zeros((2, 32, 32, 3), np.float32), np.array([0, 1])\n"
        "value_and_grad(lambda p: LOSSES['ce'](apply(p, x), y))(params)\n"
        "print('numba' in sys.modules)"
    )
    loaded = {
        ways: subprocess.run(
            [sys.executable, "-c", code, *ways], capture_output=True, text=True, check=True
        ).stdout.strip()
        for ways in (
            ("direct", "quadrants", "numpy"),
            ("auto", "quadrants", "numpy"),
            ("direct", "compiled", "numpy"),
            ("direct", "quadrants", "compiled"),
        )
    }
    assert loaded == {
        ("direct", "quadrants", "numpy"): "False",
        ("auto", "quadrants", "numpy"): "True",
        ("direct", "compiled", "numpy"): "True",
        ("direct", "quadrants", "compiled"): "True",
    }
