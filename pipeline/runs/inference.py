"""A trained model in evaluation mode: logits batch by batch, the metrics of
logits, and a run directory's final model loaded back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..common.errors import SoftlossError
from ..core import tree
from ..core.backend import NUMPY
from .config import RunConfig
from .rundir import UnreadableFile, load_arrays

# Evaluation batches: small on the host, where at 1000 images cifar_cnn's
# activations pass glibc's largest mmap threshold (32 MiB, see
# common.machine.reuse_freed_memory), so every batch's arrays would be mapped
# afresh and zeroed by the kernel; large on a GPU, whose cost is per kernel launch.
HOST_EVAL_BATCH, DEVICE_EVAL_BATCH = 128, 1000


def predict(apply, params, images, batch_size=None, backend=NUMPY):
    """Logits (on the host) of `images` (uint8 NHWC, on the host) in evaluation
    mode, batch by batch, computed on `backend` with params already there."""
    if batch_size is None:
        batch_size = DEVICE_EVAL_BATCH if backend.on_device else HOST_EVAL_BATCH
    out = []
    for start in range(0, len(images), batch_size):
        x = backend.to_device(images[start : start + batch_size]).astype(np.float32)
        x /= 255.0
        out.append(backend.to_host(apply(params, x)))
    return np.concatenate(out)


def metrics_from_logits(logits, labels, loss_fn):
    """{loss, accuracy, error} of `logits` for `labels`, the loss by `loss_fn` (RunConfig.build_loss)."""
    loss = float(loss_fn(logits, labels.astype(np.int64)))
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return {"loss": loss, "accuracy": accuracy, "error": 1.0 - accuracy}


def load_model(run_dir):
    """(apply, params, config, input_shape) of a run directory's model.npz."""
    path = Path(run_dir) / "model.npz"
    try:
        arrays, meta = load_arrays(path, what="model file")
    except FileNotFoundError:
        raise SoftlossError(f"{path}: missing; train the run first") from None
    except UnreadableFile as error:
        raise SoftlossError(f"{error}; train the run again: snakemake --cores 1 --force {path}") from None
    config = RunConfig.from_dict(meta["config"])
    init, apply = config.build_model(meta.get("n_classes", 10))  # files from before it was recorded: 10
    like = init(np.random.default_rng(0), tuple(meta["input_shape"]))
    if [a.shape for a in arrays] != [p.shape for p in tree.leaves(like)]:
        raise SoftlossError(
            f"{path}: its arrays do not fit the model {config.model} of this code (written by other "
            f"code?); train the run again: snakemake --cores 1 --force {path}"
        )
    return apply, tree.rebuild(like, arrays), config, tuple(meta["input_shape"])
