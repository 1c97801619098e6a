"""The literature's losses (pipeline.core.baselines) and the complementary-label
ones, each against an independent float64 reference of its formula (40 digits
where the log-space forms matter), on random, wide (+-1e4) and 100-class
logits; their gradients against finite differences; float32 kept."""

import autograd
import mpmath
import numpy as np
import pytest

from pipeline.common.lossnames import KERAS_EPSILON
from pipeline.core import losses

mpmath.mp.dps = 40
LITERATURE = ["label_smoothing", "focal", "poly1", "crl", "squared_hinge", "square_logits", "scl_exp", "pc"]
LOW, HIGH = float(np.float32(KERAS_EPSILON)), float(np.float32(1) - np.float32(KERAS_EPSILON))


def _reference(z, c, eps=0.1, gamma=2.0, poly_eps=1.0, alpha=1.0, beta=0.25, k=1.0, m=1.0):
    """Every loss of one row from its definition: p = softmax(z) with 1 - p_c
    summed from the other classes, in 40-digit arithmetic."""
    z = [mpmath.mpf(float(v)) for v in z]
    C, top = len(z), max(z)
    e = [mpmath.exp(v - top) for v in z]
    total = mpmath.fsum(e)
    log_p = [mpmath.log(v) - mpmath.log(total) for v in e]
    p_c, not_p_c = e[c] / total, mpmath.fsum(e[j] for j in range(C) if j != c) / total
    clipped = min(max(p_c, LOW), HIGH)
    t = [1 if j == c else -1 for j in range(C)]
    return {
        "label_smoothing": -(1 - eps) * log_p[c] - eps / C * mpmath.fsum(log_p),
        "focal": -(not_p_c**gamma) * log_p[c],
        "poly1": -log_p[c] + poly_eps * not_p_c,
        "crl": mpmath.log((alpha - clipped) ** beta / clipped + KERAS_EPSILON),
        "squared_hinge": mpmath.fsum(max(0, 1 - t[j] * z[j]) ** 2 for j in range(C)),
        "square_logits": (k * (z[c] - m) ** 2 + mpmath.fsum(z[j] ** 2 for j in range(C) if j != c)) / C,
        "scl_exp": mpmath.exp(p_c),
        "pc": mpmath.fsum(1 / (1 + mpmath.exp(-(z[c] - z[j]))) for j in range(C) if j != c),
    }


def _cases():
    rng = np.random.default_rng(36)
    rows = [
        ("random", rng.standard_normal((5, 10)) * 3, rng.integers(0, 10, 5)),
        ("wide +-1e4", rng.uniform(-1e4, 1e4, (5, 10)), rng.integers(0, 10, 5)),
        ("one-hot 1e4", np.where(np.arange(10) == 2, 1e4, -1e4)[None].repeat(2, 0), np.array([2, 7])),
        ("C=100", rng.standard_normal((3, 100)) * 5, np.array([0, 50, 99])),
    ]
    return [(name, z.astype(np.float32), y) for name, z, y in rows]


CASES = _cases()


@pytest.mark.parametrize("loss", LITERATURE)
@pytest.mark.parametrize("name,logits,labels", CASES, ids=[c[0] for c in CASES])
def test_each_loss_is_its_formula_in_float32(loss, name, logits, labels):
    # crl as its authors compute it, 1 - p~ in the logits' float32: near p = 1 it keeps ~1e-3.
    tolerance = 1e-3 if loss == "crl" else 1e-5
    for z, c in zip(logits, labels):
        ours = losses.LOSSES[loss](z[None], c[None])
        assert ours.dtype == np.float32 and np.isfinite(ours), (loss, name)
        ref = float(_reference(z, int(c))[loss])
        assert abs(float(ours) - ref) <= tolerance * abs(ref) + 1e-30, (loss, name, float(ours), ref)


@pytest.mark.parametrize("loss", LITERATURE)
@pytest.mark.parametrize("name,logits,labels", CASES, ids=[c[0] for c in CASES])
def test_each_gradient_is_finite_and_float32(loss, name, logits, labels):
    grad = autograd.grad(losses.LOSSES[loss])(logits, labels)
    assert grad.dtype == np.float32 and np.all(np.isfinite(grad)), (loss, name)


@pytest.mark.parametrize("loss", LITERATURE)
def test_each_gradient_matches_finite_differences_float64(loss, check_grads):
    rng = np.random.default_rng(7)
    logits, labels = rng.standard_normal((6, 10)) * 3, rng.integers(0, 10, 6)
    check_grads(lambda z: losses.LOSSES[loss](z, labels), logits)


def test_options_are_the_greek_letters_and_checked():
    rng = np.random.default_rng(3)
    z, c = rng.standard_normal((4, 10)).astype(np.float32), rng.integers(0, 10, 4)
    for name, options, key in (
        ("label_smoothing", {"eps": 0.3}, {"eps": 0.3}),
        ("focal", {"gamma": 0.5}, {"gamma": 0.5}),
        ("poly1", {"eps": 2.0}, {"poly_eps": 2.0}),
        ("crl", {"beta": 1.0}, {"beta": 1.0}),
        ("square_logits", {"k": 3.0, "m": 5.0}, {"k": 3.0, "m": 5.0}),
    ):
        ours = float(losses.build(name, **options)(z, c))
        ref = float(np.mean([float(_reference(row, int(label), **key)[name]) for row, label in zip(z, c)]))
        assert abs(ours - ref) <= 1e-3 * abs(ref), (name, ours, ref)
    with pytest.raises(ValueError, match="loss 'focal' has no option eps \\(it takes gamma\\)"):
        losses.build("focal", eps=0.1)
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        losses.build("hinge")


def test_crl_at_beta_1_is_nllrs_keras_form_up_to_its_1e7():
    rng = np.random.default_rng(5)
    z, c = rng.standard_normal((64, 10)).astype(np.float32) * 4, rng.integers(0, 10, 64)
    assert abs(float(losses.build("crl", beta=1.0)(z, c)) - float(losses.nllr_keras(z, c))) < 1e-3


@pytest.mark.parametrize("treatment", ["complement", "scl_exp", "pc", "negated_ce"])
def test_mixed_feedback_trains_known_wrong_labels_with_each_treatment(treatment):
    rng = np.random.default_rng(11)
    z, labels = rng.standard_normal((8, 10)), rng.integers(0, 10, 8)
    negative = np.arange(8) % 2 == 1
    mixed = float(losses.mixed_feedback(z, labels, negative, on_negative=treatment))
    known = [float(losses.ce(z[i : i + 1], labels[i : i + 1])) for i in range(0, 8, 2)]
    wrong = [float(losses.LOSSES[treatment](z[i : i + 1], labels[i : i + 1])) for i in range(1, 8, 2)]
    assert abs(mixed - np.mean(known + wrong)) < 1e-9
