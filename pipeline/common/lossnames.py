"""The study's loss names: which exact loss each Keras form computes, the order
the report lists them in, and the Keras forms' constants. A leaf: the report
reads these without loading the losses themselves (pipeline.core.losses)."""

from __future__ import annotations

import numpy as np

# The study's form axis: each loss of Table I, exact (log space) -> Keras form.
KERAS_FORMS = {"ce": "ce_keras", "bce": "bce_keras", "nllr": "nllr_keras"}
EXACT_OF = {keras: exact for exact, keras in KERAS_FORMS.items()}  # Keras form -> the loss it computes
# Losses of an example whose label is known to be wrong (negative feedback).
NEGATIVE_LOSSES = ("complement", "negated_ce", "scl_exp", "pc")
# The classification losses researchers compare against today (pipeline.core.baselines).
LITERATURE = ("label_smoothing", "focal", "poly1", "crl", "squared_hinge", "square_logits")
# The paper's losses, then the literature's, then negative feedback's.
LOSS_ORDER = (
    "ce",
    "ce_keras",
    "bce",
    "bce_keras",
    "nllr",
    "nllr_keras",
    "mse",
    *LITERATURE,
    *NEGATIVE_LOSSES,
)
KERAS_EPSILON = 1e-7  # K.epsilon() of Keras 2.1: the Keras forms clip probabilities to [eps, 1 - eps]


def loss_order(loss):
    """Sort key: the study's losses in LOSS_ORDER, any other after them."""
    return LOSS_ORDER.index(loss) if loss in LOSS_ORDER else len(LOSS_ORDER)


def nllr_keras_floor(n_classes):
    """The least value of `nllr_keras` with C classes (float32 bounds):
    log((C - 1) eps) - log(1 - eps), -13.92 for C = 10."""
    low = np.float32(KERAS_EPSILON)
    return float(np.log((n_classes - 1) * np.float64(low)) - np.log(np.float64(np.float32(1) - low)))
