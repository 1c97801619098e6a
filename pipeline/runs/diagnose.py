"""`python -m pipeline diagnose CHECKPOINT`: the diagnostics of any saved
epoch (pipeline.runs.diagnostics), for runs trained before they were written
every epoch, or to check the numbers a run wrote."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..common.errors import SoftlossError
from ..core import tree
from ..core.backend import NUMPY
from ..datasets import hdf5
from . import diagnostics
from .config import RunConfig
from .inference import predict
from .rundir import load_arrays
from .train import load_splits


def diagnose(checkpoint_path, data=None):
    """The diagnostics row of a saved run's checkpoint (its epoch's, as the run
    wrote it if it wrote any), its config read from the status.json beside it;
    `data` in place of the config's dataset path."""
    checkpoint_path = Path(checkpoint_path)
    try:
        status = json.loads((checkpoint_path.parent / "status.json").read_text())
        settings = status["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise SoftlossError(
            f"{checkpoint_path.parent}: no readable status.json beside the checkpoint (its run's config)"
        ) from None
    config = RunConfig.from_dict({**settings, **({"data": str(data)} if data else {})})
    try:
        arrays, meta = load_arrays(checkpoint_path)
    except FileNotFoundError:
        raise SoftlossError(f"{checkpoint_path}: no such checkpoint") from None
    _, _, test_images, test_labels, probe_set = load_splits(config)
    n_classes = len(hdf5.classes(config.data))
    init, apply = config.build_model(n_classes)
    like = init(np.random.default_rng(0), probe_set[0].shape[1:])
    n = len(tree.leaves(like))
    if [a.shape for a in arrays[:n]] != [p.shape for p in tree.leaves(like)]:
        raise SoftlossError(
            f"{checkpoint_path}: its arrays do not fit the model {config.model} of {config.data}"
        )
    params = tree.rebuild(like, arrays[:n])
    loss = config.build_loss()
    with np.errstate(over="ignore", invalid="ignore"):
        test_logits = predict(apply, params, test_images)
    loss_floor = diagnostics.floor(loss, n_classes)
    row = diagnostics.measure(apply, params, probe_set, loss, loss_floor, test_logits, test_labels, NUMPY)
    return {"epoch": len(meta["history"]), **row}
