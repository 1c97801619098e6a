"""What a training run computes: `RunConfig`, the whole run as one value (the
pipeline writes it to a run directory's run.json), and its fingerprint."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..common.errors import SoftlossError
from ..core import losses, models, optim
from . import feedback, user_loss


@functools.cache
def _probed(key):
    """`user_loss.problem` of the user loss `key` names ([name, source, options, shape] as JSON)."""
    name, source, options, shape = json.loads(key)
    try:
        loss = user_loss.load(source)
    except SoftlossError as error:
        return str(error)
    loss = functools.partial(loss, **options) if options else loss
    return user_loss.problem(loss, f"{source['file']}: loss {name!r}", shape)


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
    # Negative-feedback study (pipeline.runs.feedback); a dict of its fields is taken too.
    feedback: feedback.Feedback | None = None
    loss_options: dict = field(default_factory=dict)  # the loss's settings (eps, gamma, ...)
    # A loss of one's own (pipeline.runs.user_loss.source): {file, function, digest}.
    loss_source: dict | None = None

    def __post_init__(self):
        if isinstance(self.feedback, dict):
            object.__setattr__(self, "feedback", feedback.Feedback.from_dict(self.feedback))

    def problems(self, n_classes=10):
        """One message per setting this run cannot start with (its model and
        optimizer built for real, so an unknown keyword or a negative rate counts;
        a loss of one's own tried on a batch of its size and `n_classes`)."""
        checks = [
            self._check_numbers,
            lambda: models.build(self.model, **self.model_options),
            lambda: optim.build(self.optimizer, **self.hyperparameters),
            lambda: self._check_loss(n_classes),
        ]
        found = []
        for check in checks:
            try:
                check()
            except (SoftlossError, ValueError) as error:
                found.append(str(error))
        return found

    def validate(self, n_classes=10):
        """This config, or a SoftlossError naming its first problem."""
        if found := self.problems(n_classes):
            raise SoftlossError(found[0])
        return self

    def _check_numbers(self):
        for name in ("epochs", "batch_size", "train_eval_every"):
            if getattr(self, name) < 1:
                raise SoftlossError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SoftlossError(f"{name} must be >= 1, got {getattr(self, name)}")

    def build_loss(self):
        """This run's loss as a function of (logits, labels), its options bound."""
        if self.loss_source is None:
            return losses.build(self.loss, **self.loss_options)
        loss = user_loss.load(self.loss_source)
        return functools.partial(loss, **self.loss_options) if self.loss_options else loss

    def _check_loss(self, n_classes):
        if self.loss_source is None and self.loss not in losses.LOSSES:
            raise SoftlossError(
                f"unknown loss {self.loss!r}; choose one of {', '.join(losses.LOSSES)}, or declare "
                "your own under user_losses:"
            )
        if (
            self.loss_source is not None
        ):  # a loss of one's own: tried on a probe batch, once per file and options
            shape = [self.batch_size, n_classes]
            if trouble := _probed(
                json.dumps([self.loss, self.loss_source, self.loss_options, shape], sort_keys=True)
            ):
                raise SoftlossError(trouble)
        else:
            self.build_loss()  # an unknown option is refused here
        if self.feedback is not None and self.loss != "ce":
            raise SoftlossError("feedback runs train the examples with known labels with ce: use --loss ce")

    def build_model(self, n_classes=10):
        """(init, apply) of this run's model with `n_classes` outputs (the
        dataset's class count); a model option n_classes must agree with it."""
        options = dict(self.model_options)
        if options.setdefault("n_classes", n_classes) != n_classes:
            raise SoftlossError(
                f"model option n_classes={options['n_classes']}, but {self.data} has {n_classes} classes"
            )
        return models.build(self.model, **options)

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
        node's scratch copy) still resumes: what identifies the data is its
        content's digest, beside this in the run's identity
        (pipeline.runs.checkpoint.IDENTITY), not where it lies."""
        fields = {k: v for k, v in asdict(self).items() if k not in ("epochs", "data")}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def batch_fits(batch_size, examples, data):
    """A SoftlossError if a batch is larger than the training set it is drawn from."""
    if batch_size > examples:
        raise SoftlossError(
            f"batch_size {batch_size} is more than the {examples:,} training examples of {data} "
            f"(for full-batch training give batch_size {examples})"
        )


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
