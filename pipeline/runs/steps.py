"""An epoch of training steps: each batch's loss, logits and gradients, the
optimizer's update, Keras' running means over the batches, and the check that
stops a run whose loss or weights became non-finite (pipeline.runs.train runs
the epochs)."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ..core import tree
from ..datasets.batches import batches

_DEVICE_CHECK_EVERY = 32


def finite(params):
    return all(np.isfinite(leaf).all() for leaf in tree.leaves(params))


def with_logits(objective, apply, noise):
    """The step's function: (loss, logits) of a batch in training mode."""

    def loss_and_logits(params, x, targets):
        logits = apply(params, x, train=True, rng=noise)
        return objective(logits, targets), logits

    return loss_and_logits


class Running:
    """Keras' training metrics: means over an epoch's batches, weighted by their
    size, of the loss and of the accuracy on the examples with a known label
    (not the negative-feedback ones), from each step's own training-mode logits.
    Sums in float64; on a GPU they stay there until the epoch ends."""

    def __init__(self, xp):
        self.xp, self.loss, self.correct, self.examples, self.labelled = xp, 0.0, 0, 0, 0

    def add(self, loss, logits, targets):
        xp, labels, n = self.xp, targets["labels"], len(targets["labels"])
        right = logits.argmax(axis=1) == labels
        if "negative" in targets:
            right = right & ~targets["negative"].astype(bool)
            self.labelled += n - targets["negative"].astype(bool).sum()
        else:
            self.labelled += n
        self.loss = self.loss + xp.asarray(loss, dtype=np.float64) * n
        self.correct = self.correct + right.sum()
        self.examples += n

    def means(self):
        labelled = int(self.labelled)
        return {
            "running_loss": float(self.loss) / max(self.examples, 1),
            "running_accuracy": int(self.correct) / labelled if labelled else None,
        }


def run_epoch(config, epoch, params, state, opt, step_fn, images, targets, rng, backend, quiet):
    """One epoch of steps: (params, state, running means, reason), reason None
    unless the loss became non-finite (then params are mid-epoch and must not
    be kept)."""
    # Overflow is caught here as divergence; NumPy's warnings would only repeat it.
    with (
        np.errstate(over="ignore", invalid="ignore", divide="ignore"),
        tqdm(
            total=len(images),
            desc=f"epoch {epoch}/{config.epochs}",
            unit="img",
            disable=True if quiet else None,
            leave=False,
        ) as bar,
    ):
        # On a GPU, reading the loss back every step would stall the device's
        # queue: a non-finite flag accumulates there and is read every 32 steps.
        nonfinite, step, running = None, 0, Running(backend.xp)
        for step, (x, t) in enumerate(
            batches(images, targets, config.batch_size, rng, augment=config.augment), 1
        ):
            x, t = backend.to_device(x), {name: backend.to_device(a) for name, a in t.items()}
            (loss, logits), grads = step_fn(params, x, t)
            if backend.on_device:
                bad = ~backend.xp.isfinite(loss)
                nonfinite = bad if nonfinite is None else nonfinite | bad
                if step % _DEVICE_CHECK_EVERY == 0 and bool(nonfinite):
                    break
            elif not np.isfinite(loss):
                return params, state, None, f"the training loss became {float(loss)} in epoch {epoch}"
            running.add(loss, logits, t)
            params, state = opt.update(params, grads, state)
            bar.update(len(x))
    if nonfinite is not None and bool(nonfinite):
        return params, state, None, f"the training loss became non-finite in epoch {epoch} (by step {step})"
    if not finite(params):
        return params, state, None, f"the weights became non-finite in epoch {epoch}"
    return params, state, running.means(), None
