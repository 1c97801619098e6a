"""Losses compared at equal epochs: the comparison the paper did not make.

The paper sets NLLR after 500 epochs beside CE and BCE after 100. Here every
loss's test accuracy is read from its history at the same epochs, and its gap
to CE is taken seed by seed: the runs of one seed share their initial weights,
batch order and augmentation, so the gap is paired. The paper's own comparison
(each loss at the most epochs it reached) is stated apart from it.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from .tables import mean_interval

MILESTONES = (10, 25, 50, 75, 100, 200, 300, 400, 500)
BASELINE = "ce"
WINDOW = 10  # epochs averaged at each end of a trend: one epoch's accuracy swings by points
SPAN = 50  # epochs a trend looks back over (fewer in a shorter run)
FLAT = 0.3  # points: a smaller change of the windowed mean is no trend


def accuracy_at(history, epoch):
    """Test accuracy (%) after `epoch`, or None if the run did not reach it."""
    row = next((row for row in history if row["epoch"] == epoch), None)
    return None if row is None else 100 * row["test_accuracy"]


def trend(history, window=WINDOW, span=SPAN):
    """(change, span): the mean test accuracy (%) of the last `window` epochs
    minus that of the `window` epochs ending `span` epochs earlier (`span` cut
    to what the run has), or None for a run shorter than two windows."""
    if len(history) < 2 * window:
        return None
    span = min(span, len(history) - window)
    accuracy = [100 * row["test_accuracy"] for row in history]
    before = accuracy[len(accuracy) - span - window : len(accuracy) - span]
    return float(np.mean(accuracy[-window:]) - np.mean(before)), span


def best(history):
    """(test accuracy (%), epoch) of the run's best epoch, the earliest of equals."""
    row = max(history, key=lambda row: (row["test_accuracy"], -row["epoch"]))
    return 100 * row["test_accuracy"], row["epoch"]


def _paired_means(gaps):
    """Per loss with gaps on two seeds or more: the mean gap over the seeds at
    each epoch, with its 95 % interval's half-width, and the seeds' count."""
    by_loss = defaultdict(list)
    for gap in gaps:
        by_loss[gap["loss"]].append(gap["values"])
    means = []
    for loss, rows in by_loss.items():
        if len(rows) < 2:
            continue
        cells = []
        for column in zip(*rows):
            values = [v for v in column if v is not None]
            cells.append((*mean_interval(values), len(values)) if len(values) >= 2 else None)
        means.append({"loss": loss, "cells": cells})
    return means


def _group(runs):
    groups = defaultdict(list)
    for run in runs:
        if run["history"]:
            groups[(run["dataset"], run["model"])].append(run)
    return groups


def tables(runs, order=sorted):
    """Per (dataset, model) whose runs reached a milestone, with a CE run and
    another loss: test accuracy of each run at each milestone, and each other
    loss's gap to CE per seed. `order` sorts loss names."""
    found = []
    for (dataset, model), members in sorted(_group(runs).items()):
        reached = max(len(run["history"]) for run in members)
        epochs = [e for e in MILESTONES if e <= reached]
        losses = order({run["loss"] for run in members})
        if not epochs or BASELINE not in losses or len(losses) < 2:
            continue
        members = sorted(members, key=lambda r: (losses.index(r["loss"]), r["seed"]))
        baseline = {run["seed"]: run for run in members if run["loss"] == BASELINE}
        rows = [
            {
                "loss": run["loss"],
                "seed": run["seed"],
                "status": run["status"],
                "values": [accuracy_at(run["history"], e) for e in epochs],
                "last": len(run["history"]),
                "last_accuracy": 100 * run["history"][-1]["test_accuracy"],
                "trend": trend(run["history"]),
                "best": best(run["history"]),
            }
            for run in members
        ]
        gaps = []
        for row in rows:
            if row["loss"] != BASELINE and row["seed"] in baseline:
                ce = [accuracy_at(baseline[row["seed"]]["history"], e) for e in epochs]
                gaps.append(
                    {
                        "loss": row["loss"],
                        "seed": row["seed"],
                        "values": [
                            None if a is None or b is None else a - b for a, b in zip(row["values"], ce)
                        ],
                    }
                )
        found.append(
            {
                "dataset": dataset,
                "model": model,
                "epochs": epochs,
                "rows": rows,
                "gaps": gaps,
                "paired": _paired_means(gaps),
            }
        )
    return found


def _points(value):
    return f"{value:+.2f}"


def _gap_sentence(table, loss):
    """'{loss} minus CE at equal epochs: -6.1 at 25, ... (seed 1); ... (seed 2).'"""
    parts = []
    for gap in (g for g in table["gaps"] if g["loss"] == loss):
        values = [f"{_points(v)} at {e}" for e, v in zip(table["epochs"], gap["values"]) if v is not None]
        if values:
            parts.append(f"{', '.join(values)} (seed {gap['seed']})")
    return f"{loss} minus {BASELINE} at equal epochs, in points: {'; '.join(parts)}." if parts else None


def trend_state(change):
    return "still rising" if change >= FLAT else "falling" if change <= -FLAT else "flat"


def _trend_words(rows):
    words = []
    for row in rows:
        if row["trend"] is None:
            continue
        (change, span), last = row["trend"], row["last"]
        words.append(
            f"{trend_state(change)} on seed {row['seed']} ({_points(change)} points, epochs "
            f"{last - WINDOW + 1}-{last} against {last - span - WINDOW + 1}-{last - span}; "
            f"best {row['best'][0]:.2f} % at epoch {row['best'][1]})"
        )
    return "; ".join(words) or None


def _paired_sentence(table, loss):
    """'{loss} minus CE, the mean of 2 seeds: -5.00 ± 0.00 at 10, ...'."""
    mean = next((m for m in table["paired"] if m["loss"] == loss), None)
    if mean is None:
        return None
    parts = [
        f"{_points(cell[0])} ± {cell[1]:.2f} at {e} ({cell[2]} seeds)"
        for e, cell in zip(table["epochs"], mean["cells"])
        if cell is not None
    ]
    return (
        f"{loss} minus {BASELINE}, the mean over seeds with its 95 % interval: {', '.join(parts)}."
        if parts
        else None
    )


def findings(table):
    """Sentences with numbers: each loss against CE at equal epochs, the paper's
    comparison (each loss at the most epochs it reached, CE at its own), and
    whether each loss's test accuracy is still rising."""
    sentences = []
    by_loss = defaultdict(list)
    for row in table["rows"]:
        by_loss[row["loss"]].append(row)
    for loss in by_loss:
        if loss != BASELINE:
            sentences += [s for s in (_gap_sentence(table, loss), _paired_sentence(table, loss)) if s]
    ce = by_loss[BASELINE]
    ce_last = ", ".join(
        f"{row['last_accuracy']:.2f} % after {row['last']} (seed {row['seed']})" for row in ce
    )
    for loss, rows in by_loss.items():
        if loss == BASELINE:
            continue
        longest = max(rows, key=lambda r: r["last"])
        if longest["last"] > max(row["last"] for row in ce):
            sentences.append(
                f"The paper's comparison, {loss} at the most epochs it reached against {BASELINE} at its "
                f"own: {longest['last_accuracy']:.2f} % after {longest['last']} epochs (seed "
                f"{longest['seed']}) against {ce_last}."
            )
    for loss, rows in by_loss.items():
        if words := _trend_words(rows):
            sentences.append(
                f"{loss}'s test accuracy, the mean of its last {WINDOW} epochs against {WINDOW} "
                f"epochs up to {SPAN} before: {words}."
            )
    return sentences
