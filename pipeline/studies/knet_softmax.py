"""Knet's linear softmax on MNIST (plain SGD) beside Knet's documented
accuracies, and the 2-D toy (pipeline/runs/toy.py) where its linear boundaries fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..report.figures import toy_figure

NAME = "knet_softmax"
# Knet's documentation (examples/mnist.jl, softmax model, SGD lr 0.1, batch 100).
KNET_REFERENCE = {1: {"train": 0.90087, "test": 0.9048}, 100: {"train": 0.92755, "test": 0.9176}}
INPUTS = {"toy": "studies/knet_softmax/toy_boundaries.json"}  # made by `python -m pipeline toy`


def runs(s):
    entry = {**s, "dataset": "mnist", "model": "knet_softmax", "optimizer": "sgd"}
    for seed in s["seeds"]:
        yield (
            f"studies/knet_softmax/mnist/knet_softmax/ce/seed{seed}",
            entry,
            {"seed": seed, "hyperparameters": {"lr": s["lr"]}},
        )


def view(runs, settings, inputs):
    """The rows and figures of its report part."""
    toy = json.loads(Path(inputs["toy"]).read_text()) if inputs.get("toy") else None
    rows = []
    for run in sorted(runs, key=lambda r: r["seed"]):
        history = {int(r["epoch"]): r for r in run["history"]}
        for epoch in sorted({1, max(history)} & set(history)):
            reference = KNET_REFERENCE.get(epoch, {})
            rows.append(
                {
                    "seed": run["seed"],
                    "epoch": epoch,
                    "train": history[epoch]["train_accuracy"],
                    "test": history[epoch]["test_accuracy"],
                    "knet_train": reference.get("train"),
                    "knet_test": reference.get("test"),
                }
            )
    last = [r["history"][-1] for r in runs if r["history"]]
    error = float(np.mean([1 - r["train_accuracy"] for r in last])) if last else None
    return {
        "rows": rows,
        "train_error": error,
        "toy": toy_figure(toy) if toy else None,
        "toy_accuracy": {k: v["accuracy"] for k, v in toy["models"].items()} if toy else {},
    }
