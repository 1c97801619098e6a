"""Training runs: resumable, deterministic on the CPU, and honest about divergence.

A run writes its directory's files (listed in pipeline.runs.rundir): status,
history, checkpoints and the final model.
The arithmetic runs on the backend `run` is given (NumPy, or CuPy on a GPU:
see pipeline.core.backend); the files hold NumPy arrays either way.
Every file is written to a temporary name and renamed, so a crash or `kill -9`
leaves the previous epoch's files intact, and a rerun with the same config
resumes from the checkpoint and ends with exactly the metrics of an
uninterrupted run. A checkpoint written by other training code (a change to
this module or anything it imports, as the workflow's train rule tracks it) is
not resumed: the run starts afresh, so all its epochs come from one code.
A NaN or inf in the loss or the weights stops the run with status `diverged`
(exit code 0), so a study can report it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..common.clock import RunningClock
from ..common.errors import SoftlossError
from ..common.files import remove_stale_temporaries, write_json
from ..common.lossnames import nllr_keras_floor
from ..common.machine import blas_kernel
from ..common.versions import code_commit, code_version
from ..core import optim, tree
from ..core.autodiff import value_and_grad
from ..core.backend import resolve
from ..core.losses import mixed_feedback
from ..datasets import hdf5
from ..kernels import parallel
from . import checkpoint, diagnostics, feedback, lock
from .config import RunConfig, batch_fits
from .inference import metrics_from_logits, predict
from .numerics import numerics
from .rundir import save_arrays, write_diagnostics, write_history
from .steps import run_epoch, with_logits


def _summary(row):
    """One epoch's log line."""
    train = (
        f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}"
        if row["train_loss"] is not None
        else f"running train loss {row['running_loss']:.4f}"
    )
    return f"{train}, test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}"


# --------------------------------------------------------------- the run
def load_splits(config):
    """The run's training and test examples, and the diagnostics' probe (drawn
    from the whole training split, whatever subset the run trains on)."""
    train_images, train_labels = hdf5.load(config.data, "train")
    probe = diagnostics.probe(train_images, train_labels)
    test_images, test_labels = hdf5.load(config.data, "test")
    for name, size, available in (
        ("train_size", config.train_size, len(train_images)),
        ("test_size", config.test_size, len(test_images)),
    ):
        if size is not None and size > available:
            raise SoftlossError(f"{name} {size} is more than the {available:,} examples of {config.data}")
    if config.train_size is not None and config.train_size < len(train_images):
        # A seeded subset of the whole training set, the same for every loss.
        keep = np.sort(
            np.random.default_rng([config.seed, 7]).permutation(len(train_images))[: config.train_size]
        )
        train_images, train_labels = train_images[keep], train_labels[keep]
    if config.test_size is not None:
        test_images, test_labels = test_images[: config.test_size], test_labels[: config.test_size]
    batch_fits(config.batch_size, len(train_images), config.data)
    return train_images, train_labels, test_images, test_labels, probe


def _finished(config, out_dir, status, force, log):
    """The status of a run `out_dir` already finished (returned as is), else None.
    Refuses a directory holding a run of another configuration unless `force`."""
    previous = checkpoint.read_status(out_dir / "status.json", log) if out_dir.is_dir() else None
    if previous is None:
        return None
    if previous.get("fingerprint") != status["fingerprint"]:
        if not force:
            raise SoftlossError(
                f"{out_dir} holds a run of another configuration ({previous.get('status', 'unknown')}, "
                f"fingerprint {previous.get('fingerprint')}): choose another --out, or pass --force "
                "to replace it"
            )
        return None
    if previous.get("data_sha256") != status["data_sha256"]:
        log(f"{out_dir}: trained on other data (the dataset's content changed); training afresh")
        return None
    # a diverged run stays diverged; a finished one stays finished, under the same training code
    done = previous.get("code") == status["code"] and (
        previous.get("status") == "diverged"
        or (previous.get("status") in ("completed", "collapsed") and previous.get("epoch") == config.epochs)
    )
    return previous if done and (out_dir / "model.npz").exists() else None


def _fit_set(config, loss, images, labels):
    """(images, targets, objective) the optimiser sees. targets: per-example
    arrays, {"labels"} and, for negative feedback, "negative" (the label is one
    known to be wrong); objective(logits, targets) -> the batch's loss."""
    fb = config.feedback
    if fb is None or fb.fraction == 0:
        return images, {"labels": labels}, lambda logits, t: loss(logits, t["labels"])
    seen, negative = feedback.assign(images, labels, fb.fraction, fb.wrong_label, config.seed)
    if fb.treatment == "drop":
        return images[~negative], {"labels": seen[~negative]}, lambda logits, t: loss(logits, t["labels"])
    treatment = fb.treatment
    return (
        images,
        {"labels": seen, "negative": negative},
        lambda logits, t: mixed_feedback(logits, t["labels"], t["negative"], on_negative=treatment),
    )


def _measure(apply, params, splits, loss_fn, backend):
    """({train_loss, train_accuracy, ..., test_error}, the test logits) of
    `params` on each (images, labels) split; a split left out is recorded as
    not measured (None)."""
    row = {f"{name}_{key}": None for name in ("train", "test") for key in ("loss", "accuracy", "error")}
    with np.errstate(over="ignore", invalid="ignore"):  # huge but finite logits are still measured
        for name, (images, labels) in splits.items():
            logits = predict(apply, params, images, backend=backend)
            row.update(
                {
                    f"{name}_{key}": value
                    for key, value in metrics_from_logits(logits, labels, loss_fn).items()
                }
            )
            if name == "test":  # how many classes the model predicts at all: one means it collapsed
                row["test_classes"] = int(np.unique(logits.argmax(axis=1)).size)
                test_logits = logits
    return row, test_logits


@dataclass
class _Setup:
    """What a run trains with, and where its checkpoint left off (history)."""

    apply: Callable
    opt: optim.Optimizer
    loss: Callable  # the run's loss of (logits, labels), measured after each epoch
    objective: Callable  # what the optimiser minimises: the loss, or negative feedback's mix
    splits: dict  # {"train", "test": (images, labels)}, measured after each epoch
    fit_images: Any  # what the optimiser sees, on the backend's device where it fits
    targets: dict
    params: Any
    state: optim.OptState
    rng: np.random.Generator  # shuffling, dropout, augmentation
    history: list
    input_shape: tuple
    n_classes: int
    probe: tuple  # (images, labels): the fixed training examples the diagnostics look at
    floor: float | None  # the loss's floor (pipeline.runs.diagnostics.floor)
    diagnostics: list  # one row per epoch


def _set_up(config, backend, checkpoint_path, status, log, allow_different=False):
    """The run's data, model and optimiser, restored from `checkpoint_path` if it
    has `run_identity` (configuration, training code, data); arrays on `backend`."""
    train_images, train_labels, test_images, test_labels, probe = load_splits(config)
    splits = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    loss = config.build_loss()
    fit_images, targets, objective = _fit_set(config, loss, train_images, train_labels.astype(np.int64))
    n_classes = len(hdf5.classes(config.data))
    init, apply = config.build_model(n_classes)
    opt = optim.build(config.optimizer, **config.hyperparameters)
    params = init(np.random.default_rng([config.seed, 0]), train_images.shape[1:])
    state = opt.init(params)
    rng = np.random.default_rng([config.seed, 1])
    history, rows = [], []
    if restored := checkpoint.restore(
        checkpoint_path,
        checkpoint.identity(status),
        status["numerics"],
        params,
        state,
        rng,
        log,
        allow_different,
    ):
        params, state, history, rows, changed = restored
        if changed:  # allowed: the run says from which epoch on it was computed otherwise
            status.setdefault("mixed_numerics", []).append({"after_epoch": len(history), "changed": changed})
    params, state = backend.to_device(params), state._replace(slots=backend.to_device(state.slots))
    if backend.on_device and backend.fits(fit_images.nbytes):
        # Keep the (uint8) training set on the device: a batch, augmented or
        # not, is then made there, not on the host and transferred.
        fit_images, targets = (
            backend.to_device(fit_images),
            {k: backend.to_device(a) for k, a in targets.items()},
        )
    return _Setup(
        apply,
        opt,
        loss,
        objective,
        splits,
        fit_images,
        targets,
        params,
        state,
        rng,
        history,
        train_images.shape[1:],
        n_classes,
        probe,
        diagnostics.floor(loss, n_classes),
        rows,
    )


def _train_epochs(config, setup, backend, out_dir, status, quiet, log, clock):
    """Train `setup` on from its last epoch to `config.epochs`, writing the
    status, history and a checkpoint after each; returns why it diverged, or None.
    Its seconds come from `clock`, which leaves out the spells the process was
    stopped (pipeline.common.clock)."""
    history = setup.history
    for epoch in range(len(history) + 1, config.epochs + 1):
        elapsed = sum(row["seconds"] for row in history)
        write_json(
            out_dir / "status.json",
            {**status, "status": "running", "epoch": epoch - 1, "wall_seconds": elapsed},
        )
        started = clock.now()
        # Dropout masks: drawn on the device from a generator seeded per epoch
        # there (its state cannot be checkpointed); from `rng` on the CPU.
        noise = backend.noise_rng(config.seed, epoch) if backend.on_device else setup.rng
        step_fn = value_and_grad(with_logits(setup.objective, setup.apply, noise), has_aux=True)
        params, state, running, reason = run_epoch(
            config,
            epoch,
            setup.params,
            setup.state,
            setup.opt,
            step_fn,
            setup.fit_images,
            setup.targets,
            setup.rng,
            backend,
            quiet,
        )
        if reason is not None:  # keep the last finite parameters
            status.update(
                status="diverged", epoch=epoch, reason=reason, wall_seconds=elapsed + clock.now() - started
            )
            log(f"{out_dir}: diverged: {reason}")
            return reason
        setup.params, setup.state = params, state
        _record(config, setup, epoch, running, started, clock, backend, out_dir, status)
        if not quiet:
            log(f"epoch {epoch}: " + _summary(history[-1]))
    return None


def _record(config, setup, epoch, running, started, clock, backend, out_dir, status):
    """After an epoch's steps: its measurements and diagnostics appended to the
    run's, the checkpoint, history.csv and diagnostics.csv written."""
    evaluated = clock.now()
    full_pass = epoch % config.train_eval_every == 0 or epoch == config.epochs
    measured = setup.splits if full_pass else {"test": setup.splits["test"]}
    row, test_logits = _measure(setup.apply, setup.params, measured, setup.loss, backend)
    now = clock.now()
    setup.history.append(
        {"epoch": epoch, **row, **running, "seconds": now - started, "eval_seconds": now - evaluated}
    )
    found = diagnostics.measure(
        setup.apply,
        setup.params,
        setup.probe,
        setup.loss,
        setup.floor,
        test_logits,
        setup.splits["test"][1],
        backend,
    )
    setup.diagnostics.append({"epoch": epoch, **found})
    host_state = setup.state._replace(slots=backend.to_host(setup.state.slots))
    checkpoint.save(
        out_dir / "checkpoint.npz",
        checkpoint.identity(status),
        status["numerics"],
        backend.to_host(setup.params),
        host_state,
        setup.rng,
        setup.history,
        setup.diagnostics,
    )
    write_history(out_dir / "history.csv", setup.history)
    write_diagnostics(out_dir / "diagnostics.csv", setup.diagnostics)


def _failure(error):
    """The one-line reason a run stopped for an exception."""
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted ({error})" if str(error) else "interrupted"
    return str(error) if isinstance(error, SoftlossError) else f"{type(error).__name__}: {error}"


def _collapsed(config, history, n_classes):
    """Why a run that trained to its end is no result, or None: its model
    predicts one class for every test image, or (NLLR's Keras form) its
    training loss sat on its floor, where every gradient is zero, from the
    first epoch on."""
    if history[-1].get("test_classes") == 1:
        return (
            f"every test image is predicted as one class (test accuracy {history[-1]['test_accuracy']:.2%})"
        )
    if config.loss == "nllr_keras":
        floor = nllr_keras_floor(n_classes)
        if all(row["running_loss"] <= floor + 1e-3 for row in history):
            return f"its training loss sat on its floor of {floor:.2f} from the first epoch"
    return None


def _train_held(config, out_dir, status, quiet, log, backend, threads, allow_different):
    """`run` once this process holds `out_dir`. A failure is recorded as such
    in a status.json that says the run had started, and raised again."""
    if stale := remove_stale_temporaries(out_dir):
        log(f"{out_dir}: removed {len(stale)} temporary file(s) of an interrupted run")
    try:
        backend = resolve(backend, log)
        status.update(backend=backend.name, device=backend.device, numerics=numerics(backend))
        if not backend.on_device:
            if threads is not None:
                parallel.set_workers(threads)
            status.update(blas=blas_kernel(), threads=parallel.workers())  # results do not depend on threads
        setup = _set_up(config, backend, out_dir / "checkpoint.npz", status, log, allow_different)
        with RunningClock() as clock:
            reason = _train_epochs(config, setup, backend, out_dir, status, quiet, log, clock)
        status["stopped_seconds"] = clock.stopped  # this process's stops, left out of the epochs' seconds
    except BaseException as error:
        if (out_dir / "status.json").exists():
            write_json(out_dir / "status.json", {**status, "status": "failed", "reason": _failure(error)})
        raise
    write_history(out_dir / "history.csv", setup.history)
    write_diagnostics(
        out_dir / "diagnostics.csv", setup.diagnostics
    )  # a run diverged in its first epoch has none
    save_arrays(
        out_dir / "model.npz",
        tree.leaves(backend.to_host(setup.params)),
        {"config": asdict(config), "input_shape": list(setup.input_shape), "n_classes": setup.n_classes},
    )
    if reason is None:
        status.update(
            status="completed",
            epoch=len(setup.history),
            wall_seconds=sum(r["seconds"] for r in setup.history),
        )
        if collapse := _collapsed(config, setup.history, setup.n_classes):
            status.update(status="collapsed", reason=collapse)
            log(f"{out_dir}: collapsed: {collapse}")
    write_json(out_dir / "status.json", status)
    return status


def run(
    config: RunConfig,
    out_dir,
    *,
    quiet=False,
    log=print,
    backend="auto",
    force=False,
    threads=None,
    allow_different_settings=False,
):
    """Train (or resume) the run `config` in `out_dir` on `backend` ("auto",
    "numpy", "cupy" or a pipeline.core.backend.Backend), on `threads` CPU
    threads (None: as many as BLAS had); returns the final status dict.
    A directory holding a run of another configuration is refused unless
    `force`, one another trainer is training is refused (pipeline.runs.lock),
    and a checkpoint written under other numerics (pipeline.runs.numerics)
    unless `allow_different_settings`."""
    config.validate(len(hdf5.classes(config.data)))
    out_dir = Path(out_dir)
    status = {
        "config": asdict(config),
        "fingerprint": config.fingerprint(),
        "softloss_version": __version__,
        "code": code_version("runs.train"),
        "commit": code_commit(),  # the checkout of the latest epochs
        "data_sha256": hdf5.recorded_digest(config.data),
    }
    with lock.held(out_dir):  # a directory made here and left empty (a run that cannot start) is removed
        if (previous := _finished(config, out_dir, status, force, log)) is not None:
            log(f"{out_dir}: already {previous['status']}")
            return previous
        return _train_held(config, out_dir, status, quiet, log, backend, threads, allow_different_settings)
