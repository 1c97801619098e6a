"""What each `python -m pipeline COMMAND` does, given its parsed arguments
(pipeline.cli builds the parser and calls these)."""

from __future__ import annotations

import dataclasses
import re
import signal
import sys

from .common.errors import SoftlossError


def bench(args):
    from .bench.run import run

    run(
        cases=args.cases,
        steps=args.steps,
        repeats=args.repeats,
        alone=args.alone,
        backend=args.backend,
        threads=args.threads,
        compare=args.compare,
    )


def fetch(args):
    from .datasets.fetch import fetch

    fetch(
        args.dataset,
        args.out,
        args.mirror,
        timeout=args.timeout,
        retries=args.retries,
        quiet=args.quiet,
        only=args.only,
        vendor_dir=args.vendored,
    )


def check_config(args):
    from .plan.configcheck import DEFAULT, check_files
    from .studies import STUDIES

    name, _, problems = check_files(args.files, STUDIES)
    for line in problems:
        print(f"config error: {line}", file=sys.stderr)
    if problems:
        return 2
    print(
        f"{', '.join(map(str, args.files))}: ok (merged into {DEFAULT}, checked against the schema); "
        f"its runs: results/{name}/"
    )


def move_results(args):
    from .plan.configcheck import check_files
    from .plan.layout import move_old_layout
    from .studies import STUDIES

    name, jobs, problems = check_files(args.files, STUDIES)
    if problems:
        raise SoftlossError(f"{', '.join(map(str, args.files)) or 'the default config'}: {problems[0]}")
    move_old_layout(jobs, name, args.results)


def prepare(args):
    from .datasets.folders import folder_spec
    from .datasets.prepare import prepare
    from .datasets.registry import REGISTRY

    if args.image_folder:
        if args.dataset in REGISTRY:
            raise SoftlossError(f"{args.dataset} is a registered dataset: prepare it without --image-folder")
        if not re.fullmatch(r"[a-z][a-z0-9_]*", args.dataset):
            raise SoftlossError(f"dataset name {args.dataset!r}: use lower-case letters, digits and _")
        raw = args.raw[0] if len(args.raw) == 1 else args.raw
        prepare(folder_spec(args.dataset, raw), raw, args.out)
    elif len(args.raw) > 1:
        raise SoftlossError(
            f"{args.dataset}: give one --raw directory (several only with --image-folder archives)"
        )
    else:
        prepare(args.dataset, args.raw[0], args.out)


RUN_FLAGS = ("model", "loss", "optimizer", "epochs", "batch_size", "seed")  # required without --run-config
# Flags that describe the run too, so --run-config refuses them (defaults: None or empty).
OPTIONAL_RUN_FLAGS = (
    "lr",
    "hyper",
    "model_option",
    "train_size",
    "test_size",
    "augment",
    "train_eval_every",
    "feedback_fraction",
    "loss_option",
    "loss_file",
)


def _terminated(signum, frame):
    """SIGTERM (a scheduler cancelling the job, Snakemake stopping) as an
    interruption the run records in its status before it exits."""
    raise KeyboardInterrupt("terminated by SIGTERM")


def _run_config_from_flags(args):
    """The RunConfig the train command's flags describe."""
    from .runs import user_loss
    from .runs.config import RunConfig, parse_hyperparameter

    missing = [f"--{name.replace('_', '-')}" for name in ("data", *RUN_FLAGS) if getattr(args, name) is None]
    if missing:
        raise SoftlossError(f"train needs {', '.join(missing)} (or --run-config FILE)")
    hyper = dict(parse_hyperparameter(h) for h in args.hyper)
    if args.lr is not None:
        hyper["lr"] = args.lr
    options = dict(parse_hyperparameter(h, kind="model option") for h in args.model_option)
    options = {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in options.items()}
    return RunConfig(
        data=str(args.data),
        model=args.model,
        loss=args.loss,
        optimizer=args.optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        hyperparameters=hyper,
        model_options=options,
        train_size=args.train_size,
        test_size=args.test_size,
        augment=args.augment,
        train_eval_every=args.train_eval_every or 1,
        feedback=None
        if args.feedback_fraction is None
        else {
            "fraction": args.feedback_fraction,
            "wrong_label": args.feedback_wrong_label,
            "treatment": args.feedback_treatment,
        },
        loss_options=dict(parse_hyperparameter(h, kind="loss option") for h in args.loss_option),
        loss_source=user_loss.source(args.loss_file, args.loss) if args.loss_file else None,
    )


def train(args):
    from .runs.config import RunConfig
    from .runs.train import run

    signal.signal(signal.SIGTERM, _terminated)
    if args.run_config:
        given = [
            f"--{name.replace('_', '-')}"
            for name in RUN_FLAGS + OPTIONAL_RUN_FLAGS
            if getattr(args, name) not in (None, [], False)
        ]
        if given:
            raise SoftlossError(f"--run-config holds the whole run: drop {', '.join(given)}")
        config = RunConfig.read(args.run_config)
    else:
        config = _run_config_from_flags(args)
    if args.data is not None and args.run_config:
        config = dataclasses.replace(config, data=str(args.data))
    status = run(
        config,
        args.out,
        quiet=args.quiet,
        backend=args.backend,
        force=args.force,
        threads=args.threads,
        allow_different_settings=args.allow_different_settings,
    )
    print(f"{args.out}: {status['status']} after epoch {status['epoch']}")


def evaluate(args):
    from .runs.evaluate import evaluate

    result = evaluate(args.run_dir, args.data, args.out)
    if result["status"] == "completed":
        print(f"{args.run_dir}: test accuracy {result['test_accuracy']:.4f}, ECE {result['ece']:.4f}")
    else:
        print(f"{args.run_dir}: {result['status']} ({result.get('reason')})")


def diagnose(args):
    import json

    from .runs.diagnose import diagnose
    from .runs.rundir import write_diagnostics

    rows = [{"checkpoint": str(path), **diagnose(path, args.data)} for path in args.checkpoints]
    if args.out:
        write_diagnostics(args.out, rows, first=("checkpoint",))
        print(f"{args.out}: {len(rows)} checkpoint(s)")
    else:
        for row in rows:
            print(json.dumps(row))


def aggregate(args):
    from .report.aggregate import aggregate

    runs = aggregate(args.runs, args.out, in_progress=args.in_progress)
    running = sum(run["status"] == "running" for run in runs)
    print(f"{args.out}: {len(runs)} runs" + (f", {running} still training" if running else ""))


def _config(args):
    """The configuration a report or an archive records (--config-json)."""
    import json

    try:
        return json.loads(args.config_json) if args.config_json else {}
    except ValueError as error:
        raise ValueError(f"--config-json is not JSON: {error}") from None


def report(args):
    from .report.render import render, write_figures
    from .studies import STUDIES

    config = _config(args)
    inputs = dict(item.split("=", 1) for item in args.input)
    print(
        render(
            args.summary, args.data, config, args.out, study_paths=args.study, inputs=inputs, studies=STUDIES
        )
    )
    if args.figures:
        print(f"{args.figures}: {len(write_figures(args.out, args.figures))} files")


def toy(args):
    from .runs.toy import toy_boundaries

    result = toy_boundaries(args.out)
    print(", ".join(f"{name}: training accuracy {m['accuracy']:.3f}" for name, m in result["models"].items()))


def archive(args):
    from .report.archive import build

    config = _config(args)
    print(build(args.out, args.summary, args.report, config, args.data))


def snapshot(args):
    from .report.snapshot import snapshot

    config = _config(args)
    runs, waiting = snapshot(args.runs, args.data, config, args.out)
    running = sum(run["status"] == "running" for run in runs)
    print(
        f"{args.out}: {len(runs)} runs ({running} still training)"
        + (f", {waiting} not started" if waiting else "")
    )


def verify_archive(args):
    from .report.archive import verify

    failed = 0
    for archive in args.archives:
        try:
            print(f"{archive}: {verify(archive)} members match the MANIFEST; Table I matches the results")
        except SoftlossError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
    return 2 if failed else None


def reproduce(args):
    from .common.files import write_atomic
    from .reproduce import reproduce

    overrides = {}
    for text in args.setting:
        name, _, value = text.partition("=")
        overrides[name] = int(value) if value.isdigit() else value
    results = reproduce(args.archive, args.runs, args.epochs, args.data, overrides)
    if args.out:
        text = "".join(f"{run_dir}: {line}\n" for run_dir, _, line in results)
        write_atomic(args.out, lambda out: out.write(text.encode()))
    return 1 if args.check and not all(same for _, same, _ in results) else None
