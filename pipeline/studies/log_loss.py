"""Why log loss: squared error on softmax probabilities against cross-entropy,
the same optimizer at several learning rates: epochs to a training accuracy."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..common.lossnames import loss_order
from ..report.figures import png

NAME = "log_loss"
INPUTS = {}


def runs(s):
    for model, m in s["models"].items():
        entry = {**s, **m, "model": model}
        for lr in m["learning_rates"]:
            for loss in s["losses"]:
                for seed in s["seeds"]:
                    yield (
                        f"studies/log_loss/{s['dataset']}/{model}/lr{lr}/{loss}/seed{seed}",
                        entry,
                        {
                            "loss": loss,
                            "seed": seed,
                            "hyperparameters": {**m.get("hyperparameters", {}), "lr": lr},
                        },
                    )


def _row(groups, model, lr, losses, target):
    """One setting's cells: per loss the epochs to `target` training accuracy
    (mean over seeds; None if a seed never got there) and the final accuracy,
    and which loss got there first."""
    cells = {}
    for loss in losses:
        members = groups.get((model, lr, loss), [])
        reached = [
            next((r["epoch"] for r in run["history"] if (r["train_accuracy"] or 0) >= target), None)
            for run in members
        ]
        # a diverged run's last good epoch is not where it ended: it is named, not averaged
        finals = [
            run["history"][-1]["train_accuracy"]
            for run in members
            if run["history"] and run["status"] != "diverged"
        ]
        epochs = [e for e in reached if e is not None]
        cells[loss] = {
            "epochs": float(np.mean(epochs)) if epochs and len(epochs) == len(reached) else None,
            "final": float(np.mean(finals)) if finals else None,
            "diverged": [run["epoch"] for run in members if run["status"] == "diverged"],
        }
    times = {loss: cell["epochs"] for loss, cell in cells.items() if cell["epochs"] is not None}
    fastest = [loss for loss, t in times.items() if t == min(times.values())] if times else []
    winner = "neither" if not fastest else fastest[0] if len(fastest) == 1 else "tie"
    return {"model": model, "lr": lr, "cells": cells, "winner": winner}


def figure(rows, groups, losses, target):
    """Training loss and accuracy per setting (a column each, the rows sharing
    their y axis, so only the first column is labelled), one legend outside."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        2, len(rows), figsize=(2.6 * len(rows) + 1.6, 5.5), squeeze=False, sharey="row", layout="constrained"
    )
    for col, row in enumerate(rows):
        for loss in losses:
            for run in groups.get((row["model"], row["lr"], loss), [])[:1]:
                epochs = [r["epoch"] for r in run["history"]]
                axes[0][col].plot(epochs, [r["train_loss"] for r in run["history"]], marker=".", label=loss)
                axes[1][col].plot(
                    epochs, [100 * r["train_accuracy"] for r in run["history"]], marker=".", label=loss
                )
        axes[0][col].set_title(f"{row['model']}\nlr {row['lr']}", fontsize=9)
        axes[0][col].set_yscale("log")
        axes[1][col].axhline(100 * target, color="grey", linestyle=":")
        axes[1][col].set_xlabel("epoch")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("train loss")
    axes[1][0].set_ylabel("train accuracy (%)")
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside right upper")
    return fig


def view(runs, settings, inputs):
    """Epochs to a fixed training accuracy, per model and learning rate, for
    cross-entropy, squared error on probabilities (mse) and, where run, the
    square loss on logits (square_logits)."""
    target = settings.get("target_accuracy", 0.9)
    groups = defaultdict(list)  # (model, lr, loss) -> runs
    for run in runs:
        groups[(run["model"], run["config"]["hyperparameters"]["lr"], run["loss"])].append(run)
    losses = sorted({loss for _, _, loss in groups}, key=loss_order)
    rows = [_row(groups, model, lr, losses, target) for model, lr in sorted({(m, lr) for m, lr, _ in groups})]
    wins = defaultdict(int)
    for row in rows:
        wins[row["winner"]] += 1
    fig = figure(rows, groups, losses, target)
    return {
        "rows": rows,
        "losses": losses,
        "target": target,
        "wins": dict(wins),
        "n": len(rows),
        "figure": png(fig),
        "pairwise": {loss: _first(rows, "ce", loss) for loss in losses if loss != "ce"},
    }


def _first(rows, a, b):
    """(settings where `a` reached the target before `b`, where `b` before `a`,
    where they tied, where neither did): the paragraph's comparison."""
    counts = defaultdict(int)
    for row in rows:
        ta, tb = row["cells"][a]["epochs"], row["cells"][b]["epochs"]
        counts[
            "neither"
            if ta is None and tb is None
            else a
            if tb is None or (ta is not None and ta < tb)
            else b
            if ta is None or tb < ta
            else "tie"
        ] += 1
    return dict(counts)
