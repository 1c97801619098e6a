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

MILESTONES = (10, 25, 50, 75, 100, 200, 300, 400, 500)
BASELINE = "ce"
WINDOW = 10  # epochs a trend is averaged over
FLAT = 0.3  # points: a smaller change of the windowed mean is no trend


def accuracy_at(history, epoch):
    """Test accuracy (%) after `epoch`, or None if the run did not reach it."""
    row = next((row for row in history if row["epoch"] == epoch), None)
    return None if row is None else 100 * row["test_accuracy"]


def trend(history, window=WINDOW):
    """Mean test accuracy (%) of the last `window` epochs minus that of the
    `window` before them, or None for a run shorter than two windows."""
    if len(history) < 2 * window:
        return None
    accuracy = [100 * row["test_accuracy"] for row in history]
    return float(np.mean(accuracy[-window:]) - np.mean(accuracy[-2 * window : -window]))


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
        rows = [{"loss": run["loss"], "seed": run["seed"], "status": run["status"],
                 "values": [accuracy_at(run["history"], e) for e in epochs], "last": len(run["history"]),
                 "last_accuracy": 100 * run["history"][-1]["test_accuracy"], "trend": trend(run["history"])}
                for run in members]  # fmt: skip
        gaps = []
        for row in rows:
            if row["loss"] != BASELINE and row["seed"] in baseline:
                ce = [accuracy_at(baseline[row["seed"]]["history"], e) for e in epochs]
                gaps.append({"loss": row["loss"], "seed": row["seed"],
                             "values": [None if a is None or b is None else a - b for a, b in zip(row["values"], ce)]})  # fmt: skip
        found.append({"dataset": dataset, "model": model, "epochs": epochs, "rows": rows, "gaps": gaps})
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


def _trend_words(rows):
    trends = [(row["seed"], row["trend"], row["last"]) for row in rows if row["trend"] is not None]
    if not trends:
        return None
    words = []
    for seed, change, last in trends:
        state = "still rising" if change >= FLAT else "falling" if change <= -FLAT else "flat"
        words.append(f"{state} on seed {seed} ({_points(change)} points, epochs {last - WINDOW + 1}-{last} "
                     f"against the {WINDOW} before)")  # fmt: skip
    return "; ".join(words)


def findings(table):
    """Sentences with numbers: each loss against CE at equal epochs, the paper's
    comparison (each loss at the most epochs it reached, CE at its own), and
    whether each loss's test accuracy is still rising."""
    sentences = []
    by_loss = defaultdict(list)
    for row in table["rows"]:
        by_loss[row["loss"]].append(row)
    for loss in by_loss:
        if loss != BASELINE and (sentence := _gap_sentence(table, loss)):
            sentences.append(sentence)
    ce = by_loss[BASELINE]
    ce_last = ", ".join(f"{row['last_accuracy']:.2f} % after {row['last']} (seed {row['seed']})" for row in ce)
    for loss, rows in by_loss.items():
        if loss == BASELINE:
            continue
        longest = max(rows, key=lambda r: r["last"])
        if longest["last"] > max(row["last"] for row in ce):
            sentences.append(f"The paper's comparison, {loss} at the most epochs it reached against {BASELINE} at its "
                             f"own: {longest['last_accuracy']:.2f} % after {longest['last']} epochs (seed "
                             f"{longest['seed']}) against {ce_last}.")  # fmt: skip
    for loss, rows in by_loss.items():
        if words := _trend_words(rows):
            sentences.append(f"{loss}'s test accuracy over its last {WINDOW} epochs: {words}.")
    return sentences
