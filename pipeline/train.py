"""Training runs: resumable, deterministic on the CPU, and honest about divergence.

A run writes its directory's files (listed in pipeline.rundir): status,
history, checkpoints and the final model.
The arithmetic runs on the backend `run` is given (NumPy, or CuPy on a GPU:
see pipeline.backend); the files hold NumPy arrays either way.
Every file is written to a temporary name and renamed, so a crash or `kill -9`
leaves the previous epoch's files intact, and a rerun with the same config
resumes from the checkpoint and ends with exactly the metrics of an
uninterrupted run. A checkpoint written by other training code (a change to
`train.py` or anything it imports, as the workflow's train rule tracks it) is
not resumed: the run starts afresh, so all its epochs come from one code.
A NaN or inf in the loss or the weights stops the run with status `diverged`
(exit code 0), so a study can report it.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import __version__, data, feedback, models, optim, parallel, tree
from .autodiff import value_and_grad
from .backend import NUMPY, resolve
from .codehash import code_version
from .errors import SoftlossError
from .files import remove_stale_temporaries, write_json
from .losses import LOSSES, mixed_feedback
from .provenance import code_commit
from .rundir import UnreadableFile, load_arrays, save_arrays, write_history


@dataclass(frozen=True)
class RunConfig:
    data: str
    model: str
    loss: str
    optimizer: str
    epochs: int
    batch_size: int
    seed: int
    hyperparameters: dict = field(default_factory=dict)  # optimizer keyword arguments
    model_options: dict = field(default_factory=dict)
    train_size: int | None = None  # first N of a seeded permutation of the training split
    test_size: int | None = None  # first N of the test split
    augment: bool = False
    # The training set is evaluated in a full pass (evaluation mode) every k-th
    # epoch and at the last; every epoch also records Keras' training metrics,
    # running means over its batches (training mode), which cost nothing extra.
    train_eval_every: int = 1
    # Negative-feedback study (pipeline.feedback); a dict of its fields is taken too.
    feedback: feedback.Feedback | None = None

    def __post_init__(self):
        if isinstance(self.feedback, dict):
            object.__setattr__(self, "feedback", feedback.Feedback.from_dict(self.feedback))

    def validate(self):
        if self.loss not in LOSSES:
            raise SoftlossError(f"unknown loss {self.loss!r}; choose one of {sorted(LOSSES)}")
        for name in ("epochs", "batch_size", "train_eval_every"):
            if getattr(self, name) < 1:
                raise SoftlossError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SoftlossError(f"{name} must be >= 1, got {getattr(self, name)}")
        models.build(self.model, **self.model_options)
        optim.build(self.optimizer, **self.hyperparameters)
        if self.feedback is not None:
            if self.loss != "ce":
                raise SoftlossError("feedback runs train the examples with known labels with ce: use --loss ce")
        return self

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, settings):
        """The RunConfig of `to_dict`'s output (run.json); unknown or missing keys are errors."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise SoftlossError(f"run config: unknown keys {', '.join(unknown)}")
        try:
            return cls(**settings)
        except TypeError as error:
            raise SoftlossError(f"run config: {error}") from None

    @classmethod
    def read(cls, path):
        try:
            settings = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise SoftlossError(f"{path}: unreadable run config ({error})") from None
        if not isinstance(settings, dict):
            raise SoftlossError(f"{path}: a run config is a JSON object")
        return cls.from_dict(settings)

    def fingerprint(self):
        """Identifies what the run computes: a checkpoint resumes only under the same one.
        `epochs` is left out so that a finished run can be extended; `data`, a
        path, so that the same dataset under another path (a moved checkout, a
        node's scratch copy) still resumes: its content is pinned by the
        checksums `prepare` checked and recorded, not by where it lies."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("epochs", "data")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


# --------------------------------------------------------------- metrics
# Evaluation batches: small on the host, where at 1000 images cifar_cnn's
# activations pass glibc's largest mmap threshold (32 MiB, see
# backend.reuse_freed_memory), so every batch's arrays were mapped afresh and
# zeroed by the kernel (thousands of page faults a batch; evaluating all of
# CIFAR-10 took 16.6 s against 15.1 s at 128 on 2 cores); large on a GPU, whose
# cost is per kernel launch.
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


def metrics_from_logits(logits, labels, loss_name):
    loss = float(LOSSES[loss_name](logits, labels.astype(np.int64)))
    accuracy = float(np.mean(logits.argmax(axis=1) == labels))
    return {"loss": loss, "accuracy": accuracy, "error": 1.0 - accuracy}


_DEVICE_CHECK_EVERY = 32


def _finite(params):
    return all(np.isfinite(leaf).all() for leaf in tree.leaves(params))


def _with_logits(objective, apply, noise):
    """The step's function: (loss, logits) of a batch in training mode."""

    def loss_and_logits(params, x, targets):
        logits = apply(params, x, train=True, rng=noise)
        return objective(logits, targets), logits

    return loss_and_logits


def _summary(row):
    """One epoch's log line."""
    train = (f"train loss {row['train_loss']:.4f} acc {row['train_accuracy']:.4f}" if row["train_loss"] is not None
             else f"running train loss {row['running_loss']:.4f}")  # fmt: skip
    return f"{train}, test loss {row['test_loss']:.4f} acc {row['test_accuracy']:.4f}"


# --------------------------------------------------------------- the run
def _datasets(config):
    train_images, train_labels = data.load(config.data, "train")
    test_images, test_labels = data.load(config.data, "test")
    for name, size, available in (("train_size", config.train_size, len(train_images)),
                                  ("test_size", config.test_size, len(test_images))):  # fmt: skip
        if size is not None and size > available:
            raise SoftlossError(f"{name} {size} is more than the {available:,} examples of {config.data}")
    if config.train_size is not None and config.train_size < len(train_images):
        # A seeded subset of the whole training set, the same for every loss.
        keep = np.sort(np.random.default_rng([config.seed, 7]).permutation(len(train_images))[: config.train_size])
        train_images, train_labels = train_images[keep], train_labels[keep]
    if config.test_size is not None:
        test_images, test_labels = test_images[: config.test_size], test_labels[: config.test_size]
    return train_images, train_labels, test_images, test_labels


def _set_aside(path):
    """Rename a damaged file out of the way (never delete it): path.unreadable-N."""
    n = 1
    while path.with_name(f"{path.name}.unreadable-{n}").exists():
        n += 1
    aside = path.with_name(f"{path.name}.unreadable-{n}")
    path.rename(aside)
    return aside


def _previous(checkpoint):
    return checkpoint.with_name("checkpoint.previous.npz")


def _readable_checkpoint(checkpoint, log):
    """(arrays, meta) of the newest readable checkpoint: `checkpoint`, else the
    one of the epoch before; damaged ones are set aside with one line each."""
    for path in (checkpoint, _previous(checkpoint)):
        try:
            return load_arrays(path)
        except FileNotFoundError:
            continue
        except UnreadableFile as error:
            log(f"{error}; set aside as {_set_aside(path).name}")
    return None


def _restore(checkpoint, config, code, params, state, rng, log):
    """(params, state, history) from the newest readable checkpoint if it belongs
    to this config and training `code`, else None (start afresh). Host arrays in
    and out: the caller moves them to its backend."""
    found = _readable_checkpoint(checkpoint, log)
    if found is None:
        return None
    arrays, meta = found
    if meta.get("fingerprint") != config.fingerprint():
        log(f"{checkpoint}: from a different configuration; starting afresh")
        return None
    if meta.get("code") != code:
        log(f"{checkpoint}: written by other training code; starting afresh")
        return None
    n = len(tree.leaves(params))
    slots = iter(arrays[n:])
    state = optim.OptState(meta["step"], tuple(tuple(next(slots) for _ in s) for s in state.slots))
    rng.bit_generator.state = meta["rng"]
    log(f"{checkpoint.parent}: resuming after epoch {len(meta['history'])}")
    return tree.rebuild(params, arrays[:n]), state, meta["history"]


def _save_checkpoint(path, config, code, params, state, rng, history):
    meta = {"fingerprint": config.fingerprint(), "code": code, "step": state.step, "rng": rng.bit_generator.state,
            "history": history}  # fmt: skip
    if path.exists():  # kept: a run whose newest checkpoint is damaged resumes from this one
        os.replace(path, _previous(path))
    save_arrays(path, [*tree.leaves(params), *(a for s in state.slots for a in s)], meta)


def _read_status(path, log):
    """The status.json in a run directory, or None (absent, or damaged: set aside)."""
    try:
        previous = json.loads(path.read_text())
        if not isinstance(previous, dict):
            raise ValueError("not a JSON object")
        return previous
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log(f"{path}: unreadable ({error}); set aside as {_set_aside(path).name}")
        return None


def _finished(config, out_dir, status, force, log):
    """The status of a run `out_dir` already finished (returned as is), else None.
    Refuses a directory holding a run of another configuration unless `force`."""
    previous = _read_status(out_dir / "status.json", log) if out_dir.is_dir() else None
    if previous is None:
        return None
    if previous.get("fingerprint") != status["fingerprint"]:
        if not force:
            raise SoftlossError(f"{out_dir} holds a run of another configuration ({previous.get('status', 'unknown')}, "
                                f"fingerprint {previous.get('fingerprint')}): choose another --out, or pass --force "
                                "to replace it")  # fmt: skip
        return None
    # a diverged run stays diverged; a finished one stays finished, under the same training code
    done = previous.get("code") == status["code"] and (previous.get("status") == "diverged" or (
        previous.get("status") == "completed" and previous.get("epoch") == config.epochs))
    return previous if done and (out_dir / "model.npz").exists() else None


def _fit_set(config, images, labels):
    """(images, targets, objective) the optimiser sees. targets: per-example
    arrays, {"labels"} and, for negative feedback, "negative" (the label is one
    known to be wrong); objective(logits, targets) -> the batch's loss."""
    fb = config.feedback
    loss = LOSSES[config.loss]
    if fb is None or fb.fraction == 0:
        return images, {"labels": labels}, lambda logits, t: loss(logits, t["labels"])
    seen, negative = feedback.assign(images, labels, fb.fraction, fb.wrong_label, config.seed)
    if fb.treatment == "drop":
        return images[~negative], {"labels": seen[~negative]}, lambda logits, t: loss(logits, t["labels"])
    treatment = fb.treatment
    return images, {"labels": seen, "negative": negative}, lambda logits, t: mixed_feedback(
        logits, t["labels"], t["negative"], on_negative=treatment)  # fmt: skip


class _Running:
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
        return {"running_loss": float(self.loss) / max(self.examples, 1),
                "running_accuracy": int(self.correct) / labelled if labelled else None}  # fmt: skip


def _epoch(config, epoch, params, state, opt, step_fn, images, targets, rng, backend, quiet):
    """One epoch of steps: (params, state, running means, reason), reason None
    unless the loss became non-finite (then params are mid-epoch and must not
    be kept)."""
    # Overflow is caught here as divergence; NumPy's warnings would only repeat it.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"), tqdm(
        total=len(images), desc=f"epoch {epoch}/{config.epochs}", unit="img",
        disable=True if quiet else None, leave=False,
    ) as bar:  # fmt: skip
        # On a GPU, reading the loss back every step would stall the device's
        # queue: a non-finite flag accumulates there and is read every 32 steps.
        nonfinite, step, running = None, 0, _Running(backend.xp)
        for step, (x, t) in enumerate(data.batches(images, targets, config.batch_size, rng, augment=config.augment), 1):
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
    if not _finite(params):
        return params, state, None, f"the weights became non-finite in epoch {epoch}"
    return params, state, running.means(), None


def _measure(apply, params, splits, loss_name, backend):
    """{train_loss, train_accuracy, ..., test_error} of `params` on each (images, labels) split;
    a split left out is recorded as not measured (None)."""
    row = {f"{name}_{key}": None for name in ("train", "test") for key in ("loss", "accuracy", "error")}
    with np.errstate(over="ignore", invalid="ignore"):  # huge but finite logits are still measured
        for name, (images, labels) in splits.items():
            metrics = metrics_from_logits(predict(apply, params, images, backend=backend), labels, loss_name)
            row.update({f"{name}_{key}": value for key, value in metrics.items()})
    return row


def run(config: RunConfig, out_dir, *, quiet=False, log=print, backend="auto", force=False):
    """Train (or resume) the run `config` in `out_dir` on `backend` ("auto",
    "numpy", "cupy" or a pipeline.backend.Backend); returns the final status dict.
    A directory holding a run of another configuration is refused unless `force`."""
    config.validate()
    out_dir = Path(out_dir)
    status_path, checkpoint = out_dir / "status.json", out_dir / "checkpoint.npz"
    status = {"config": asdict(config), "fingerprint": config.fingerprint(), "softloss_version": __version__,
              "code": code_version("train"), "commit": code_commit()}  # the checkout of the latest epochs
    if (previous := _finished(config, out_dir, status, force, log)) is not None:
        log(f"{out_dir}: already {previous['status']}")
        return previous
    # No mkdir: the first file written makes the directory, so a run that fails
    # before it starts (bad data, say) leaves no empty folder behind.
    if out_dir.is_dir() and (stale := remove_stale_temporaries(out_dir)):
        log(f"{out_dir}: removed {len(stale)} temporary file(s) of an interrupted run")

    # Data, model, optimiser, and where a checkpoint left off.
    backend = resolve(backend, log)
    status.update(backend=backend.name, device=backend.device)
    if not backend.on_device:
        status["blas"] = parallel.blas_kernel()
    train_images, train_labels, test_images, test_labels = _datasets(config)
    splits = {"train": (train_images, train_labels), "test": (test_images, test_labels)}
    fit_images, targets, objective = _fit_set(config, train_images, train_labels.astype(np.int64))
    init, apply = models.build(config.model, **config.model_options)
    opt = optim.build(config.optimizer, **config.hyperparameters)
    params = init(np.random.default_rng([config.seed, 0]), train_images.shape[1:])
    state = opt.init(params)
    rng = np.random.default_rng([config.seed, 1])  # shuffling, dropout, augmentation
    history = []
    if restored := _restore(checkpoint, config, status["code"], params, state, rng, log):
        params, state, history = restored
    params, state = backend.to_device(params), state._replace(slots=backend.to_device(state.slots))
    if backend.on_device and backend.fits(fit_images.nbytes):
        # Keep the (uint8) training set on the device: a batch, augmented or
        # not, is then made there, not on the host and transferred.
        fit_images, targets = backend.to_device(fit_images), {k: backend.to_device(a) for k, a in targets.items()}

    reason = None
    for epoch in range(len(history) + 1, config.epochs + 1):
        elapsed = sum(row["seconds"] for row in history)
        write_json(status_path, {**status, "status": "running", "epoch": epoch - 1, "wall_seconds": elapsed})
        started = time.perf_counter()
        # Dropout masks: drawn on the device from a generator seeded per epoch
        # there (its state cannot be checkpointed); from `rng` on the CPU.
        noise = backend.noise_rng(config.seed, epoch) if backend.on_device else rng
        step_fn = value_and_grad(_with_logits(objective, apply, noise), has_aux=True)
        trained, trained_state, running, reason = _epoch(config, epoch, params, state, opt, step_fn, fit_images, targets, rng,
                                                backend, quiet)  # fmt: skip
        if reason is not None:  # keep the last finite parameters
            status.update(status="diverged", epoch=epoch, reason=reason,
                          wall_seconds=elapsed + time.perf_counter() - started)  # fmt: skip
            log(f"{out_dir}: diverged: {reason}")
            break
        params, state = trained, trained_state
        evaluated = time.perf_counter()
        measured = splits if epoch % config.train_eval_every == 0 or epoch == config.epochs else {"test": splits["test"]}
        row = _measure(apply, params, measured, config.loss, backend)
        now = time.perf_counter()
        history.append({"epoch": epoch, **row, **running, "seconds": now - started, "eval_seconds": now - evaluated})
        _save_checkpoint(checkpoint, config, status["code"], backend.to_host(params),
                         state._replace(slots=backend.to_host(state.slots)), rng, history)  # fmt: skip
        write_history(out_dir / "history.csv", history)
        if not quiet:
            log(f"epoch {epoch}: " + _summary(history[-1]))

    write_history(out_dir / "history.csv", history)
    save_arrays(out_dir / "model.npz", tree.leaves(backend.to_host(params)),
                {"config": asdict(config), "input_shape": list(train_images.shape[1:])})  # fmt: skip
    if reason is None:
        status.update(status="completed", epoch=len(history), wall_seconds=sum(r["seconds"] for r in history))
    write_json(status_path, status)
    return status


def load_model(run_dir):
    """(apply, params, config) of a run directory's model.npz."""
    path = Path(run_dir) / "model.npz"
    try:
        arrays, meta = load_arrays(path, what="model file")
    except FileNotFoundError:
        raise SoftlossError(f"{path}: missing; train the run first") from None
    except UnreadableFile as error:
        raise SoftlossError(f"{error}; train the run again: snakemake --cores 1 --force {path}") from None
    config = RunConfig.from_dict(meta["config"])
    init, apply = models.build(config.model, **config.model_options)
    like = init(np.random.default_rng(0), tuple(meta["input_shape"]))
    if [a.shape for a in arrays] != [p.shape for p in tree.leaves(like)]:
        raise SoftlossError(f"{path}: its arrays do not fit the model {config.model} of this code (written by other "
                            f"code?); train the run again: snakemake --cores 1 --force {path}")  # fmt: skip
    return apply, tree.rebuild(like, arrays), config


def parse_hyperparameter(text, kind="hyperparameter"):
    """'rho=0.95' -> ('rho', 0.95); booleans and numbers are converted.
    `kind` names what is parsed in errors ("hyperparameter", "model option")."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SoftlossError(f"{kind} {text!r} is not KEY=VALUE")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        number = float(value)
    except ValueError:
        raise SoftlossError(f"{kind} {key}: {value!r} is not a number or true/false") from None
    if not math.isfinite(number):
        raise SoftlossError(f"{kind} {key} must be finite, got {value}")
    return key, number
