"""Why the losses differ: where each loss's gradient went, epoch by epoch
(the runs' diagnostics.csv, pipeline.runs.diagnostics), and the explanation
docs/losses.md gives, tested against those numbers.

The explanation: exact NLLR's gradient on the true logit is exactly -1
however well an example is learned, so every example pushes alike for ever and
the logits run away; Keras' clip switches that push off, but only once an
example's margin passes about 16 + log(C - 1) nats; CE's push, p_c - 1, fades as
an example is learned, so its updates are led by the examples it still gets
wrong. Each claim is stated with what was measured and whether it held.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from ..common.lossnames import KERAS_EPSILON, loss_order
from .figures import epoch_axis, png, symlog_axis

PANELS = (
    ("grad_true_class", "true-class gradient (mean)", "linear"),
    ("grad_share_misclassified", "share of the gradient on misclassified examples", "linear"),
    ("grad_norm", "gradient norm per example (mean)", "log"),
    ("zero_grad_fraction", "examples with no gradient", "linear"),
    ("margin_p50", "median margin z_c - max_{j≠c} z_j (nats)", "symlog"),
    ("test_ece", "test calibration error (ECE)", "linear"),
)
EXACT_MINUS_ONE = 1e-3  # how close to -1 exact NLLR's true-class gradient must stay for the claim to hold


def _mean_curves(runs, key):
    """{loss: (epochs, mean over seeds of `key` at each epoch all its seeds reached)}."""
    by_loss = defaultdict(list)
    for run in runs:
        by_loss[run["loss"]].append(
            {row["epoch"]: row[key] for row in run["diagnostics"] if row.get(key) is not None}
        )
    curves = {}
    for loss in sorted(by_loss, key=loss_order):
        epochs = sorted(set.intersection(*(set(seed) for seed in by_loss[loss])))
        if epochs:
            curves[loss] = (epochs, [float(np.mean([seed[e] for seed in by_loss[loss]])) for e in epochs])
    return curves


def figure(runs, title):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5), layout="constrained", squeeze=False)
    last = max(len(run["diagnostics"]) for run in runs)
    for ax, (key, label, scale) in zip(axes.flat, PANELS):
        for i, (loss, (epochs, values)) in enumerate(_mean_curves(runs, key).items()):
            ax.plot(epochs, values, marker="." if len(epochs) < 30 else None, label=loss, color=f"C{i}")
        if scale == "symlog":
            symlog_axis(ax)
        elif scale == "log":
            ax.set_yscale("log")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
        epoch_axis(ax, last)
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside right upper")
    fig.suptitle(f"{title}: mean over seeds, on the probe of training examples (test set: ECE)")
    return png(fig)


def _series(runs, loss, key):
    """(epochs, values) of `key` for `loss`, mean over its seeds; None if not measured."""
    return _mean_curves([r for r in runs if r["loss"] == loss], key).get(loss)


def _nllr_claim(runs):
    found = _series(runs, "nllr", "grad_true_class")
    if found is None:
        return None
    _, values = found
    worst = max(abs(v + 1) for v in values)
    norms = _series(runs, "nllr", "logit_norm")[1]
    held = worst < EXACT_MINUS_ONE
    return {
        "claim": "exact NLLR pushes every example's true logit with the same force, -1, for ever",
        "held": held,
        "measured": f"exact NLLR's mean true-class gradient stayed within {worst:.1e} of -1 on every epoch "
        f"({min(values):.4f} to {max(values):.4f}); the probe's mean logit norm went from "
        f"{norms[0]:.3g} after epoch 1 to {norms[-1]:.3g} after epoch {len(norms)}",
    }


def _clip_claim(runs, n_classes):
    zero = _series(runs, "nllr_keras", "zero_grad_fraction")
    if zero is None:
        return None
    epochs, values = zero
    margin = _series(runs, "nllr_keras", "margin_p90")[1]
    switch = -math.log(KERAS_EPSILON) + math.log(n_classes - 1)
    held = max(values) > 0
    first = next((e for e, v in zip(epochs, values) if v > 0), None)
    when = f"from epoch {first}" if first else "on no epoch"
    return {
        "claim": f"Keras' clip switches NLLR's push off once an example's margin passes about {switch:.1f} nats",
        "held": held,
        "measured": f"the share of probe examples NLLR's Keras form gives no gradient was above zero {when}, "
        f"{values[0]:.1%} after epoch 1 and {values[-1]:.1%} after epoch {epochs[-1]} (at most "
        f"{max(values):.1%}); the 90th percentile of its margins went from {margin[0]:.1f} to "
        f"{margin[-1]:.1f} nats",
    }


def _ce_claim(runs):
    ce, share = _series(runs, "ce", "grad_true_class"), _series(runs, "ce", "grad_share_misclassified")
    if ce is None:
        return None
    error = 1 - np.array(_series(runs, "ce", "probe_accuracy")[1])
    others = {loss: _series(runs, loss, "grad_share_misclassified") for loss in ("nllr", "nllr_keras")}
    compared = "; ".join(f"{loss}'s {found[1][-1]:.1%}" for loss, found in others.items() if found)
    held = (
        ce[1][-1] > ce[1][0]
        and share[1][-1] > error[-1]
        and all(share[1][-1] > found[1][-1] for found in others.values() if found)
    )
    return {
        "claim": "CE's push, p_c - 1, fades as examples are learned, so its updates are led by the examples it "
        "still gets wrong",
        "held": held,
        "measured": f"CE's mean true-class gradient went from {ce[1][0]:.3f} after epoch 1 to {ce[1][-1]:.3f} "
        f"after epoch {ce[0][-1]}; the misclassified {error[-1]:.1%} of the probe carried "
        f"{share[1][-1]:.1%} of its gradient" + (f" (against {compared})" if compared else ""),
    }


def sections(runs):
    """Per (dataset, model) whose runs wrote diagnostics: the figure and the
    explanation's claims, each with what was measured and whether it held."""
    groups = defaultdict(list)
    for run in runs:
        if run.get("diagnostics"):
            groups[(run["dataset"], run["model"])].append(run)
    found = []
    for (dataset, model), members in sorted(groups.items()):
        n_classes = len(next((r["confusion_matrix"] for r in members if r.get("confusion_matrix")), [0] * 10))
        claims = [c for c in (_nllr_claim(members), _clip_claim(members, n_classes), _ce_claim(members)) if c]
        found.append(
            {
                "dataset": dataset,
                "model": model,
                "figure": figure(members, f"{dataset} / {model}"),
                "claims": claims,
                "losses": sorted({r["loss"] for r in members}, key=loss_order),
            }
        )
    return found
