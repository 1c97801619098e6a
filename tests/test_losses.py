import autograd
import mpmath
import numpy as np
import pytest

from pipeline.common.lossnames import KERAS_EPSILON, KERAS_FORMS, nllr_keras_floor
from pipeline.core.losses import LOSSES, mixed_feedback
from pipeline.core.primitives import logspace
from pipeline.core.primitives.logspace import log_odds, logsumexp, softplus
from pipeline.core.settings import SETTINGS
from pipeline.core.targets import one_hot

mpmath.mp.dps = 40
TINY = float(np.finfo(np.float32).tiny)  # below it float32 has no relative precision
# The study's log-space forms (the literature's: tests/test_baselines.py).
EXACT = ["bce", "ce", "complement", "mse", "negated_ce", "nllr"]


# ------------------------------------------------------------------ reference
def _reference_row(z, label):
    """Every loss of one row from the definitions, in 40-digit arithmetic.

    p_k = e^{z_k} / S with S = sum_j e^{z_j}; log(1 - p_k) = log(S_{-k} / S)
    with S_{-k} = sum_{j != k} e^{z_j} summed directly (no 1 - p anywhere)."""
    z = [mpmath.mpf(float(v)) for v in z]
    e = [mpmath.exp(v) for v in z]
    total = mpmath.fsum(e)
    top = max(range(len(z)), key=lambda k: z[k])
    others_top = mpmath.fsum(e[j] for j in range(len(z)) if j != top)

    def others(k):  # S_{-k}; only the top class can make S - e_k cancel
        return others_top if k == top else total - e[k]

    log_p = [v - mpmath.log(total) for v in z]
    log_not_p = [mpmath.log(others(k)) - mpmath.log(total) for k in range(len(z))]
    p = [mpmath.exp(v) for v in log_p]
    c = label
    return {
        "ce": -log_p[c],
        "bce": -log_p[c] - mpmath.fsum(log_not_p[k] for k in range(len(z)) if k != c),
        "nllr": -(log_p[c] - mpmath.log(others(c)) + mpmath.log(total)),
        "mse": mpmath.fsum((p[k] - (1 if k == c else 0)) ** 2 for k in range(len(z))),
        "complement": -log_not_p[c],
        "negated_ce": log_p[c],
        "softmax": p,
    }


def _cases():
    rng = np.random.default_rng(1234)
    big = 1e4
    rows = [
        ("random", rng.standard_normal((6, 10)) * 3, rng.integers(0, 10, 6)),
        ("uniform +-1e4", rng.uniform(-big, big, (6, 10)), rng.integers(0, 10, 6)),
        ("one-hot +-1e4", np.array([[big] + [-big] * 9] * 3), np.array([0, 1, 9])),
        ("two tops", np.array([[big, big] + [-big] * 8] * 3), np.array([0, 1, 5])),
        ("ties", np.full((3, 10), 7.0), np.array([0, 4, 9])),
        ("ties at +1e4", np.full((2, 10), big), np.array([0, 3])),
        (
            "near one-hot",
            np.array([[20.0] + [0.0] * 9, [0.0] * 9 + [30.0], [0.0, 90.0] + [0.0] * 8]),
            np.array([0, 0, 1]),
        ),
        (
            "close ties",
            np.array([[0.0, 0.0, -20.0], [5.0, 5.0, -25.0], [3.0, 3.0, 3.0 - 40.0]]),
            np.array([0, 1, 2]),
        ),
        ("two classes", np.array([[big, -big], [0.5, 0.5], [-3.0, 4.0]]), np.array([1, 0, 1])),
        ("C=1000 random", rng.standard_normal((2, 1000)) * 10, np.array([0, 999])),
        ("C=1000 +-1e4", rng.uniform(-big, big, (2, 1000)), np.array([5, 500])),
        ("C=1000 one-hot", np.where(np.arange(1000) == 3, big, -big)[None].repeat(2, 0), np.array([3, 4])),
    ]
    return [(name, z.astype(np.float32), y) for name, z, y in rows]


CASES = _cases()


@pytest.mark.parametrize("loss", EXACT)
@pytest.mark.parametrize("name,logits,labels", CASES, ids=[c[0] for c in CASES])
def test_loss_matches_high_precision_reference(loss, name, logits, labels):
    for z, label in zip(logits, labels):
        ours = LOSSES[loss](z[None], label[None])
        assert ours.dtype == np.float32
        assert np.isfinite(ours), f"{loss} not finite on {name}"
        # The reference sees exactly the float32 inputs the loss saw.
        ref = float(_reference_row(z, int(label))[loss])
        # 1e-5 relative, down to float32's smallest normal number.
        assert abs(float(ours) - ref) <= 1e-5 * abs(ref) + TINY, (loss, name, float(ours), ref)


@pytest.mark.parametrize("loss", sorted(LOSSES))
@pytest.mark.parametrize("name,logits,labels", CASES, ids=[c[0] for c in CASES])
def test_gradients_finite_and_float32(loss, name, logits, labels):
    grad = autograd.grad(LOSSES[loss])(logits, labels)
    assert grad.dtype == np.float32
    assert np.all(np.isfinite(grad)), f"{loss} gradient not finite on {name}"


@pytest.mark.parametrize("name,logits,labels", CASES, ids=[c[0] for c in CASES])
def test_ce_gradient_is_softmax_minus_onehot(name, logits, labels):
    grad = autograd.grad(LOSSES["ce"])(logits, labels)
    n, c = logits.shape
    expected = np.array(
        [[float(p) for p in _reference_row(z, int(y))["softmax"]] for z, y in zip(logits, labels)]
    )
    expected = (expected - np.eye(c)[labels]) / n
    np.testing.assert_allclose(grad, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_gradient_matches_finite_differences_float64(loss, check_grads):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    check_grads(lambda z: LOSSES[loss](z, labels), logits)


@pytest.mark.parametrize("on_negative", ["complement", "negated_ce"])
def test_mixed_feedback_rows_use_ce_or_negative_loss(on_negative, check_grads):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((8, 10)) * 2).astype(np.float32)
    labels = rng.integers(0, 10, 8)
    negative = np.array([True, False] * 4)
    mixed = mixed_feedback(logits, labels, negative, on_negative=on_negative)
    per_row = [
        (LOSSES[on_negative] if neg else LOSSES["ce"])(z[None], y[None])
        for z, y, neg in zip(logits, labels, negative)
    ]
    np.testing.assert_allclose(mixed, np.mean(per_row), rtol=1e-6)
    check_grads(
        lambda z: mixed_feedback(z, labels, negative, on_negative=on_negative), logits.astype(np.float64)
    )


def test_primitives_match_finite_differences(check_grads):
    rng = np.random.default_rng(11)
    z = rng.standard_normal((5, 7)) * 4
    for fun in (
        lambda z: np.sum(np.sin(log_odds(z))),
        lambda z: np.sum(np.cos(logsumexp(z))),
        lambda z: np.sum(np.sin(softplus(z))),
    ):
        check_grads(fun, z)


def test_row_max_is_numpys_max_at_the_first_argmax():
    rows = np.array(
        [[1, 3, 3, 0], [-0.0, 0.0, -1, -2], [np.nan, 1, np.inf, 2], [-np.inf] * 4, [2, np.nan, 5, 1]],
        np.float32,
    )
    m, column = logspace.row_max(rows)
    np.testing.assert_array_equal(m, rows.max(axis=1, keepdims=True))
    np.testing.assert_array_equal(column, [1, 0, 0, 0, 1])


def _ce_and_gradient(z, targets):
    vjp, loss = autograd.make_vjp(logspace.cross_entropy)(z, targets)
    return loss, vjp(np.random.default_rng(4).standard_normal(len(z)).astype(z.dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [2, 7, 8, 10, 17, 128])
def test_compiled_cross_entropy_is_the_numpy_passes_bit_for_bit(classes, dtype, monkeypatch):
    rng = np.random.default_rng(classes)
    z = (rng.standard_normal((40, classes)) * np.exp(rng.uniform(-4, 9, (40, 1)))).astype(
        dtype
    )  # rows to |z| ~ 1e4
    z[0], z[1], z[2] = 0.0, -0.0, z[2, 0]  # ties, signed zeros
    z[3, -1], z[4, 0], z[5, 1], z[6] = np.nan, np.inf, -np.inf, np.inf
    targets = one_hot(rng.integers(0, classes, 40), classes, dtype)
    targets[7] = rng.dirichlet(np.ones(classes))  # soft targets: the true logit is a sum in NumPy's order
    assert logspace._softmax_rows(z, targets) is not None
    with np.errstate(invalid="ignore", over="ignore"):
        compiled = _ce_and_gradient(z, targets)
        monkeypatch.setattr(SETTINGS, "cross_entropy", "numpy")
        passes = _ce_and_gradient(z, targets)
    for got, expected in zip(compiled, passes):
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()


def test_compiled_cross_entropy_only_where_numpy_adds_in_its_order():
    z, targets = np.zeros((4, 10), np.float32), one_hot(np.arange(4), 10, np.float32)
    assert logspace._softmax_rows(z, targets) is not None
    wide = (np.zeros((4, 129), np.float32), one_hot(np.arange(4), 129, np.float32))  # NumPy halves long rows
    for args in (
        wide,
        (np.asfortranarray(z), targets),
        (z, targets.astype(np.float64)),
        (z.astype(np.float16), targets.astype(np.float16)),
        (z[None], targets[None]),
        (z.astype(">f4"), targets.astype(">f4")),
    ):
        assert logspace._softmax_rows(*args) is None


def test_log_odds_is_logit_of_softmax():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((4, 6))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(log_odds(z), np.log(p / (1 - p)), rtol=1e-12)


def test_nllr_is_unbounded_below_but_finite():
    labels = np.array([0])
    values = [LOSSES["nllr"](np.array([[gap, 0.0, 0.0]], np.float32), labels) for gap in (10.0, 100.0, 1e4)]
    assert values[0] > values[1] > values[2]
    assert np.isfinite(values[2]) and values[2] < -9000


def test_negated_ce_keeps_falling_where_complement_stops():
    # Pushing the wrong class's logit down: complement's loss saturates at 0,
    # the negated cross-entropy keeps falling without bound.
    labels = np.array([0])
    logits = [np.array([[-gap, 0.0, 0.0]], np.float32) for gap in (10.0, 100.0, 1000.0)]
    complement = [float(LOSSES["complement"](z, labels)) for z in logits]
    negated = [float(LOSSES["negated_ce"](z, labels)) for z in logits]
    assert complement[-1] == 0.0 and complement[0] < 1e-4
    assert negated[0] > negated[1] > negated[2] < -999


@pytest.mark.parametrize(
    "logits,labels,message",
    [
        (np.zeros((2, 1), np.float32), np.array([0, 0]), "C >= 2"),
        (np.zeros((2, 3), np.float32), np.array([0, 3]), r"\[0, 3\)"),
        (np.zeros((2, 3), np.float32), np.array([0]), "does not match"),
        (np.zeros((2, 3), np.int64), np.array([0, 1]), "floating point"),
        (np.zeros((2, 3), np.float32), np.array([0.0, 1.0]), "integer"),
    ],
)
def test_bad_inputs_raise_clear_errors(logits, labels, message):
    with pytest.raises(ValueError, match=message):
        LOSSES["ce"](logits, labels)


def test_one_hot():
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3, np.float32), [[0, 0, 1], [1, 0, 0]])


# ------------------------------------------------------------------ Keras forms
LOW = float(np.float32(KERAS_EPSILON))
HIGH = float(np.float32(1) - np.float32(KERAS_EPSILON))  # Keras' float32 1 - eps


def _keras_reference(z, labels, form):
    """Per-row loss and d(loss)/dz of a Keras form in float64, straight from the
    formulas: p = softmax(z), p~ = clip(p, eps, 1 - eps), zero gradient where
    the clip was active, and the softmax Jacobian diag(p) - p p^T."""
    z = np.asarray(z, np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    q = np.clip(p, LOW, HIGH)
    y = np.eye(z.shape[1])[labels]
    if form == "ce":
        loss, d_q = -np.log((y * q).sum(1)), -y / q
    elif form == "bce":
        loss = -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(1)
        d_q = (-y / q + (1 - y) / (1 - q)) / z.shape[1]
    else:
        true, others = (y * q).sum(1, keepdims=True), ((1 - y) * q).sum(1, keepdims=True)
        loss, d_q = (np.log(others) - np.log(true))[:, 0], -y / true + (1 - y) / others
    d_p = d_q * ((p >= LOW) & (p <= HIGH))
    d_z = np.einsum("nj,njk->nk", d_p, p[:, :, None] * (np.eye(z.shape[1]) - p[:, None, :]))
    return loss, d_z


def _keras_cases():
    rng = np.random.default_rng(2024)
    c = 100
    moderate = rng.standard_normal((16, c)) * 4
    wide = rng.uniform(-1e4, 1e4, (16, c))
    confident = rng.standard_normal((16, c))
    confident[np.arange(16), np.arange(16) % c] += 40  # some rows far past the clip
    labels = rng.integers(0, c, 16)
    labels[:8] = np.arange(8)  # half of the confident rows are right, half wrong
    return {"moderate": (moderate, labels), "wide +-1e4": (wide, labels), "confident": (confident, labels)}


KERAS_CASES = _keras_cases()


def _assert_matches_keras_reference(loss_fn, form, logits, labels):
    z = logits.astype(np.float32)
    value = loss_fn(z, labels)
    grad = autograd.grad(loss_fn)(z, labels)
    assert value.dtype == np.float32 and grad.dtype == np.float32
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    ref_loss, ref_grad = _keras_reference(z, labels, form)
    n = len(labels)
    # float32 softmax: relative error ~1e-6 in p, so ~1e-6 absolute in log p.
    np.testing.assert_allclose(float(value), ref_loss.mean(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad / n, rtol=1e-3, atol=1e-6 / n)


@pytest.mark.parametrize("case", KERAS_CASES)
@pytest.mark.parametrize("form", KERAS_FORMS)
def test_keras_form_matches_float64_reference(form, case):
    _assert_matches_keras_reference(LOSSES[KERAS_FORMS[form]], form, *KERAS_CASES[case])


def test_unclipped_nllr_fails_the_keras_reference():
    # The same ratio on unclipped probabilities (the exact form): unbounded
    # below, so it must not pass for the Keras form.
    with pytest.raises(AssertionError):
        _assert_matches_keras_reference(LOSSES["nllr"], "nllr", *KERAS_CASES["wide +-1e4"])

    def unclipped(z, y):  # clipped value, but the gradient of the unclipped formula
        return LOSSES["nllr"](z, y) - autograd.tracer.getval(
            LOSSES["nllr"](z, y) - LOSSES["nllr_keras"](z, y)
        )

    with pytest.raises(AssertionError):
        _assert_matches_keras_reference(unclipped, "nllr", *KERAS_CASES["confident"])


@pytest.mark.parametrize("form", KERAS_FORMS)
def test_keras_form_gradient_matches_finite_differences_float64(form, check_grads):
    rng = np.random.default_rng(17)
    logits = rng.standard_normal((6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    check_grads(lambda z: LOSSES[KERAS_FORMS[form]](z, labels), logits)


@pytest.mark.parametrize("c", [2, 10, 100])
def test_nllr_keras_floor_and_zero_gradient_at_1e4(c):
    labels = np.arange(4) % c
    z = np.where(np.arange(c) == labels[:, None], 1e4, -1e4).astype(np.float32)
    value = LOSSES["nllr_keras"](z, labels)
    assert value.dtype == np.float32
    assert float(value) == pytest.approx(nllr_keras_floor(c), abs=1e-5)
    assert round(nllr_keras_floor(10), 2) == -13.92  # the floor the README and the report quote
    assert not np.any(autograd.grad(LOSSES["nllr_keras"])(z, labels))
    # Confidently wrong rows are clipped too: finite, and no gradient either.
    wrong = (labels + 1) % c
    assert np.isfinite(LOSSES["nllr_keras"](z, wrong)) and not np.any(
        autograd.grad(LOSSES["nllr_keras"])(z, wrong)
    )
    # The exact form keeps falling where the Keras form stopped.
    assert float(LOSSES["nllr"](z, labels)) < -1e4


def test_keras_forms_equal_exact_forms_inside_the_clip():
    # Away from the clip both forms are the same function (bce divided by C).
    rng = np.random.default_rng(8)
    z, labels = rng.standard_normal((8, 10)) * 2, rng.integers(0, 10, 8)
    for exact, keras in KERAS_FORMS.items():
        scale = 10 if exact == "bce" else 1
        np.testing.assert_allclose(scale * LOSSES[keras](z, labels), LOSSES[exact](z, labels), rtol=1e-12)
        np.testing.assert_allclose(
            scale * autograd.grad(LOSSES[keras])(z, labels),
            autograd.grad(LOSSES[exact])(z, labels),
            rtol=1e-9,
            atol=1e-15,
        )
