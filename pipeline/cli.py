"""Command line: `python -m pipeline COMMAND ...` (see `--help`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import handlers
from .common.errors import SoftlossError


def _whole(minimum):
    """argparse type: a whole number >= minimum (argparse names the option in its error)."""

    def whole(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    whole.__name__ = "whole number"
    return whole


class _OlderName(argparse.Action):
    """An option that also answers to its older name, with a note when that is used."""

    def __init__(self, *args, older, **kwargs):
        super().__init__(*args, **kwargs)
        self.older = older

    def __call__(self, parser, namespace, values, option_string=None):
        if option_string == self.older:
            print(
                f"note: {self.older} is now called {self.option_strings[0]}; {self.older} is still read",
                file=sys.stderr,
            )
        setattr(namespace, self.dest, values)


def _named_path(text):
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH")
    return text


# The package code each command runs: its modules and what they import
# (pipeline.common.versions), and the files it reads beside them. A workflow
# rule's code version is its command's, so a change to that code, and only
# to it, reruns the rule's jobs.
COMMAND_CODE = {
    "fetch": (("datasets.fetch",), ()),
    "prepare": (("datasets.prepare",), ()),
    "train": (("runs.train",), ()),
    "evaluate": (("runs.evaluate",), ()),
    "diagnose": (("runs.diagnose",), ()),
    "toy": (("runs.toy",), ()),
    "aggregate": (("report.aggregate",), ()),
    "report": (("report.render", "studies"), ("report/templates/*.j2", "studies/templates/*.j2")),
    "archive": (("report.archive",), ()),
    "snapshot": (("report.snapshot",), ("report/templates/*.j2",)),
    "reproduce": (("reproduce",), ()),
}


def command_version(*commands):
    """12 hex digits identifying the code `python -m pipeline COMMAND` runs (for
    a rule that runs several, all of theirs)."""
    from .common.versions import code_version

    modules = [module for command in commands for module in COMMAND_CODE[command][0]]
    files = [pattern for command in commands for pattern in COMMAND_CODE[command][1]]
    return code_version(*modules, extra=files)


def _data_commands(commands, names):
    """fetch, prepare, check-config."""
    from .datasets.fetch import VENDOR_DIR
    from .datasets.registry import REGISTRY

    fetch = commands.add_parser("fetch", help="download and verify a dataset's raw files")
    fetch.add_argument("dataset", help=names(REGISTRY))
    fetch.add_argument(
        "--out", required=True, type=Path, help="directory for the raw files (data/raw/DATASET)"
    )
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
        help=f"the project's own copies of datasets (default {VENDOR_DIR}, from the working directory)",
    )
    fetch.set_defaults(run=handlers.fetch)

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

    check = commands.add_parser(
        "check-config", help="check config files (YAML syntax and schema), one line per problem"
    )
    check.add_argument(
        "files", nargs="+", type=Path, help="config files, merged into config/config.yaml in order"
    )
    check.set_defaults(run=handlers.check_config)

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


def _run_commands(commands, names):
    """train."""
    from .core.backend import BACKENDS
    from .core.losses import LOSSES
    from .core.models import MODELS
    from .core.optim import OPTIMIZERS
    from .runs.feedback import TREATMENTS, WRONG_LABELS

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
    train.add_argument("--epochs", type=_whole(1), help="epochs to train (a finished run given more resumes)")
    train.add_argument("--batch-size", type=_whole(1), help="examples per training step")
    train.add_argument(
        "--seed", type=_whole(0), help="fixes initial weights, batch order, dropout and augmentation"
    )
    train.add_argument(
        "--train-size", type=_whole(1), default=None, help="train on a seeded subset of N examples"
    )
    train.add_argument(
        "--test-size", type=_whole(1), default=None, help="evaluate on the first N test examples"
    )
    train.add_argument("--augment", action="store_true", help="Keras-style shifts and flips (CIFAR)")
    train.add_argument(
        "--train-eval-every",
        type=_whole(1),
        default=None,
        metavar="K",
        help="evaluate the training set in a full pass every K-th epoch and at the last (default 1); "
        "every epoch records the running means over its batches anyway",
    )
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
        action=_OlderName,
        older="--feedback-label",
        help="how the wrong label is chosen (default random)",
    )
    train.add_argument(
        "--feedback-treatment",
        default="complement",
        choices=TREATMENTS,
        help="what to train on those examples (default complement)",
    )
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
        type=_whole(1),
        default=None,
        help="CPU threads for the blocks of work (default: as many as BLAS has); results do not depend on it",
    )
    train.add_argument(
        "--allow-different-settings",
        action="store_true",
        help="resume a checkpoint written under other CPU settings, BLAS kernels or package versions",
    )
    train.set_defaults(run=handlers.train)


def _evaluate_commands(commands, names):
    """evaluate, diagnose."""
    evaluate = commands.add_parser("evaluate", help="final test metrics of a run as JSON")
    evaluate.add_argument(
        "--run", dest="run_dir", required=True, type=Path, help="run directory written by train"
    )
    evaluate.add_argument("--data", required=True, type=Path, help="prepared HDF5 dataset")
    evaluate.add_argument("--out", required=True, type=Path, help="metrics JSON file to write")
    evaluate.set_defaults(run=handlers.evaluate)

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


def _report_commands(commands, names):
    """aggregate, report, toy, archive, snapshot, verify-archive."""

    aggregate = commands.add_parser("aggregate", help="collect run directories into one summary JSON")
    aggregate.add_argument("--runs", nargs="+", required=True, type=Path, help="run directories")
    aggregate.add_argument(
        "--out", required=True, type=Path, help="summary JSON to write (results/summary.json)"
    )
    aggregate.add_argument(
        "--in-progress",
        action="store_true",
        help="take runs still training as they stand (their history so far; no test metrics): a snapshot to report and archive",
    )
    aggregate.set_defaults(run=handlers.aggregate)

    report = commands.add_parser("report", help="render the HTML report from a summary JSON")
    report.add_argument("--summary", required=True, type=Path, help="Table I's summary JSON (from aggregate)")
    report.add_argument("--data", nargs="*", default=[], type=Path, help="prepared datasets (for provenance)")
    report.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    report.add_argument(
        "--study", action="append", default=[], type=Path, help="a study's summary JSON (repeatable)"
    )
    report.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        type=_named_path,
        help="a file a study's view reads, e.g. toy=results/studies/knet_softmax/toy_boundaries.json",
    )
    report.add_argument("--out", required=True, type=Path, help="HTML file to write (reports/summary.html)")
    report.add_argument(
        "--figures",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write the report's figures (PNG) and Table I (CSV) into DIR, for snakemake --report",
    )
    report.set_defaults(run=handlers.report)

    toy = commands.add_parser("toy", help="2-D toy: linear softmax vs MLP class boundaries, as JSON")
    toy.add_argument("--out", required=True, type=Path, help="JSON file to write")
    toy.set_defaults(run=handlers.toy)

    archive = commands.add_parser("archive", help="pack config, versions, checksums, runs and report")
    archive.add_argument(
        "--summary", nargs="+", required=True, type=Path, help="summary JSONs whose runs to pack"
    )
    archive.add_argument("--report", required=True, type=Path, help="the HTML report to pack")
    archive.add_argument(
        "--data", nargs="*", default=[], type=Path, help="prepared datasets (their checksums)"
    )
    archive.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    archive.add_argument(
        "--out",
        required=True,
        type=Path,
        help="archive to write; its members lie in a folder of its name (without .tar.gz)",
    )
    archive.set_defaults(run=handlers.archive)

    snapshot = commands.add_parser("snapshot", help="archive a study still training: its runs as they stand")
    snapshot.add_argument(
        "--runs",
        nargs="+",
        required=True,
        type=Path,
        help="the study's run directories (those not started yet are left out)",
    )
    snapshot.add_argument(
        "--data", nargs="*", default=[], type=Path, help="prepared datasets (their checksums)"
    )
    snapshot.add_argument("--config-json", default=None, help="the configuration used, as JSON")
    snapshot.add_argument(
        "--out", required=True, type=Path, help="archive to write (the study's files are untouched)"
    )
    snapshot.set_defaults(run=handlers.snapshot)

    again = commands.add_parser(
        "reproduce", help="retrain an archive's runs from its own record and compare every epoch"
    )
    again.add_argument("archive", type=Path, help="a softloss archive (.tar.gz)")
    again.add_argument(
        "runs",
        nargs="*",
        metavar="RUN",
        help="run directories as the archive names them, or their ends; all: every run "
        "(default: the cheapest run of each loss)",
    )
    again.add_argument(
        "--epochs",
        type=_whole(1),
        default=None,
        help="retrain this many epochs (default: all the archive has)",
    )
    again.add_argument(
        "--data",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the prepared datasets are (default: as recorded, data/)",
    )
    again.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="retrain with this CPU setting instead of the recorded one (pipeline/core/settings.py; repeatable)",
    )
    again.add_argument("--out", type=Path, default=None, help="also write the lines to this file")
    again.add_argument("--check", action="store_true", help="exit with 1 if any run differs")
    again.set_defaults(run=handlers.reproduce)

    verify = commands.add_parser("verify-archive", help="re-check archives' checksums and Table I")
    verify.add_argument("archives", nargs="+", type=Path, help="softloss archives (.tar.gz), each checked")
    verify.set_defaults(run=handlers.verify_archive)


def _bench_command(commands, names):
    """bench."""
    from .bench.compare import COMPARABLE
    from .core.backend import BACKENDS

    bench = commands.add_parser("bench", help="train-step throughput beside PyTorch (and JAX on the CPU)")
    bench.add_argument(
        "--cases",
        nargs="+",
        default=None,
        metavar="MODEL:BATCH",
        help="e.g. mnist_cnn:128 (default: knet_softmax:100 mnist_cnn:128 cifar_cnn:32 cifar_cnn:128)",
    )
    bench.add_argument(
        "--steps", type=_whole(1), default=None, help="steps per timed block (default: about 2048 images)"
    )
    bench.add_argument(
        "--repeats", type=_whole(1), default=3, help="timed blocks per framework (median reported)"
    )
    bench.add_argument(
        "--alone", action="store_true", help="time softloss only, not the installed yardsticks"
    )
    bench.add_argument(
        "--threads",
        type=_whole(1),
        default=None,
        help="CPU threads for softloss and PyTorch alike (default: as many as BLAS has)",
    )
    bench.add_argument(
        "--backend",
        default="numpy",
        choices=BACKENDS,
        help="where softloss runs; PyTorch runs on the same kind of device (default numpy: CPU)",
    )
    bench.add_argument(
        "--compare",
        default=None,
        metavar="SETTING=A,B",
        help="time softloss alone under each value of a CPU setting, in turns in one process, each "
        f"against the first; SETTING is one of {', '.join(COMPARABLE)}",
    )
    bench.set_defaults(run=handlers.bench)


def build_parser():
    def names(registry):  # the names come from the registries, never copied by hand
        return ", ".join(registry)

    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description="softloss: the classification-loss study"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_data_commands, _run_commands, _evaluate_commands, _report_commands, _bench_command):
        add(commands, names)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if getattr(args, "cases", None) is None and args.command == "bench":
        from .bench.cases import DEFAULT_CASES

        args.cases = DEFAULT_CASES
    from .common.machine import reuse_freed_memory

    reuse_freed_memory()
    try:
        code = args.run(args)
    except (SoftlossError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code or 0
