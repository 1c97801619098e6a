"""The report's figures, each a base64 PNG to embed in the HTML (matplotlib, Agg)."""

from __future__ import annotations

import base64
import io
import math
from collections import defaultdict

import matplotlib
import numpy as np

from ..common.lossnames import EXACT_OF, loss_order

matplotlib.use("Agg")  # files, never a window: before any pyplot import here or in the study views


def png(fig):
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def symlog_axis(ax, most=7):
    """A symmetric-log y axis (linear within +-1) with at most `most` ticks on
    each side of zero: every decade would be 30 overlapping labels for a loss
    that fell to -1e30. A range that spans few decades gets linear ticks inside
    +-1 too, so that no panel is left with a single tick."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator

    ax.set_yscale("symlog", linthresh=1)
    low, high = ax.get_ylim()
    tops = {
        sign: math.floor(math.log10(sign * end)) for sign, end in ((-1, low), (1, high)) if sign * end >= 1
    }
    step = max(1, math.ceil((max(tops.values(), default=0) + 1) / most))  # decades per tick, both sides alike
    ticks = [0.0] + [
        sign * 10.0**e for sign, top in tops.items() for e in range(0 if step == 1 else step, top + 1, step)
    ]
    if sum(low <= t <= high for t in ticks) < 3 and max(low, -1.0) < min(high, 1.0):
        ticks += [float(t) for t in MaxNLocator(4).tick_values(max(low, -1.0), min(high, 1.0))]
    ax.yaxis.set_major_locator(FixedLocator(sorted(set(ticks))))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.yaxis.set_major_formatter(FuncFormatter(_tick_label))


def _tick_label(value, _):
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:g}"
    return f"{value:.0e}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")


def _train_panel(histories, key):
    """How a train panel shows `key`: ("full", title) when every epoch of every
    run had a full pass over the training set, else ("running", title): the
    running means over the epoch's batches, with the full passes as dots."""
    if all(row.get(key) is not None for h in histories for row in h):
        return "full", f"train {key.split('_')[1]} (full pass, evaluation mode)"
    return (
        "running",
        f"train {key.split('_')[1]}: running mean over batches (training mode); dots: full passes",
    )


def _mean_curve(histories, key):
    """(epochs, mean over runs of `key`) over the epochs all runs reached; None where a run lacks the value."""
    length = min(len(h) for h in histories)
    values = [[np.nan if row.get(key) is None else row[key] for row in h[:length]] for h in histories]
    return [row["epoch"] for row in histories[0][:length]], np.mean(values, axis=0)


# A loss whose curve leaves [-RUNAWAY, RUNAWAY] (the exact NLLR, unbounded
# below) gets its own panel on a symmetric-log axis: on one axis with the
# bounded losses it would flatten them into a line at zero.
RUNAWAY = 100.0


def _curves(by_loss, key, kind):
    """{loss: (epochs, mean values)} for one panel: the running means where the
    training set had no full pass every epoch, else `key` itself."""
    column = key.replace("train_", "running_") if kind == "running" else key
    return {loss: _mean_curve(histories, column) for loss, histories in by_loss.items()}


def _runaway(curves):
    return {loss for loss, (_, values) in curves.items() if np.nanmax(np.abs(values), initial=0) > RUNAWAY}


def _draw(ax, curves, style, by_loss=None, key=None):
    """One line per loss; with `key`, the full passes over the training set as dots."""
    for loss, (epochs, values) in curves.items():
        ax.plot(epochs, values, marker="o" if len(epochs) < 15 else None, label=loss, **style[loss])
        if key is not None:
            dots_epochs, dots = _mean_curve(by_loss[loss], key)
            ax.plot(dots_epochs, dots, linestyle="none", marker="o", markersize=4, color=style[loss]["color"])


def epoch_axis(ax, last_epoch):
    """Whole epochs on the x axis; a run of one epoch still gets an axis of epochs."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if last_epoch <= 2:
        ax.set_xlim(0.5, last_epoch + 0.5)
        ax.set_xticks(range(1, last_epoch + 1))


def learning_curves(runs, dataset, model):
    """Figures 1-2 of the paper: train/test loss and accuracy per epoch, one line
    per loss (mean over seeds; diverged runs end where they diverged). Losses
    that run away (beyond RUNAWAY) are drawn in a third column of their own."""
    import matplotlib.pyplot as plt

    by_loss = _histories(runs, dataset, model)
    histories = [h for group in by_loss.values() for h in group]
    style = _styles(by_loss)
    train_kind, train_title = _train_panel(histories, "train_loss")
    losses = {
        "train": _curves(by_loss, "train_loss", train_kind),
        "test": _curves(by_loss, "test_loss", "full"),
    }
    runaway = _runaway(losses["train"]) | _runaway(losses["test"])
    columns = 3 if runaway else 2
    fig, axes = plt.subplots(
        2, columns, figsize=(5.5 * columns, 6.5), sharex=True, layout="constrained", squeeze=False
    )
    for col, (split, title) in enumerate((("train", train_title), ("test", "test loss"))):
        _draw(
            axes[0, col],
            {loss: c for loss, c in losses[split].items() if loss not in runaway},
            style,
            by_loss,
            "train_loss" if split == "train" and train_kind == "running" else None,
        )
        axes[0, col].set_title(title, fontsize=9 if split == "train" and train_kind == "running" else None)
        if runaway:
            _draw(
                axes[0, 2] if split == "train" else axes[1, 2],
                {loss: c for loss, c in losses[split].items() if loss in runaway},
                style,
            )
    for col, key in enumerate(("train_accuracy", "test_accuracy")):
        kind, title = _train_panel(histories, key) if key == "train_accuracy" else ("full", "test accuracy")
        _draw(axes[1, col], _curves(by_loss, key, kind), style, by_loss, key if kind == "running" else None)
        axes[1, col].set_title(title, fontsize=9 if kind == "running" else None)
    if runaway:
        for row, split in enumerate(("train", "test")):
            axes[row, 2].set_title(
                f"{split} loss of {', '.join(sorted(runaway, key=loss_order))} (symmetric log)"
            )
            symlog_axis(axes[row, 2])
    _finish(fig, axes, max(len(h) for h in histories), f"{dataset} / {model}: mean over seeds")
    return png(fig)


def _histories(runs, dataset, model):
    """{loss: [each seed's history]} of the runs of `dataset` and `model`, in the losses' order."""
    by_loss = defaultdict(list)
    for run in runs:
        if run["dataset"] == dataset and run["model"] == model and run["history"]:
            by_loss[run["loss"]].append(run["history"])
    return {loss: by_loss[loss] for loss in sorted(by_loss, key=loss_order)}


def _styles(by_loss):
    """One colour per loss of the paper, its Keras form dashed."""
    families = sorted({EXACT_OF.get(loss, loss) for loss in by_loss}, key=loss_order)
    colours = {family: f"C{i}" for i, family in enumerate(families)}
    return {
        loss: {"color": colours[EXACT_OF.get(loss, loss)], "linestyle": "--" if loss in EXACT_OF else "-"}
        for loss in by_loss
    }


def _finish(fig, axes, last_epoch, title):
    """Grids, epoch axes and labels, and one legend beside the panels, where no curve runs under it."""
    for ax in axes.flat:
        ax.grid(alpha=0.3)
        epoch_axis(ax, last_epoch)
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    handles = {label: handle for ax in axes.flat for handle, label in zip(*ax.get_legend_handles_labels())}
    fig.legend(handles.values(), handles.keys(), loc="outside right upper")
    fig.suptitle(title)


def confusion_figure(runs, dataset, model):
    import matplotlib.pyplot as plt

    by_loss = defaultdict(list)
    for run in runs:
        if run["dataset"] == dataset and run["model"] == model and run["status"] == "completed":
            by_loss[run["loss"]].append(np.array(run["confusion_matrix"]))
    if not by_loss:
        return None
    losses = sorted(by_loss, key=loss_order)
    fig, axes = plt.subplots(1, len(losses), figsize=(3.2 * len(losses), 3.3), squeeze=False)
    for ax, loss in zip(axes[0], losses):
        matrix = np.sum(by_loss[loss], axis=0)
        rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"{loss} ({len(by_loss[loss])} seed{'s' if len(by_loss[loss]) != 1 else ''})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(len(matrix)))
        ax.set_yticks(range(len(matrix)))
        ax.tick_params(labelsize=7)
    fig.suptitle(f"{dataset} / {model}: confusion matrices (rows normalised)")
    return png(fig)


def toy_figure(toy):
    """Class regions of the 2-D toy (pipeline/runs/toy.py): linear vs one hidden layer."""
    import matplotlib.pyplot as plt

    points, labels = np.array(toy["points"]), np.array(toy["labels"])
    low, high = toy["extent"]
    fig, axes = plt.subplots(1, len(toy["models"]), figsize=(9, 4.3))
    for ax, (name, model) in zip(axes, toy["models"].items()):
        classes = np.array(model["classes"]).reshape(toy["grid"], toy["grid"])
        ax.imshow(classes, origin="lower", extent=(low, high, low, high), cmap="Pastel1", vmin=0, vmax=8)
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="Set1", vmin=0, vmax=8, s=6)
        ax.set_title(f"{name}: training accuracy {model['accuracy']:.0%}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Class regions on three rings: linear boundaries (Knet's softmax) vs one hidden layer")
    return png(fig)
