"""Training on negative feedback: a fraction q of the training examples keeps
only a label known to be WRONG; those are dropped, trained with `complement`
(-log p(y != l | x)) or with `negated_ce` (+log p(l | x), which diverges)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..report.figures import png

NAME = "negative_feedback"
TREATMENT_ORDER = ("drop", "complement", "scl_exp", "pc", "negated_ce")
INPUTS = {}  # files the view needs beside the runs


def _not_run(treatment, q):
    """Why a setting has no run: at q = 1 no example keeps a true label, so none is left to drop."""
    return "nothing left to drop" if q == 1 and treatment == "drop" else None


def runs(s):
    base = f"studies/negative_feedback/{s['dataset']}/{s['model']}"
    for seed in s["seeds"]:
        for q in s["fractions"]:
            if q == 0:  # no negatives: one run serves every treatment and every way of choosing l
                yield f"{base}/none/q0/none/seed{seed}", s, {"seed": seed}
                continue
            for how in s["wrong_labels"]:
                for treatment in (t for t in s["treatments"] if not _not_run(t, q)):
                    yield (
                        f"{base}/{how}/q{q}/{treatment}/seed{seed}",
                        s,
                        {
                            "seed": seed,
                            "feedback": {"fraction": q, "wrong_label": how, "treatment": treatment},
                        },
                    )


def _cells(runs):
    """{(wrong_label, q, treatment): runs}; a run without feedback (q = 0) counts in every column."""
    cells = defaultdict(list)
    for run in runs:
        fb = run["config"].get("feedback")
        if not fb or fb["fraction"] == 0:
            for how in ("random", "model"):
                for treatment in TREATMENT_ORDER:
                    cells[(how, 0.0, treatment)].append(run)
        else:
            cells[(fb["wrong_label"], float(fb["fraction"]), fb["treatment"])].append(run)
    return cells


def _cell(members, treatment, q):
    done = [r["test_accuracy"] for r in members if r["status"] == "completed"]
    diverged = [r["epoch"] for r in members if r["status"] == "diverged"]
    return {
        "treatment": treatment,
        "accuracy": float(np.mean(done)) if done else None,
        "diverged": diverged,
        "note": None if done or diverged else _why_empty(treatment, q, members),
    }


def view(runs, settings, inputs):
    """Table rows and figures of the negative-feedback study."""
    cells = _cells(runs)
    hows = [h for h in ("random", "model") if any(k[0] == h and k[1] > 0 for k in cells)]
    fractions = sorted({k[1] for k in cells})
    treatments = [t for t in TREATMENT_ORDER if any(k[2] == t for k in cells)]
    rows = [
        {
            "wrong_label": how,
            "fraction": q,
            "cells": [_cell(cells.get((how, q, t), []), t, q) for t in treatments],
        }
        for how in hows
        for q in fractions
    ]
    q_mid = fractions[len(fractions) // 2] if fractions else None
    accuracy_vs_q = _panels(
        hows,
        lambda ax, how: _against_q(ax, how, cells, fractions, treatments),
        "wrong label: {how}",
        "fraction q with only a wrong label",
        "final test accuracy (%)",
    )
    per_epoch = _panels(
        hows,
        lambda ax, how: _per_epoch(ax, how, cells, q_mid, treatments),
        f"q = {q_mid}, wrong label: {{how}}",
        "epoch",
        "test accuracy (%)",
    )
    return {
        "rows": rows,
        "treatments": treatments,
        "accuracy_vs_q": accuracy_vs_q,
        "per_epoch": per_epoch,
        "q_mid": q_mid,
    }


def _against_q(ax, how, cells, fractions, treatments):
    """Final test accuracy against q, one line per treatment; a cross at 0 where it diverged."""
    for treatment in treatments:
        qs, accs, bad = [], [], []
        for q in fractions:
            members = cells.get((how, q, treatment), [])
            done = [r["test_accuracy"] for r in members if r["status"] == "completed"]
            if done:
                qs.append(q)
                accs.append(100 * np.mean(done))
            if any(r["status"] == "diverged" for r in members):
                bad.append(q)
        line = ax.plot(qs, accs, marker="o", label=treatment)[0]
        if bad:
            ax.scatter(
                bad, [0] * len(bad), marker="x", s=60, color=line.get_color(), label=f"{treatment} diverged"
            )


def _per_epoch(ax, how, cells, q_mid, treatments):
    """Test accuracy per epoch at the middle q, one line per treatment; a dotted line where it diverged."""
    for treatment in treatments:
        for run in cells.get((how, q_mid, treatment), [])[:1]:
            epochs = [row["epoch"] for row in run["history"]]
            accuracy = [100 * row["test_accuracy"] for row in run["history"]]
            line = ax.plot(epochs, accuracy, marker=".", label=treatment)[0]
            if run["status"] == "diverged":
                ax.axvline(run["epoch"], color=line.get_color(), linestyle=":", label=f"{treatment} diverged")


def _why_empty(treatment, q, members):
    """What a cell with no accuracy and no divergence says instead."""
    if not members:
        return _not_run(treatment, q) or "not run"
    return ", ".join(sorted({r["status"] for r in members}))


def _panels(hows, draw, title, xlabel, ylabel):
    """One panel per way of choosing the wrong label, each drawn by draw(ax, how); a PNG."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(hows), figsize=(5 * len(hows), 3.8), squeeze=False)
    for ax, how in zip(axes[0], hows):
        draw(ax, how)
        ax.set_title(title.format(how=how))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return png(fig)
