"""One update of each optimizer against values worked out by hand from the
Keras 2 / Knet update rules, in float64 arithmetic on the test's side."""

import math

import numpy as np
import pytest

from pipeline.core import backend, optim, tree
from pipeline.core.settings import CHOICES, SETTINGS
from pipeline.kernels import parallel

P0 = [1.0, -2.0, 0.5]
G0 = [0.5, 0.1, -4.0]


def _run(opt, steps=1, grads=None):
    params = [np.array(P0, np.float32), [np.array([3.0], np.float32)]]
    grads = grads or [[np.array(G0, np.float32), [np.array([1.0], np.float32)]]] * steps
    state = opt.init(params)
    for g in grads:
        params, state = opt.update(params, g, state)
    assert state.step == len(grads)
    return params, state


def _close(actual, expected):
    assert actual.dtype == np.float32
    np.testing.assert_allclose(actual, np.array(expected, np.float32), rtol=2e-6, atol=1e-7)


def test_sgd_is_knet_loop():
    params, _state = _run(optim.sgd(lr=0.1))
    _close(params[0], [p - 0.1 * g for p, g in zip(P0, G0)])
    _close(params[1][0], [3.0 - 0.1])


def test_sgd_time_decay_second_step():
    params, _ = _run(optim.sgd(lr=0.1, decay=0.5), steps=2)
    # step 0: lr 0.1; step 1: lr 0.1 / (1 + 0.5)
    _close(params[0], [p - 0.1 * g - 0.1 / 1.5 * g for p, g in zip(P0, G0)])


# Two steps of lr 0.1, momentum 0.9 from P0 with gradient G0, worked out by hand
# from Keras 2's rule (v = 0.9 v - 0.1 g; p += v, or p += 0.9 v - 0.1 g with
# Nesterov): v = -0.1 g, then -0.19 g; p moves by -0.29 g in all, or with
# Nesterov by -0.19 g then -0.271 g (-0.461 g in all).
MOMENTUM_TWO_STEPS = {False: [0.855, -2.029, 1.66], True: [0.7695, -2.0461, 2.344]}


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_two_steps(nesterov):
    params, _ = _run(optim.momentum(lr=0.1, momentum=0.9, nesterov=nesterov), steps=2)
    _close(params[0], MOMENTUM_TWO_STEPS[nesterov])


def test_rmsprop_keras_with_decay():
    lr, rho, eps, decay = 1e-4, 0.9, 1e-7, 1e-6
    params, state = _run(optim.rmsprop(lr=lr, decay=decay), steps=2)
    expected = []
    for p, g in zip(P0, G0):
        a = 0.0
        for t in range(2):
            a = rho * a + (1 - rho) * g * g
            p = p - lr / (1 + decay * t) * g / (math.sqrt(a) + eps)
        expected.append(p)
    _close(params[0], expected)
    _close(state.slots[0][0], [(1 - rho**2) * g * g for g in G0])


def test_adadelta_keras_defaults():
    params, state = _run(optim.adadelta())
    expected, expected_d = [], []
    for p, g in zip(P0, G0):
        a = 0.05 * g * g
        u = g * math.sqrt(0 + 1e-7) / math.sqrt(a + 1e-7)
        expected.append(p - 1.0 * u)
        expected_d.append(0.05 * u * u)
    _close(params[0], expected)
    _close(state.slots[0][1], expected_d)


def test_adam_keras_bias_correction():
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-7
    params, _ = _run(optim.adam(), steps=2)
    expected = []
    for p, g in zip(P0, G0):
        m = v = 0.0
        for t in (1, 2):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            p = p - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (math.sqrt(v) + eps)
        expected.append(p)
    _close(params[0], expected)


@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_functional_float32_and_structure(name):
    opt = optim.build(name)
    params = [np.array(P0, np.float32), [np.array([3.0], np.float32)]]
    copy = [params[0].copy(), params[1][0].copy()]
    state = opt.init(params)
    grads = [np.array(G0, np.float32), [np.array([1.0], np.float32)]]
    new_params, new_state = opt.update(params, grads, state)
    assert isinstance(new_params, list) and isinstance(new_params[1], list)
    assert new_params[0].dtype == new_params[1][0].dtype == np.float32
    assert all(s.dtype == np.float32 for slots in new_state.slots for s in slots)
    np.testing.assert_array_equal(params[0], copy[0])
    np.testing.assert_array_equal(params[1][0], copy[1])
    assert state.step == 0 and new_state.step == 1
    assert not np.array_equal(new_params[0], params[0])


@pytest.mark.parametrize(
    "name,hyper,message",
    [
        ("sgd", {"lr": -1}, "lr"),
        ("rmsprop", {"rho": 1.5}, "rho"),
        ("adam", {"eps": 0}, "eps"),
        ("adadelta", {"momentum": 0.9}, "bad hyperparameters"),
        ("lbfgs", {}, "unknown optimizer"),
    ],
)
def test_bad_hyperparameters(name, hyper, message):
    with pytest.raises(ValueError, match=message):
        optim.build(name, **hyper)


def test_mismatched_grads():
    opt = optim.sgd()
    params = [np.zeros(2, np.float32)]
    with pytest.raises(ValueError, match="do not match"):
        opt.update(params, [np.zeros(2, np.float32), np.zeros(1, np.float32)], opt.init(params))


@pytest.mark.parametrize("update", CHOICES["optimizer_update"])
@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_large_arrays_in_chunks_on_two_threads_give_the_same_bits(name, update, monkeypatch):

    monkeypatch.setattr(SETTINGS, "optimizer_update", update)
    rng = np.random.default_rng(0)
    size = 2 * optim._CHUNK + 12_345  # three chunks
    params = [rng.standard_normal((size // 5, 5)).astype(np.float32)[:, ::-1], np.ones(3, np.float32)]
    grads = [
        rng.standard_normal((5, size // 5)).astype(np.float32).T,
        np.ones(3, np.float32),
    ]  # not C-ordered

    def two_steps(workers):
        parallel.set_workers(workers)
        opt = optim.build(name)
        p, state = params, opt.init(params)
        for _ in range(2):
            p, state = opt.update(p, grads, state)
        return p, state

    (one, one_state), (two, two_state) = two_steps(1), two_steps(2)  # the threads restored after (conftest)
    assert two[0].shape == params[0].shape and two[0].dtype == np.float32 and two[0].flags.c_contiguous
    np.testing.assert_array_equal(one[0], two[0])
    for a, b in zip(one_state.slots[0], two_state.slots[0]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(two[0], params[0])


VARIANTS = [(name, {}) for name in sorted(optim.OPTIMIZERS)] + [("momentum", {"nesterov": True})]


def _on_cpu_and_gpu(opt, params, grads, state=None):
    """The weights and slots after `grads` (a list of steps), updated by the CPU's
    compiled loops and by the NumPy rules a GPU runs, here on the strict stand-in
    for CuPy (NumPy underneath): two lists of arrays."""
    import strictdevice

    on_gpu = backend.device_backend(strictdevice, "strict", "the NumPy rules, as on a GPU")
    state = state or opt.init(params)
    cpu_params, cpu_state = params, state
    gpu_params, gpu_state = (
        on_gpu.to_device(params),
        optim.OptState(state.step, on_gpu.to_device(state.slots)),
    )
    for step in grads:
        cpu_params, cpu_state = opt.update(cpu_params, step, cpu_state)
        gpu_params, gpu_state = opt.update(gpu_params, on_gpu.to_device(step), gpu_state)
    cpu = tree.leaves((cpu_params, cpu_state.slots))
    gpu = tree.leaves(on_gpu.to_host((gpu_params, gpu_state.slots)))
    assert len(cpu) == len(gpu) == len(params) * (1 + len(cpu_state.slots[0]))
    return cpu, gpu


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,hyper", VARIANTS)
def test_the_cpus_compiled_loops_give_the_bits_of_the_rules_a_gpu_runs(name, hyper, dtype):
    rng = np.random.default_rng(1)
    # A transposed array of two chunks and a small one.
    params = [
        rng.standard_normal((5, optim._CHUNK // 2)).astype(dtype).T,
        rng.standard_normal(7).astype(dtype),
    ]
    grads = [[rng.standard_normal(p.shape).astype(dtype) * 0.1 for p in params] for _ in range(3)]
    cpu, gpu = _on_cpu_and_gpu(optim.build(name, decay=1e-3, **hyper), params, grads)
    for a, b in zip(cpu, gpu):
        assert a.dtype == dtype and a.flags.c_contiguous
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("rho", [0.9, 0.5, 0.95])  # 0.5 halves: every odd subnormal is a tie
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(optim.OPTIMIZERS))
def test_slots_decaying_through_the_subnormals_keep_the_rules_bits(name, dtype, rho):
    """A dead unit's slots (zero gradient) decay by rho through the subnormal
    floats; the loops decay float32 ones in integers, and must round as the
    float product does, bit for bit, signed zeros included."""
    rng = np.random.default_rng(2)
    size = 4096
    params = [rng.standard_normal(size).astype(dtype)]
    params[0][:8] = [0.0, -0.0, 0.0, -0.0, 1e-45, -1e-45, 1e-40, -1e-40]
    opt = optim.build(name, **({"rho": rho} if name in ("rmsprop", "adadelta") else {}))
    # Slots from zero through the subnormals to ordinary sizes, a few of them infinite.
    slots = 10.0 ** rng.uniform(-46, -30, (len(opt.init(params).slots[0]), size))
    slots[:, ::97] = 0.0
    slots[:, 5::101] = np.inf
    state = optim.OptState(0, (tuple(slot.astype(dtype) for slot in slots),))
    steps = []
    for _ in range(40):
        g = rng.standard_normal(size) * 10.0 ** rng.uniform(-25, -1, size)
        g[rng.random(size) < 0.6] = 0.0  # dead units: mostly zero gradients
        g[1::7] *= -0.0
        steps.append([g.astype(dtype)])
    tiny = np.finfo(np.float32).tiny
    assert (
        dtype != np.float32
        or not slots.size
        or ((slots > 0) & (slots.astype(np.float32) < tiny)).sum() > 1000
    )
    cpu, gpu = _on_cpu_and_gpu(opt, params, steps, state)
    bits = {np.float32: np.int32, np.float64: np.int64}[dtype]
    for a, b in zip(cpu, gpu):
        np.testing.assert_array_equal(a.view(bits), b.view(bits))
