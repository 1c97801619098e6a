"""The command line's arguments: one parser per command, each option with its
help, each command's handler (pipeline.handlers) its default `run`."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import handlers
from .argtypes import OlderName, whole
from .core.backend import BACKENDS
from .core.losses import LOSSES
from .core.models import MODELS
from .core.optim import OPTIMIZERS
from .datasets.fetch import VENDOR_DIR
from .datasets.registry import REGISTRY
from .results_arguments import RESULTS_PARSERS
from .runs.feedback import TREATMENTS, WRONG_LABELS


def _fetch(commands, names):
    """`fetch`."""
    fetch = commands.add_parser("fetch", help="download and verify a dataset's raw files")
    fetch.add_argument("dataset", help=names(REGISTRY))
    fetch.add_argument("--out", required=True, type=Path, help="the raw files' folder (data/raw/DATASET)")
    fetch.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL_OR_DIR",
        help="try this source first (repeatable); then $SOFTLOSS_MIRROR, then the official URLs",
    )
    fetch.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a download may stall before the attempt is retried (default 30); a source "
        "that does not answer within 10 s (or this, if shorter) is given up at once",
    )
    fetch.add_argument("--retries", type=int, default=3, help="retries per source for transient failures")
    fetch.add_argument("--quiet", action="store_true", help="no progress bars")
    fetch.add_argument("--only", metavar="FILE", default=None, help="fetch this one file of the dataset")
    fetch.add_argument(
        "--vendored",
        type=Path,
        default=VENDOR_DIR,
        metavar="DIR",
        help=f"the project's own copies of datasets (default: the checkout's, {VENDOR_DIR})",
    )
    fetch.set_defaults(run=handlers.fetch)


def _prepare(commands, names):
    """`prepare`."""
    prepare = commands.add_parser("prepare", help="parse raw files into one HDF5 dataset file")
    prepare.add_argument("dataset", help=f"{names(REGISTRY)}, or a name for --image-folder")
    prepare.add_argument(
        "--raw",
        required=True,
        type=Path,
        nargs="+",
        metavar="PATH",
        help="directory holding the fetched raw files; with --image-folder, a folder of "
        "train/<class>/ and test/<class>/ images, or tar.gz archives of them",
    )
    prepare.add_argument("--out", required=True, type=Path, help="HDF5 file to write (e.g. data/mnist.h5)")
    prepare.add_argument(
        "--image-folder",
        action="store_true",
        help="a class-folder dataset of your own: --raw holds train/<class>/ and test/<class>/ "
        "PNG or JPEG images, or tar.gz archives of them; classes in sorted name order",
    )
    prepare.set_defaults(run=handlers.prepare)


def _check_config(commands, names):
    """`check-config`."""
    check = commands.add_parser(
        "check-config", help="check config files (YAML syntax and schema), one line per problem"
    )
    check.add_argument(
        "files", nargs="+", type=Path, help="config files, merged into config/config.yaml in order"
    )
    check.set_defaults(run=handlers.check_config)


def _move_results(commands, names):
    """`move-results`."""
    move = commands.add_parser(
        "move-results",
        help="move a config's runs from results/RUN (the layout before each "
        "config had its folder) to results/NAME/RUN",
    )
    move.add_argument(
        "files",
        nargs="*",
        type=Path,
        help="the config files the runs were made with, as --configfile gave them (none: the default config)",
    )
    move.add_argument(
        "--results", type=Path, default=Path("results"), help="the results folder (default results)"
    )
    move.set_defaults(run=handlers.move_results)


def _train(commands, names):
    """`train`."""
    train = commands.add_parser("train", help="train one model with one loss (resumes from a checkpoint)")
    train.add_argument(
        "--run-config",
        type=Path,
        default=None,
        metavar="JSON",
        help="the whole run as JSON (RunConfig.to_dict(); the pipeline writes results/RUN/run.json) "
        "instead of the flags below; --data may still point elsewhere",
    )
    train.add_argument("--data", type=Path, help="prepared HDF5 dataset")
    _what_a_run_is(train, names)
    _negative_feedback(train)
    train.add_argument(
        "--backend",
        default="numpy",
        choices=BACKENDS,
        help="numpy (CPU, the default), cupy (GPU), or auto: cupy when it imports and sees a GPU",
    )
    train.add_argument("--out", required=True, type=Path, help="run directory")
    train.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    train.add_argument(
        "--force", action="store_true", help="replace a run of another configuration that --out already holds"
    )
    train.add_argument(
        "--threads",
        type=whole(1),
        default=None,
        help="CPU threads for the blocks of work (default: as many as BLAS has); results do not depend on it",
    )
    train.add_argument(
        "--allow-different-settings",
        action="store_true",
        help="resume a checkpoint written under other CPU settings, BLAS kernels or package versions",
    )
    train.set_defaults(run=handlers.train)


def _what_a_run_is(train, names):
    """train's flags that describe the run (what --run-config holds instead)."""
    train.add_argument("--model", help=names(MODELS))
    train.add_argument("--loss", help=names(LOSSES))
    train.add_argument(
        "--loss-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a loss option, e.g. gamma=2 for focal (repeatable)",
    )
    train.add_argument(
        "--loss-file",
        type=Path,
        default=None,
        metavar="PY",
        help="a loss of your own: the function --loss names in this Python file",
    )
    train.add_argument("--optimizer", help=names(OPTIMIZERS))
    train.add_argument("--lr", type=float, default=None, help="learning rate (default: the optimizer's)")
    train.add_argument(
        "--hyper",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another optimizer hyperparameter, e.g. decay=1e-6 (repeatable)",
    )
    train.add_argument(
        "--model-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model option, e.g. hidden=64 for mlp (repeatable)",
    )
    train.add_argument("--epochs", type=whole(1), help="epochs to train (a finished run given more resumes)")
    train.add_argument("--batch-size", type=whole(1), help="examples per training step")
    train.add_argument(
        "--seed", type=whole(0), help="fixes initial weights, batch order, dropout and augmentation"
    )
    train.add_argument(
        "--train-size", type=whole(1), default=None, help="train on a seeded subset of N examples"
    )
    train.add_argument(
        "--test-size", type=whole(1), default=None, help="evaluate on the first N test examples"
    )
    train.add_argument("--augment", action="store_true", help="Keras-style shifts and flips (CIFAR)")
    train.add_argument(
        "--train-eval-every",
        type=whole(1),
        default=None,
        metavar="K",
        help="evaluate the training set in a full pass every K-th epoch and at the last (default 1); "
        "every epoch records the running means over its batches anyway",
    )


def _negative_feedback(train):
    """train's flags of the negative-feedback study (pipeline.runs.feedback)."""
    train.add_argument(
        "--feedback-fraction",
        type=float,
        default=None,
        metavar="Q",
        help="negative-feedback study: this fraction of training examples keeps only a wrong label",
    )
    train.add_argument(
        "--feedback-wrong-label",
        "--feedback-label",
        default="random",
        choices=WRONG_LABELS,
        action=OlderName,
        older="--feedback-label",
        help="how the wrong label is chosen (default random)",
    )
    train.add_argument(
        "--feedback-treatment",
        default="complement",
        choices=TREATMENTS,
        help="what to train on those examples (default complement)",
    )


def _evaluate(commands, names):
    """`evaluate`."""
    evaluate = commands.add_parser("evaluate", help="final test metrics of a run as JSON")
    evaluate.add_argument(
        "--run", dest="run_dir", required=True, type=Path, help="run directory written by train"
    )
    evaluate.add_argument("--data", required=True, type=Path, help="prepared HDF5 dataset")
    evaluate.add_argument("--out", required=True, type=Path, help="metrics JSON file to write")
    evaluate.set_defaults(run=handlers.evaluate)


def _diagnose(commands, names):
    """`diagnose`."""
    diagnose = commands.add_parser(
        "diagnose", help="where a saved run's loss gradient goes (pipeline.runs.diagnostics)"
    )
    diagnose.add_argument(
        "checkpoints",
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="a run's checkpoint.npz (its status.json beside it gives the run's config)",
    )
    diagnose.add_argument(
        "--data", type=Path, default=None, help="the prepared dataset, if not at the run's own path"
    )
    diagnose.add_argument(
        "--out", type=Path, default=None, help="a CSV file for the rows (default: JSON lines on stdout)"
    )
    diagnose.set_defaults(run=handlers.diagnose)


PARSERS = (_fetch, _prepare, _check_config, _move_results, _train, _evaluate, _diagnose, *RESULTS_PARSERS)


def build_parser():
    def names(registry):  # the names come from the registries, never copied by hand
        return ", ".join(registry)

    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="softloss: the classification-loss study"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in PARSERS:
        add(commands, names)
    return parser
