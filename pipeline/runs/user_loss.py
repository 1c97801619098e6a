"""A loss of one's own: a Python function of (logits, labels) returning the
batch mean, differentiable by autograd, in a file the config names
(`user_losses: {NAME: {file: PATH, function: NAME}}`). It runs through the
pipeline and the report beside the built-in losses, with no change to the
package; the digest of what its file does (pipeline.common.versions) is part
of each run's config, so editing the function reruns the runs that use it."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from ..common.errors import SoftlossError
from ..common.versions import behaviour
from ..core.autodiff import value_and_grad


def source(file, function):
    """The run config's record of a user loss: where it is and what its file does."""
    path = Path(file)
    if not path.is_file():
        raise SoftlossError(f"{file}: no such file (a user loss)")
    try:
        digest = hashlib.sha256(behaviour(path)).hexdigest()[:16]
    except SyntaxError as error:
        raise SoftlossError(f"{file}: not Python ({error.msg}, line {error.lineno})") from None
    return {"file": str(file), "function": function, "digest": digest}


def load(loss_source):
    """The function a run config's `loss_source` names; SoftlossError naming the file if it cannot be had."""
    file, function = loss_source["file"], loss_source["function"]
    spec = importlib.util.spec_from_file_location(f"softloss_user_loss_{loss_source['digest']}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except FileNotFoundError:
        raise SoftlossError(f"{file}: no such file (a user loss)") from None
    except Exception as error:  # whatever the user's module raises on import
        raise SoftlossError(f"{file}: cannot import it ({type(error).__name__}: {error})") from None
    loss = getattr(module, function, None)
    if not callable(loss):
        raise SoftlossError(f"{file}: defines no function {function!r}")
    return loss


def problem(loss, where, shape):
    """Why `loss` cannot train a model, or None: on a probe batch of float32
    logits of `shape` (the run's batch size, its dataset's classes) it must give
    a finite scalar and a finite gradient of the logits' shape."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, shape[1], shape[0])
    probe = f"a probe batch of {shape[0]} x {shape[1]} logits"
    try:
        value = loss(logits, labels)
    except Exception as error:  # whatever the user's function raises
        return f"{where}: fails on {probe} ({type(error).__name__}: {error})"
    if np.ndim(value) != 0:
        return f"{where}: returns shape {np.shape(value)}, not a scalar (the batch mean)"
    if not np.isfinite(value):
        return f"{where}: returns {float(value)} on {probe}"
    try:
        _, grad = value_and_grad(lambda z: loss(z, labels))(logits)
    except Exception as error:
        return f"{where}: autograd cannot differentiate it ({type(error).__name__}: {error})"
    if np.shape(grad) != tuple(shape):
        return f"{where}: its gradient has shape {np.shape(grad)}, not the logits' {tuple(shape)}"
    if not np.all(np.isfinite(grad)):
        return f"{where}: its gradient is not finite on {probe}"
    return None
