"""The planner: config -> {run_id: Job}, in Python (pipeline/plan/jobs.py)."""

import json
from collections import Counter
from dataclasses import replace

import pytest
from repo import REPO

from pipeline.common.errors import SoftlossError
from pipeline.plan import jobs as planner
from pipeline.plan.configcheck import DEFAULT, load_yaml, merge
from pipeline.plan.jobs import problems
from pipeline.runs.config import RunConfig
from pipeline.runs.feedback import Feedback
from pipeline.studies import STUDIES


def _config(*files):
    config = load_yaml(REPO / DEFAULT)
    for name in files:
        config = merge(config, load_yaml(REPO / name))
    return config


def plan(config):
    """The jobs of `config`, its side studies included, as the workflow plans them."""
    return planner.plan(config, STUDIES)


def test_default_config_plans_every_run_once():
    jobs = plan(_config())
    studies = Counter(job.study for job in jobs.values())
    # knet_softmax: 7 losses x 3 seeds; mnist_cnn: 7 x 2; negative feedback: q=0 once, 3 q x 2 ways x 5
    # treatments, q=1 x 2 ways x 4 (nothing to drop); log loss: 2 models x 3 rates x 3 losses; Knet's softmax: 1.
    assert studies == {"main": 21 + 14, "negative_feedback": 1 + 30 + 8, "log_loss": 18, "knet_softmax": 1}
    mse = jobs["mnist/knet_softmax/mse/seed2"].run
    assert mse.hyperparameters == {"lr": 1.0} and mse.loss == "mse" and mse.data == "data/mnist.h5"
    assert jobs["mnist/mnist_cnn/nllr_keras/seed1"].run.train_size == 6000
    fb = jobs["studies/negative_feedback/mnist/mlp/model/q0.5/negated_ce/seed1"].run.feedback
    assert fb == Feedback(fraction=0.5, wrong_label="model", treatment="negated_ce")
    assert problems(jobs) == []


def test_paper_config_epochs_override_and_gpu_jobs():
    jobs = plan(_config("config/paper.yaml"))
    assert (
        jobs["mnist/mnist_cnn/nllr/seed3"].run.epochs == 500
        and jobs["mnist/mnist_cnn/ce/seed3"].run.epochs == 100
    )
    cifar = jobs["cifar10/cifar_cnn/nllr_keras/seed1"]
    assert cifar.gpu and cifar.backend == "auto" and cifar.run.augment and cifar.run.batch_size == 32
    assert not jobs["mnist/mnist_cnn/ce/seed1"].gpu and jobs["mnist/mnist_cnn/ce/seed1"].backend == "numpy"
    on_cpu = plan({**_config("config/paper.yaml"), "backend": "numpy"})["cifar10/cifar_cnn/ce/seed1"]
    assert not on_cpu.gpu and on_cpu.backend == "numpy"


def test_reference_config_gives_nllr_a_second_seed():
    jobs = plan(_config("config/reference.yaml"))
    assert sorted(jobs) == sorted(
        [f"mnist/mnist_cnn/{loss}/seed1" for loss in ("ce", "ce_keras", "bce", "bce_keras")]
        + [f"mnist/mnist_cnn/{loss}/seed{s}" for loss in ("nllr", "nllr_keras") for s in (1, 2)]
    )
    assert all(job.run.epochs == 12 and job.run.train_size is None for job in jobs.values())


def test_two_entries_asking_for_one_run_are_refused():
    config = _config()
    config["experiments"] = config["experiments"] + [config["experiments"][0]]
    with pytest.raises(SoftlossError, match="two entries ask for the same run mnist/knet_softmax/ce/seed1"):
        plan(config)


def test_problems_name_the_setting_and_a_run():
    config = _config()
    config["experiments"][1] = {**config["experiments"][1], "hyperparameters": {"rhoo": 0.9}}
    lines = problems(plan(config))
    assert (
        len(lines) == 1
        and "unexpected keyword argument 'rhoo'" in lines[0]
        and "(run mnist/mnist_cnn/" in lines[0]
    )


def test_run_config_round_trips_through_json_with_its_types():
    run = replace(
        plan(_config())["studies/negative_feedback/mnist/mlp/random/q0.25/complement/seed1"].run,
        model_options={"hidden": 64, "note": "a string passes too"},
    )
    again = RunConfig.from_dict(json.loads(json.dumps(run.to_dict())))
    assert again == run and isinstance(again.model_options["hidden"], int)
    with pytest.raises(SoftlossError, match="unknown keys colour"):
        RunConfig.from_dict({**run.to_dict(), "colour": "red"})


@pytest.mark.parametrize(
    "bad,message",
    [
        (
            {"fraction": 1.5, "wrong_label": "random", "treatment": "complement"},
            "fraction must be in \\[0, 1\\]",
        ),
        ({"fraction": 1.0, "wrong_label": "random", "treatment": "drop"}, "leaves no example to train on"),
        (
            {"fraction": 0.5, "wrong_label": "oracle", "treatment": "drop"},
            "wrong_label must be one of random, model",
        ),
        ({"fraction": 0.5, "wrong_label": "random", "treatment": "ignore"}, "treatment must be one of"),
        ({"fraction": 0.5}, "needs fraction, wrong_label and treatment"),
    ],
)
def test_feedback_is_checked_once_where_it_is_made(bad, message):
    run = plan(_config())["mnist/knet_softmax/ce/seed1"].run
    with pytest.raises(SoftlossError, match=message):
        RunConfig.from_dict({**run.to_dict(), "feedback": bad})


def test_cifar10_jpeg_config_plans_gpu_jobs_on_the_jpeg_copy():
    jobs = plan(_config("config/cifar10_jpeg.yaml"))
    assert len(jobs) == 6 and all(
        job.gpu and job.dataset == "cifar10_jpeg" and job.run.augment for job in jobs.values()
    )


def test_cifar10_jpeg_cpu_config_plans_every_loss_with_two_seeds():
    jobs = plan(_config("config/cifar10_jpeg_cpu.yaml"))
    losses = ("ce", "ce_keras", "bce", "bce_keras", "nllr", "nllr_keras")
    assert sorted(jobs) == sorted(
        f"cifar10_jpeg/cifar_cnn/{loss}/seed{seed}" for loss in losses for seed in (1, 2)
    )
    assert all(not job.gpu and job.run.epochs == 25 and job.run.augment for job in jobs.values())


def test_cifar10_jpeg_long_config_plans_table_1_at_the_papers_length():
    jobs = plan(_config("config/cifar10_jpeg_long.yaml"))
    epochs = {run_id.removeprefix("cifar10_jpeg/cifar_cnn/"): job.run.epochs for run_id, job in jobs.items()}
    paper = {"ce": 100, "bce": 100, "nllr": 100, "nllr_keras": 500}
    expected = {f"{loss}/seed{seed}": n for loss, n in paper.items() for seed in (1, 2)}
    assert epochs == {**expected, "ce_keras/seed1": 100, "bce_keras/seed1": 100}
    assert all(job.run.train_eval_every == 10 and job.run.augment and not job.gpu for job in jobs.values())
    assert problems(jobs) == []


def test_mnist_long_config_plans_the_mnist_row_at_the_papers_length():
    jobs = plan(_config("config/mnist_long.yaml"))
    epochs = {run_id.removeprefix("mnist/mnist_cnn/"): job.run.epochs for run_id, job in jobs.items()}
    paper = {"ce": 100, "bce": 100, "nllr": 100, "nllr_keras": 500}
    assert epochs == {f"{loss}/seed{seed}": n for loss, n in paper.items() for seed in (1, 2)}
    reference = plan(_config("config/reference.yaml"))["mnist/mnist_cnn/ce/seed1"].run
    # The reference run's protocol, only longer.
    assert replace(jobs["mnist/mnist_cnn/ce/seed1"].run, epochs=12, train_eval_every=1) == reference
    assert problems(jobs) == []


def test_a_stage_cuts_the_study_to_its_seeds_and_epochs():
    """A long study in stages: the first has seed 1 at 100 epochs; raising the
    cap changes only the capped runs' epochs (so only they resume)."""
    config = _config("config/cifar10_jpeg_long.yaml")
    first = plan({**config, "stage": {"max_epochs": 100, "seeds": [1]}})
    losses = ("bce", "bce_keras", "ce", "ce_keras", "nllr", "nllr_keras")
    assert sorted(first) == [f"cifar10_jpeg/cifar_cnn/{loss}/seed1" for loss in losses]
    assert {job.run.epochs for job in first.values()} == {100}
    second = plan({**config, "stage": {"max_epochs": 200}})
    changed = sorted(r for r in first if first[r].run != second[r].run)
    assert changed == ["cifar10_jpeg/cifar_cnn/nllr_keras/seed1"] and second[changed[0]].run.epochs == 200
    # Only epochs differ, which a checkpoint's fingerprint leaves out: the run resumes.
    assert replace(second[changed[0]].run, epochs=100) == first[changed[0]].run
    assert plan({**config, "stage": None}) == plan(config)


def test_literature_config_plans_every_baseline_on_both_rows():
    jobs = plan(_config("config/literature.yaml"))
    losses = (
        "ce",
        "nllr_keras",
        "label_smoothing",
        "focal",
        "poly1",
        "crl",
        "squared_hinge",
        "square_logits",
    )
    assert sorted(jobs) == sorted(
        [f"mnist/mnist_cnn/{loss}/seed{seed}" for loss in losses for seed in (1, 2, 3)]
        + [f"cifar10_jpeg/cifar_cnn/{loss}/seed1" for loss in losses]
    )
    assert {
        jobs[f"mnist/mnist_cnn/{loss}/seed{seed}"].run.epochs for loss in losses for seed in (1, 2, 3)
    } == {12}
    assert {jobs[f"cifar10_jpeg/cifar_cnn/{loss}/seed1"].run.epochs for loss in losses} == {25}
    assert problems(jobs) == []


def test_why_config_plans_the_diagnostics_study():
    jobs = plan(_config("config/why.yaml"))
    losses = ("ce", "ce_keras", "bce_keras", "nllr", "nllr_keras", "label_smoothing", "squared_hinge")
    assert sorted(jobs) == sorted(
        [f"mnist/mnist_cnn/{loss}/seed{seed}" for loss in losses for seed in (1, 2)]
        + [f"cifar10_jpeg/cifar_cnn/{loss}/seed1" for loss in losses]
    )
    assert problems(jobs) == []


def test_a_losss_settings_have_one_name_and_the_older_one_still_works(capsys):
    config = _config("config/literature.yaml")
    entry = config["experiments"][0]
    newer = plan({**config, "experiments": [{**entry, "losses": {"focal": {"loss_options": {"gamma": 1}}}}]})
    assert capsys.readouterr().err == ""
    older = plan({**config, "experiments": [{**entry, "losses": {"focal": {"options": {"gamma": 1}}}}]})
    assert "losses/focal/options is now called loss_options; options is still read" in capsys.readouterr().err
    assert newer == older and next(iter(newer.values())).run.loss_options == {"gamma": 1}


def test_the_wrong_label_option_has_the_configs_name_and_the_older_one_still_works(capsys):
    from pipeline.cli import build_parser

    common = ["train", "--out", "x", "--feedback-fraction", "0.5"]
    assert (
        build_parser().parse_args([*common, "--feedback-wrong-label", "model"]).feedback_wrong_label
        == "model"
    )
    assert capsys.readouterr().err == ""
    assert build_parser().parse_args([*common, "--feedback-label", "model"]).feedback_wrong_label == "model"
    said = capsys.readouterr().err
    assert "--feedback-label is now called --feedback-wrong-label; it is still read" in said
