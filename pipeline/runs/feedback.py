"""Negative feedback: training examples whose only label is a class they are NOT.

A fraction q of the training examples keeps only a known-wrong label l instead
of its true label. Two ways of choosing l:
- `random`: a uniformly random wrong class;
- `model`: what real feedback looks like: the mistakes of an earlier model (a
  short cross-entropy run of Knet's linear softmax on part of the data). The
  examples it misclassified are flagged first, with l its (wrong) prediction;
  if q asks for more, the rest get its highest-scoring wrong class.
Treatments of the flagged examples (the others keep cross-entropy):
- `drop`: leave them out;
- `complement`: minimise -log p(y != l | x) (`losses.complement`);
- `negated_ce`: minimise +log p(l | x), the naive "negate the gradient".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..common.errors import SoftlossError
from ..common.lossnames import NEGATIVE_LOSSES
from ..core import models, optim
from ..core.autodiff import value_and_grad
from ..core.losses import ce
from ..datasets.batches import batches

WRONG_LABELS = ("random", "model")
TREATMENTS = ("drop", *NEGATIVE_LOSSES)  # drop the examples, or train them with a wrong-label loss


@dataclass(frozen=True)
class Feedback:
    """A run's negative feedback: a `fraction` q in [0, 1] of the training
    examples keeps only a wrong label chosen by `wrong_label`, and is trained
    by `treatment` (at q = 1, with nothing left to drop, not by dropping).
    Checked here, once, when it is made."""

    fraction: float
    wrong_label: str = "random"
    treatment: str = "complement"

    def __post_init__(self):
        if not 0 <= self.fraction <= 1:
            raise SoftlossError(f"feedback fraction must be in [0, 1], got {self.fraction}")
        if self.fraction == 1 and self.treatment == "drop":
            raise SoftlossError("feedback fraction 1 with treatment drop leaves no example to train on")
        if self.wrong_label not in WRONG_LABELS:
            raise SoftlossError(
                f"feedback wrong_label must be one of {', '.join(WRONG_LABELS)}, got {self.wrong_label!r}"
            )
        if self.treatment not in TREATMENTS:
            raise SoftlossError(
                f"feedback treatment must be one of {', '.join(TREATMENTS)}, got {self.treatment!r}"
            )

    @classmethod
    def from_dict(cls, settings):
        if not isinstance(settings, dict) or set(settings) != {"fraction", "wrong_label", "treatment"}:
            raise SoftlossError(f"feedback needs fraction, wrong_label and treatment, got {settings!r}")
        return cls(**settings)


def earlier_model_scores(images, labels, seed, n_train=2000, lr=0.1):
    """Logits of a knet_softmax trained with CE for one epoch on `n_train` examples."""
    rng = np.random.default_rng([seed, 21])
    part = rng.permutation(len(images))[:n_train]
    init, apply = models.build("knet_softmax", n_classes=int(labels.max()) + 1)
    params = init(rng, images.shape[1:])
    opt = optim.sgd(lr=lr)
    state = opt.init(params)
    step = value_and_grad(lambda p, x, y: ce(apply(p, x), y))
    for x, y in batches(images[part], labels[part], 100, rng):
        _, grads = step(params, x, y)
        params, state = opt.update(params, grads, state)
    scores = []
    for start in range(0, len(images), 5000):
        scores.append(apply(params, images[start : start + 5000].astype(np.float32) / 255.0))
    return np.concatenate(scores)


def assign(images, labels, fraction, wrong_label, seed):
    """(training labels, negative mask): a `fraction` of the examples flagged
    negative, their label replaced by a wrong class chosen by `wrong_label`
    (as a `Feedback` has checked them)."""
    labels = labels.astype(np.int64)
    n, n_classes = len(labels), int(labels.max()) + 1
    rng = np.random.default_rng([seed, 11])
    if wrong_label == "random":
        wrong = (labels + rng.integers(1, n_classes, n)) % n_classes
        order = rng.permutation(n)
    else:
        scores = earlier_model_scores(images, labels, seed)
        true_scores = scores[np.arange(n), labels]
        scores[np.arange(n), labels] = -np.inf
        wrong = scores.argmax(axis=1)  # its prediction where it erred, else its best wrong guess
        erred = scores.max(axis=1) > true_scores
        order = np.concatenate(
            [rng.permutation(np.flatnonzero(erred)), rng.permutation(np.flatnonzero(~erred))]
        )
    negative = np.zeros(n, bool)
    negative[order[: round(fraction * n)]] = True
    return np.where(negative, wrong, labels), negative
