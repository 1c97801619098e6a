"""Why log loss: squared error on softmax probabilities against cross-entropy,
the same optimizer at several learning rates: epochs to a training accuracy."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..report.figures import png

NAME = "log_loss"
INPUTS = {}


def runs(s):
    for model, m in s["models"].items():
        entry = {**s, **m, "model": model}
        for lr in m["learning_rates"]:
            for loss in s["losses"]:
                for seed in s["seeds"]:
                    yield f"studies/log_loss/{s['dataset']}/{model}/lr{lr}/{loss}/seed{seed}", entry, {
                        "loss": loss, "seed": seed, "hyperparameters": {**m.get("hyperparameters", {}), "lr": lr}}


def view(runs, settings, inputs):
    """Epochs to a fixed training accuracy, CE vs MSE, per model and learning rate."""
    target = settings.get("target_accuracy", 0.9)
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


