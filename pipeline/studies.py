"""The three side questions of the study: their tables and figures (the toy
experiment itself is pipeline/toy.py).

1. Negative feedback: drop / complement / negated_ce on examples known only
   to be NOT class l (runs configured under `studies.negative_feedback`).
2. Why log loss: MSE on softmax probabilities vs cross-entropy, three rates each.
3. Knet's linear softmax: our numbers beside Knet's, and a 2-D toy showing its
   linear class boundaries beside an MLP's.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .figures import png, toy_figure

# Knet's documentation (examples/mnist.jl, softmax model, SGD lr 0.1, batch 100).
KNET_REFERENCE = {1: {"train": 0.90087, "test": 0.9048}, 100: {"train": 0.92755, "test": 0.9176}}
TREATMENT_ORDER = ("drop", "complement", "negated_ce")


# ------------------------------------------------------------------ study views
def _final_accuracy(run):
    return run["test_accuracy"] if run["status"] == "completed" else None


def negative_feedback(runs):
    """Table rows and figures of the negative-feedback study."""
    import matplotlib.pyplot as plt


    cells = defaultdict(list)  # (wrong_label, q, treatment) -> runs
    for run in runs:
        fb = run["config"].get("feedback")
        if not fb or fb["fraction"] == 0:
            for how in ("random", "model"):
                for treatment in TREATMENT_ORDER:
                    cells[(how, 0.0, treatment)].append(run)
        else:
            cells[(fb["wrong_label"], float(fb["fraction"]), fb["treatment"])].append(run)
    hows = [h for h in ("random", "model") if any(k[0] == h and k[1] > 0 for k in cells)]
    fractions = sorted({k[1] for k in cells})
    treatments = [t for t in TREATMENT_ORDER if any(k[2] == t for k in cells)]
    rows = []
    for how in hows:
        for q in fractions:
            row = {"wrong_label": how, "fraction": q, "cells": []}
            for treatment in treatments:
                members = cells.get((how, q, treatment), [])
                done = [r["test_accuracy"] for r in members if r["status"] == "completed"]
                diverged = [r["epoch"] for r in members if r["status"] == "diverged"]
                row["cells"].append({"treatment": treatment, "accuracy": float(np.mean(done)) if done else None,
                                     "diverged": diverged, "n": len(members)})  # fmt: skip
            rows.append(row)

    fig, axes = plt.subplots(1, len(hows), figsize=(5 * len(hows), 3.8), squeeze=False)
    for ax, how in zip(axes[0], hows):
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
                ax.scatter(bad, [0] * len(bad), marker="x", s=60, color=line.get_color(), label=f"{treatment} diverged")
        ax.set_title(f"wrong label: {how}")
        ax.set_xlabel("fraction q with only a wrong label")
        ax.set_ylabel("final test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    accuracy_vs_q = png(fig)

    q_mid = fractions[len(fractions) // 2] if fractions else None
    fig, axes = plt.subplots(1, len(hows), figsize=(5 * len(hows), 3.8), squeeze=False)
    for ax, how in zip(axes[0], hows):
        for treatment in treatments:
            for run in cells.get((how, q_mid, treatment), [])[:1]:
                epochs = [row["epoch"] for row in run["history"]]
                line = ax.plot(epochs, [100 * row["test_accuracy"] for row in run["history"]], marker=".", label=treatment)[0]
                if run["status"] == "diverged":
                    ax.axvline(run["epoch"], color=line.get_color(), linestyle=":", label=f"{treatment} diverged")
        ax.set_title(f"q = {q_mid}, wrong label: {how}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    per_epoch = png(fig)
    return {"rows": rows, "treatments": treatments, "accuracy_vs_q": accuracy_vs_q, "per_epoch": per_epoch, "q_mid": q_mid}


def log_loss(runs, target=0.9):
    """Epochs to a fixed training accuracy, CE vs MSE, per model and learning rate."""
    import matplotlib.pyplot as plt


    groups = defaultdict(list)  # (model, lr, loss) -> runs
    for run in runs:
        groups[(run["model"], run["config"]["hyperparameters"]["lr"], run["loss"])].append(run)
    settings = sorted({(m, lr) for m, lr, _ in groups})
    rows, wins = [], defaultdict(int)
    for model, lr in settings:
        row = {"model": model, "lr": lr, "cells": {}}
        for loss in ("ce", "mse"):
            reached = []
            for run in groups.get((model, lr, loss), []):
                hit = next((r["epoch"] for r in run["history"] if r["train_accuracy"] >= target), None)
                reached.append(hit)
            finals = [r["history"][-1]["train_accuracy"] for r in groups.get((model, lr, loss), []) if r["history"]]
            epochs = [e for e in reached if e is not None]
            row["cells"][loss] = {"epochs": float(np.mean(epochs)) if len(epochs) == len(reached) and epochs else None,
                                  "final": float(np.mean(finals)) if finals else None}  # fmt: skip
        ce_e, mse_e = row["cells"]["ce"]["epochs"], row["cells"]["mse"]["epochs"]
        winner = ("ce" if mse_e is None or (ce_e is not None and ce_e < mse_e) else
                  "mse" if ce_e is None or mse_e < ce_e else "tie") if (ce_e or mse_e) else "neither"  # fmt: skip
        row["winner"] = winner
        wins[winner] += 1
        rows.append(row)

    fig, axes = plt.subplots(2, len(settings), figsize=(3.2 * len(settings), 5.5), squeeze=False)
    for col, (model, lr) in enumerate(settings):
        for loss in ("ce", "mse"):
            for run in groups.get((model, lr, loss), [])[:1]:
                epochs = [r["epoch"] for r in run["history"]]
                axes[0][col].plot(epochs, [r["train_loss"] for r in run["history"]], marker=".", label=loss)
                axes[1][col].plot(epochs, [100 * r["train_accuracy"] for r in run["history"]], marker=".", label=loss)
        axes[0][col].set_title(f"{model}\nlr {lr}", fontsize=9)
        axes[0][col].set_yscale("log")
        axes[1][col].axhline(100 * target, color="grey", linestyle=":")
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("train loss")
    axes[1][0].set_ylabel("train accuracy (%)")
    axes[0][0].legend()
    return {"rows": rows, "target": target, "wins": dict(wins), "n": len(rows), "figure": png(fig)}


def knet(runs, toy):
    rows = []
    for run in sorted(runs, key=lambda r: r["seed"]):
        history = {int(r["epoch"]): r for r in run["history"]}
        for epoch in sorted({1, max(history)} & set(history)):
            reference = KNET_REFERENCE.get(epoch, {})
            rows.append({"seed": run["seed"], "epoch": epoch, "train": history[epoch]["train_accuracy"],
                         "test": history[epoch]["test_accuracy"], "knet_train": reference.get("train"),
                         "knet_test": reference.get("test")})  # fmt: skip
    last = [r["history"][-1] for r in runs if r["history"]]
    error = float(np.mean([1 - r["train_accuracy"] for r in last])) if last else None
    return {"rows": rows, "train_error": error, "toy": toy_figure(toy) if toy else None,
            "toy_accuracy": {k: v["accuracy"] for k, v in toy["models"].items()} if toy else {}}  # fmt: skip
