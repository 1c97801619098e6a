"""Table I with the form axis: each loss of the paper measured in its exact
(log-space) form and in its Keras form side by side, the paper's values
beside them, and the sentences stating what they show. The report embeds
Table I's numbers as JSON (`TABLE1_JSON_ID`), which `archive.verify`
recomputes from the runs."""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict

import numpy as np

from ..common.lossnames import EXACT_OF, KERAS_FORMS, LITERATURE, LOSS_ORDER, loss_order, nllr_keras_floor

PAPER_CITATION = {
    "title": "Negative Log Likelihood Ratio Loss for Deep Neural Network Classification",
    "authors": "Hengshuai Yao, Dong-lai Zhu, Bei Jiang, Peng Yu",
    "arxiv": "1804.10690",
    "url": "https://arxiv.org/abs/1804.10690",
}
# Test accuracy (%) of the paper's Table I; CE and BCE trained 100 epochs, NLLR 500.
PAPER = {
    ("mnist", "mnist_cnn"): {"ce": 99.28, "bce": 99.27, "nllr": 99.28},
    ("cifar10", "cifar_cnn"): {"ce": 79.92, "bce": 80.01, "nllr": 86.01},
}
TABLE1_JSON_ID = "table1-json"
TABLE1_JSON = re.compile(rf'<script type="application/json" id="{TABLE1_JSON_ID}">(.*?)</script>', re.DOTALL)


def t95(n):
    """The two-sided 95 % Student t quantile for the mean of `n` values."""
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def mean_interval(values):
    """(mean, half-width of the 95 % t interval or None for a single value)."""
    values = np.asarray(values, float)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, None
    t = t95(len(values))
    return mean, float(t * values.std(ddof=1) / math.sqrt(len(values)))


def paper_value(dataset, model, loss, variants=None):
    """The paper's Table I value for this loss (either form), on `dataset` or
    the dataset it is a copy of (`variants`: {copy: original}, as the prepared
    files record it); None where the paper has none."""
    base = (variants or {}).get(dataset) or dataset
    return PAPER.get((base, model), {}).get(EXACT_OF.get(loss, loss))


# A run without a model worth measuring: its loss became non-finite (diverged),
# its model predicts one class (collapsed), it stopped on an error (failed), or
# it is still training (running: a snapshot of a study in progress).
NOT_RESULTS = ("diverged", "collapsed", "failed", "running")


def _n_classes(runs):
    return next((len(r["confusion_matrix"]) for r in runs if r.get("confusion_matrix")), 10)


def _excluded_text(runs):
    """'1 diverged, 2 still training, at epoch 37/40 of 100' of the runs that are not results."""
    counts = Counter(r["status"] for r in runs)
    parts = [f"{counts[status]} {status}" for status in NOT_RESULTS if counts[status] and status != "running"]
    running = [r for r in runs if r["status"] == "running"]
    if running:
        reached = "/".join(str(len(r["history"])) for r in running)
        of = "/".join(str(e) for e in sorted({r["config"]["epochs"] for r in running}))
        parts.append(f"{len(running)} still training, at epoch {reached} of {of}")
    return ", ".join(parts)


def table_rows(runs, variants=None):
    groups = defaultdict(list)
    for run in runs:
        groups[(run["dataset"], run["model"], run["loss"])].append(run)
    rows = []
    for (dataset, model, loss), members in sorted(
        groups.items(), key=lambda kv: (*kv[0][:2], loss_order(kv[0][2]))
    ):
        done = sorted((r for r in members if r["status"] == "completed"), key=lambda r: r["seed"])
        accuracies = [100 * r["test_accuracy"] for r in done]
        mean, half = mean_interval(accuracies) if accuracies else (None, None)
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "loss": loss,
                "paper": paper_value(dataset, model, loss, variants),
                "mean": mean,
                "half": half,
                "n": len(done),
                "total": len(members),
                "diverged": [r for r in members if r["status"] == "diverged"],
                "excluded": _excluded_text([r for r in members if r["status"] in NOT_RESULTS]),
                "seeds": [(r["seed"], 100 * r["test_accuracy"]) for r in done],
                "epochs": sorted({r["config"]["epochs"] for r in members}),
                "ece": float(np.mean([r["ece"] for r in done])) if done else None,
                "final_train_loss": float(np.mean([r["history"][-1]["train_loss"] for r in done]))
                if done
                else None,
                "floor": nllr_keras_floor(_n_classes(members)) if loss == "nllr_keras" else None,
            }
        )
    return rows


def form_table(rows, variants=None):
    """Table I: one entry per (dataset, model, loss of the paper) holding the
    `table_rows` row of its exact form and of its Keras form (None if not run)."""
    entries = {}
    for row in rows:
        family = EXACT_OF.get(row["loss"], row["loss"])
        key = (row["dataset"], row["model"], family)
        entry = entries.setdefault(
            key,
            {
                "dataset": key[0],
                "model": key[1],
                "loss": family,
                "exact": None,
                "keras": None,
                "paper": paper_value(*key, variants),
                "has_keras": family in KERAS_FORMS,
            },
        )
        entry["keras" if row["loss"] in EXACT_OF else "exact"] = row
    return sorted(entries.values(), key=lambda e: (e["dataset"], e["model"], loss_order(e["loss"])))


def table1_json(rows):
    """What the report shows in Table I, per loss: what `archive.verify` recomputes.
    "</" is written as the JSON escape "<\\/" so that the text is safe inside <script>."""
    return json.dumps(
        [
            {
                "dataset": r["dataset"],
                "model": r["model"],
                "loss": r["loss"],
                "mean": r["mean"],
                "half": r["half"],
                "n": r["n"],
                "total": r["total"],
            }
            for r in rows
        ],
        sort_keys=True,
    ).replace("</", "<\\/")


def _accuracy(row):
    if row is None:
        return None
    if row["mean"] is None:
        return (
            f"no result (the one run {row['excluded'].split(' ', 1)[1]})"
            if row["total"] == 1
            else f"no result in {row['total']} runs ({row['excluded']})"
        )
    if row["half"] is None:
        return f"{row['mean']:.2f} % (one seed)"
    return f"{row['mean']:.2f} % {interval_text(row)}"


def _keras_minus_exact(exact, keras):
    """(mean over the seeds both forms completed of Keras' accuracy minus the
    exact form's, those seeds), or None if they share none. Runs with one seed
    share its initial weights, batches and augmentation, so a difference of
    means over different seeds would add the seeds' own spread to the forms'."""
    by_seed = dict(exact["seeds"])
    pairs = [(seed, accuracy - by_seed[seed]) for seed, accuracy in keras["seeds"] if seed in by_seed]
    if not pairs:
        return None
    return float(np.mean([points for _, points in pairs])), [seed for seed, _ in pairs]


def _keras_nllr_sentence(first, keras):
    """Where NLLR's Keras form's training loss went, against its floor."""
    when = (
        "the first epoch"
        if all(row["epoch"] == 1 for row in first)
        else "epoch " + "/".join(sorted({f"{row['epoch']:.0f}" for row in first}))
    )
    start, end, floor = (
        np.mean([row["train_loss"] for row in first]),
        keras["final_train_loss"],
        keras["floor"],
    )
    last = max(row["epoch"] for row in first)
    moved = (
        f"went from {start:.2f} after {when} to {end:.2f}"
        if f"{start:.2f}" != f"{end:.2f}"
        else f"was {end:.2f} after {when}" + ("" if keras["epochs"] == [last] else " and stayed there")
    )
    return (
        f" The Keras form's training loss {moved}, {end - floor:.2f} above its floor of {floor:.2f} "
        "(where an example's gradient is exactly zero)."
    )


def rankings(rows):
    """ "Beyond the paper": per (dataset, model) whose runs include a loss from
    beyond the paper (the literature's, or one's own), every loss ranked by
    mean test accuracy, the runs with no result last, and a sentence saying
    where NLLR stands."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["model"])].append(row)
    found = []
    for (dataset, model), members in sorted(groups.items()):
        if not any(r["loss"] in LITERATURE or r["loss"] not in LOSS_ORDER for r in members):
            continue
        ranked = sorted(members, key=lambda r: (r["mean"] is None, -(r["mean"] or 0), loss_order(r["loss"])))
        found.append({"dataset": dataset, "model": model, "rows": ranked, "finding": _nllr_standing(ranked)})
    return found


def _nllr_standing(ranked):
    """Where each form of NLLR ranks among the losses, against the best and CE."""
    scored = [r for r in ranked if r["mean"] is not None]
    if not scored:
        return None
    best = scored[0]
    ce = next((r for r in scored if r["loss"] == "ce"), None)
    parts = []
    for loss in ("nllr_keras", "nllr"):
        row = next((r for r in ranked if r["loss"] == loss), None)
        if row is None:
            continue
        name = "NLLR's Keras form" if loss == "nllr_keras" else "Exact NLLR"
        if row["mean"] is None:
            parts.append(f"{name} has no result ({row['excluded']})")
            continue
        place = f"{name} ranks {scored.index(row) + 1} of {len(scored)} at {row['mean']:.2f} %"
        if row is not best:
            place += f", {best['mean'] - row['mean']:.2f} points behind the best ({best['loss']}, {best['mean']:.2f} %)"
        if ce is not None and ce is not row:
            place += f", {row['mean'] - ce['mean']:+.2f} points against CE"
        parts.append(place)
    return "; ".join(parts) + "." if parts else None


def interval_text(row):
    """A mean's 95 % interval as the report shows it, in one format: ± its
    half-width, saying where the interval is clipped to 0-100 % and why it is
    wide when it rests on two or three seeds (t = 12.71, 4.30)."""
    if row["half"] is None:
        return "(one seed)"
    low, high = row["mean"] - row["half"], row["mean"] + row["half"]
    notes = [f"clipped to {max(low, 0):.2f}-{min(high, 100):.2f}"] if low < 0 or high > 100 else []
    if row["n"] <= 3:
        notes.append(f"t = {t95(row['n']):.2f} at {row['n']} seeds")
    return f"± {row['half']:.2f}" + (f" ({'; '.join(notes)})" if notes else "")


def form_findings(entries, runs):
    """Sentences stating what the measurements show about the two forms, per
    dataset and model: accuracies side by side, the paper's value, and how
    far each NLLR form's training loss fell (the Keras form against its floor)."""
    findings = []
    for entry in entries:
        exact, keras = entry["exact"], entry["keras"]
        if not entry["has_keras"] or (exact is None and keras is None):
            continue
        name = f"{entry['dataset']} / {entry['model']}, {entry['loss'].upper()}"
        parts = [
            f"exact form {_accuracy(exact)}" if exact else None,
            f"Keras form {_accuracy(keras)}" if keras else None,
        ]
        text = f"{name}: " + ", ".join(p for p in parts if p)
        if entry["paper"] is not None:
            text += f"; the paper reports {entry['paper']:.2f} %"
        difference = _keras_minus_exact(exact, keras) if exact and keras else None
        if difference is not None:
            points, shared = difference
            if len(shared) == exact["n"] == keras["n"]:
                text += f". Keras minus exact: {points:+.2f} points"
            else:
                seeds = f"seed {shared[0]}" if len(shared) == 1 else "seeds " + ", ".join(map(str, shared))
                text += f". Keras minus exact, on {seeds} (completed in both forms): {points:+.2f} points"
        text += "."
        if entry["loss"] == "nllr":
            if exact and exact["final_train_loss"] is not None:
                text += f" The exact form's training loss ended at {exact['final_train_loss']:.3g} (unbounded below)."
            if exact and exact["diverged"]:
                text += f" {len(exact['diverged'])} of its {exact['total']} runs diverged."
            if keras and keras["final_train_loss"] is not None:
                # the first epoch with a full pass over the training set (RunConfig.train_eval_every)
                first = [
                    next(row for row in r["history"] if row.get("train_loss") is not None)
                    for r in runs
                    if r["status"] == "completed"
                    and (r["dataset"], r["model"], r["loss"])
                    == (entry["dataset"], entry["model"], "nllr_keras")
                ]
                text += _keras_nllr_sentence(first, keras)
        findings.append(text)
    return findings
