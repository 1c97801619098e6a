import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from repo import REPO, args

from pipeline import cli
from pipeline.common import machine, versions
from pipeline.common.errors import SoftlossError
from pipeline.core import models, optim
from pipeline.core.losses import LOSSES
from pipeline.datasets import batches
from pipeline.runs import checkpoint, inference, train
from pipeline.runs.config import RunConfig
from pipeline.runs.evaluate import evaluate, expected_calibration_error
from pipeline.runs.rundir import load_arrays, read_history, save_arrays
from pipeline.runs.train import run

METRIC_COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _config(mnist_h5, **changes):
    base = dict(
        data=str(mnist_h5),
        model="mlp",
        loss="ce",
        optimizer="sgd",
        epochs=3,
        batch_size=50,
        seed=4,
        hyperparameters={"lr": 0.1},
        train_size=3000,
        test_size=500,
    )
    return RunConfig(**{**base, **changes})


def _metrics(rows):
    return [[row[c] for c in METRIC_COLUMNS] for row in rows]


def test_run_writes_history_status_and_model(mnist_h5, tmp_path):
    status = run(_config(mnist_h5), tmp_path, quiet=True, log=lambda *a: None)
    assert status["status"] == "completed" and status["epoch"] == 3
    history = read_history(tmp_path / "history.csv")
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["test_accuracy"] > 0.8  # an MLP learns MNIST
    assert all(abs(row["train_error"] - (1 - row["train_accuracy"])) < 1e-12 for row in history)
    written = json.loads((tmp_path / "status.json").read_text())
    assert written["status"] == "completed"
    head = versions.git("rev-parse", "HEAD")  # None where the code is not a git checkout
    assert written["commit"] is None if head is None else written["commit"].startswith(head)
    # Same config and seed on the CPU: bitwise the same metrics.
    again = tmp_path / "again"
    run(_config(mnist_h5), again, quiet=True, log=lambda *a: None)
    assert _metrics(read_history(again / "history.csv")) == _metrics(history)


def test_kill_9_then_rerun_resumes_to_identical_metrics(mnist_h5, tmp_path, wait_for):
    reference = tmp_path / "reference"
    run(_config(mnist_h5, epochs=4, train_size=20000), reference, quiet=True, log=lambda *a: None)
    killed = tmp_path / "killed"
    command = args(
        "{python} -m pipeline train --data {data} --model mlp --loss ce --optimizer sgd --lr 0.1 --epochs 4 "
        "--batch-size 50 --seed 4 --train-size 20000 --test-size 500 --out {out} --quiet",
        python=sys.executable,
        data=mnist_h5,
        out=killed,
    )
    process = subprocess.Popen(command, cwd=REPO)
    wait_for(killed / "history.csv", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    rows = read_history(killed / "history.csv")
    assert 1 <= len(rows) < 4, "the kill should land mid-run"
    assert json.loads((killed / "status.json").read_text())["status"] == "running"
    # The kill may land mid-write: then a temporary file is left, never a
    # half-written file under a final name; the rerun removes it.
    for name in ("history.csv", "status.json", "checkpoint.npz"):
        assert (killed / name).exists()
    json.loads((killed / "status.json").read_text())
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming after epoch" in result.stdout
    assert [p.name for p in killed.iterdir() if p.name.endswith(".tmp")] == []
    assert _metrics(read_history(killed / "history.csv")) == _metrics(read_history(reference / "history.csv"))


def test_negated_ce_diverges_and_is_recorded(mnist_h5, tmp_path, capsys):
    code = cli.main(
        args(
            "train --data {data} --model mlp --loss negated_ce --optimizer sgd --lr 1.0 --epochs 20 "
            "--batch-size 100 --seed 1 --train-size 2000 --test-size 200 --out {out} --quiet",
            data=mnist_h5,
            out=tmp_path,
        )
    )
    assert code == 0
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "diverged" and status["epoch"] < 20
    assert "non-finite" in status["reason"] or "loss became" in status["reason"]
    assert "diverged" in capsys.readouterr().out
    result = evaluate(tmp_path, mnist_h5, tmp_path / "metrics.json")
    assert result["status"] == "diverged" and "test_accuracy" not in result
    # Running it again reports the divergence instead of training again.
    assert (
        run(RunConfig(**status["config"]), tmp_path, quiet=True, log=lambda *a: None)["status"] == "diverged"
    )


def test_evaluate_metrics_are_consistent(mnist_h5, tmp_path):
    run(_config(mnist_h5, epochs=1), tmp_path, quiet=True, log=lambda *a: None)
    result = evaluate(tmp_path, mnist_h5, tmp_path / "metrics.json")
    confusion = np.array(result["confusion_matrix"])
    assert confusion.sum() == result["n_test"] == 500
    assert np.isclose(np.trace(confusion) / 500, result["test_accuracy"])
    np.testing.assert_allclose(result["per_class_accuracy"], confusion.diagonal() / confusion.sum(axis=1))
    history = read_history(tmp_path / "history.csv")
    assert np.isclose(result["test_accuracy"], history[-1]["test_accuracy"])
    assert 0 <= result["ece"] <= 1
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == result["test_accuracy"]


def test_expected_calibration_error():
    labels = np.array([0, 0, 1, 1])
    confident_right = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert expected_calibration_error(confident_right, labels) == 0.0
    # Always 90 % sure, right half the time: ECE 0.4.
    half_right = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    assert np.isclose(expected_calibration_error(half_right, labels), 0.4)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--hyper", "rho=abc"], "not a number"),
        (["--loss", "hinge"], "unknown loss"),
        (["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
        (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
        (["--model-option", "hidden=abc"], "model option hidden: 'abc' is not a number"),
        (["--hyper", "momentum=0.9"], "bad hyperparameters"),
    ],
)
def test_bad_train_arguments_are_clear_errors(mnist_h5, tmp_path, capsys, argv, message):
    base = {
        "--data": str(mnist_h5),
        "--model": "mlp",
        "--loss": "ce",
        "--optimizer": "sgd",
        "--epochs": "1",
        "--batch-size": "10",
        "--seed": "1",
        "--out": str(tmp_path),
    }
    args = ["train"]
    for key, value in base.items():
        if key not in argv:
            args += [key, value]
    try:
        code = cli.main(args + argv)
    except SystemExit as exit:  # argparse's own usage errors
        code = exit.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "status.json").exists()


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    code = cli.main(
        args(
            "train --data {data} --model mlp --loss ce --optimizer sgd --epochs 1 --batch-size 10 --seed 1 "
            "--out {out}",
            data=tmp_path / "nope.h5",
            out=tmp_path / "r",
        )
    )
    assert code == 2 and "nope.h5: no such dataset file" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "r")  # no empty folder left behind


# ------------------------------------------------------------ damaged files
def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":  # one byte inside the first array's data: a CRC error
        middle = len(data) // 3
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
    else:  # junk: an npz of a Python object, which softloss never writes
        np.savez(path, meta=np.array([{"x": 1}], dtype=object))


@pytest.mark.parametrize("how", ["truncated", "flipped", "junk"])
def test_damaged_checkpoint_is_set_aside_and_the_run_resumes(mnist_h5, tmp_path, how):
    quiet = dict(quiet=True, log=lambda *a: None)
    reference = tmp_path / "reference"
    run(_config(mnist_h5, epochs=3), reference, **quiet)
    damaged = tmp_path / "damaged"
    run(_config(mnist_h5, epochs=2), damaged, **quiet)  # stopped after epoch 2: two checkpoints kept
    assert (damaged / "checkpoint.previous.npz").exists()
    _damage(damaged / "checkpoint.npz", how)
    lines = []
    status = run(_config(mnist_h5, epochs=3), damaged, quiet=True, log=lines.append)
    assert status["status"] == "completed"
    said = [line for line in lines if "unreadable checkpoint" in line]
    assert len(said) == 1 and "\n" not in said[0] and "allow_pickle" not in said[0] and "set aside" in said[0]
    assert any("resuming after epoch 1" in line for line in lines)  # from the epoch before
    assert (damaged / "checkpoint.npz.unreadable-1").exists()  # kept for a look, never deleted
    assert _metrics(read_history(damaged / "history.csv")) == _metrics(
        read_history(reference / "history.csv")
    )


def test_both_checkpoints_damaged_restarts_from_scratch_via_the_cli(mnist_h5, tmp_path):
    out = tmp_path / "run"
    run(_config(mnist_h5, epochs=2), out, quiet=True, log=lambda *a: None)
    for name in ("checkpoint.npz", "checkpoint.previous.npz"):
        _damage(out / name, "truncated")
    (out / "status.json").write_text('{"status": "runn')  # a damaged status file too
    command = args(
        "{python} -m pipeline train --data {data} --model mlp --loss ce --optimizer sgd --lr 0.1 --epochs 1 "
        "--batch-size 50 --seed 4 --train-size 3000 --test-size 500 --out {out} --quiet",
        python=sys.executable,
        data=mnist_h5,
        out=out,
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "completed after epoch 1" in result.stdout
    assert sorted(p.name for p in out.glob("*.unreadable-*")) == [
        "checkpoint.npz.unreadable-1",
        "checkpoint.previous.npz.unreadable-1",
        "status.json.unreadable-1",
    ]


def _evaluate_refused(mnist_h5, run_dir, out):
    """The one line `evaluate` refuses `run_dir` with (exit code 2, no traceback, nothing written)."""
    result = subprocess.run(
        args(
            "{python} -m pipeline evaluate --run {run} --data {data} --out {out}",
            python=sys.executable,
            run=run_dir,
            data=mnist_h5,
            out=out,
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert not out.exists()
    (line,) = result.stderr.strip().splitlines()
    return line


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_damaged_model_is_a_one_line_error_in_evaluate(mnist_h5, tmp_path, how):
    run(_config(mnist_h5, epochs=1), tmp_path / "run", quiet=True, log=lambda *a: None)
    _damage(tmp_path / "run" / "model.npz", how)
    line = _evaluate_refused(mnist_h5, tmp_path / "run", tmp_path / "m.json")
    assert "model.npz: unreadable model file" in line and "--force" in line


def test_a_model_file_of_other_shapes_is_a_one_line_error_in_evaluate(mnist_h5, tmp_path):
    run(_config(mnist_h5, epochs=1), tmp_path / "run", quiet=True, log=lambda *a: None)
    model = tmp_path / "run" / "model.npz"
    arrays, meta = load_arrays(model)
    save_arrays(model, [arrays[0].T, *arrays[1:]], meta)  # as a layout of other code would store it
    line = _evaluate_refused(mnist_h5, tmp_path / "run", tmp_path / "m.json")
    assert "model.npz: its arrays do not fit the model mlp" in line and "--force" in line


def test_a_finished_run_of_another_config_is_not_overwritten(mnist_h5, tmp_path):
    out = tmp_path / "run"
    run(_config(mnist_h5, epochs=1), out, quiet=True, log=lambda *a: None)
    before = (out / "history.csv").read_bytes()
    with pytest.raises(Exception, match="holds a run of another configuration.*--force"):
        run(_config(mnist_h5, epochs=1, seed=5), out, quiet=True, log=lambda *a: None)
    assert (out / "history.csv").read_bytes() == before
    status = run(_config(mnist_h5, epochs=1, seed=5), out, quiet=True, log=lambda *a: None, force=True)
    assert status["config"]["seed"] == 5 and (out / "history.csv").read_bytes() != before


def test_only_the_training_code_that_wrote_a_run_resumes_or_keeps_it(mnist_h5, tmp_path, monkeypatch):
    out, config = tmp_path / "run", _config(mnist_h5, epochs=2)
    run(config, out, quiet=True, log=lambda *a: None)
    reference = _metrics(read_history(out / "history.csv"))
    for name in (
        "status.json",
        "history.csv",
        "model.npz",
    ):  # as Snakemake reruns a job; the checkpoints stay
        (out / name).unlink()
    lines = []
    run(config, out, quiet=False, log=lines.append)  # the same code: ends from its last checkpoint
    assert any("resuming after epoch 2" in line for line in lines)
    assert not any(line.startswith("epoch ") for line in lines)

    monkeypatch.setattr("pipeline.runs.train.code_version", lambda *modules: "0123456789ab")
    lines = []
    status = run(config, out, quiet=False, log=lines.append)  # finished, but by other code: trained again
    assert not any("already" in line for line in lines)
    assert any("written for other training code; starting afresh" in line for line in lines)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    assert (
        status["code"] == "0123456789ab"
        and json.loads((out / "status.json").read_text())["code"] == "0123456789ab"
    )
    assert _metrics(read_history(out / "history.csv")) == reference
    lines = []
    run(config, out, quiet=True, log=lines.append)  # now finished under this code
    assert lines == [f"{out}: already completed"]


def test_a_run_that_cannot_start_leaves_no_folder(tmp_path):
    result = subprocess.run(
        args(
            "{python} -m pipeline train --data {data} --model mlp --loss ce --optimizer sgd --epochs 1 "
            "--batch-size 5 --seed 1 --out {out}",
            python=sys.executable,
            data=tmp_path / "none.h5",
            out=tmp_path / "run",
        ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "no such dataset file" in result.stderr
    assert not (tmp_path / "run").exists()


def test_temporaries_of_a_killed_run_are_removed_on_resume(mnist_h5, tmp_path):
    out = tmp_path / "run"
    run(_config(mnist_h5, epochs=1), out, quiet=True, log=lambda *a: None)
    (out / ".status.json.999999.tmp").write_text('{"half')  # what a kill during a write leaves
    lines = []
    run(_config(mnist_h5, epochs=2), out, quiet=True, log=lines.append)
    assert not list(out.glob("*.tmp")) and any("removed 1 temporary file" in line for line in lines)


def test_train_from_a_run_config_file_equals_the_flags(mnist_h5, tmp_path):
    config = _config(mnist_h5, epochs=1, model_options={"hidden": 16})
    (tmp_path / "run.json").write_text(json.dumps(config.to_dict()))
    flags = args(
        "--model mlp --loss ce --optimizer sgd --lr 0.1 --epochs 1 --batch-size 50 --seed 4 --train-size 3000 "
        "--test-size 500 --model-option hidden=16"
    )
    assert (
        cli.main(["train", "--data", str(mnist_h5), *flags, "--out", str(tmp_path / "flags"), "--quiet"]) == 0
    )
    assert (
        cli.main(
            ["train", "--run-config", str(tmp_path / "run.json"), "--out", str(tmp_path / "json"), "--quiet"]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "json/status.json").read_text())["fingerprint"]
        == json.loads((tmp_path / "flags/status.json").read_text())["fingerprint"]
    )
    assert _metrics(read_history(tmp_path / "json/history.csv")) == _metrics(
        read_history(tmp_path / "flags/history.csv")
    )
    for flag in (
        ["--seed", "5"],
        ["--lr", "0.5"],
        ["--model-option", "hidden=8"],
        ["--augment"],
    ):  # refused, never ignored
        assert (
            cli.main(
                ["train", "--run-config", str(tmp_path / "run.json"), *flag, "--out", str(tmp_path / "x")]
            )
            == 2
        )


def test_host_evaluation_reuses_its_memory():
    """cifar_cnn's evaluation batches stay below glibc's mmap threshold: a
    repeated evaluation faults in a few pages, where batches of 1000 images had
    their arrays mapped and zeroed afresh (thousands of faults), and the
    logits agree with one batch of all."""
    import resource

    if not machine.reuse_freed_memory():
        pytest.skip("needs glibc's malloc")
    init, apply = models.build("cifar_cnn")
    params = init(np.random.default_rng(0), (32, 32, 3))
    images = np.random.default_rng(1).integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)

    def faults(batch_size):
        inference.predict(apply, params, images, batch_size=batch_size)  # warm up: the heap grows once
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        logits = inference.predict(apply, params, images, batch_size=batch_size)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, logits

    ours, logits = faults(None)
    whole, one_batch = faults(len(images))
    assert ours * 4 < whole, (ours, whole)  # measured here: a few hundred against thousands
    np.testing.assert_allclose(one_batch, logits, rtol=1e-4, atol=1e-5)


RECORDED = (
    "train_loss",
    "train_accuracy",
    "train_error",
    "running_loss",
    "running_accuracy",
    "test_loss",
    "test_accuracy",
    "test_error",
)


def test_running_training_metrics_are_the_means_over_the_epochs_batches(mnist_h5, tmp_path):
    """Keras' training metrics, by hand: the mlp (no dropout) stepped through the
    same batches, each batch's loss and hits weighted by its size (the last
    batch is short: 500 = 7 x 64 + 52)."""
    from autograd import value_and_grad

    config = _config(mnist_h5, epochs=2, train_size=500, batch_size=64, train_eval_every=2)
    run(config, tmp_path, quiet=True, log=lambda *a: None)
    history = read_history(tmp_path / "history.csv")

    images, labels, _, _, _ = train.load_splits(config)
    init, apply = models.build("mlp")
    params = init(np.random.default_rng([4, 0]), images.shape[1:])
    opt = optim.build("sgd", lr=0.1)
    state, rng = opt.init(params), np.random.default_rng([4, 1])
    for row in history:
        loss_sum, hits = 0.0, 0
        for x, y in batches.batches(images, labels.astype(np.int64), 64, rng):
            loss, grads = value_and_grad(lambda p: LOSSES["ce"](apply(p, x, train=True), y))(params)
            loss_sum += float(loss) * len(x)
            hits += int((apply(params, x).argmax(axis=1) == y).sum())
            params, state = opt.update(params, grads, state)
        assert row["running_loss"] == pytest.approx(loss_sum / 500, rel=1e-6)
        assert row["running_accuracy"] == hits / 500
    # Epoch 1 had no full pass over the training set (every 2nd epoch and the last); the test set is measured every epoch.
    assert history[0]["train_loss"] is None and history[0]["train_accuracy"] is None
    assert history[1]["train_loss"] is not None and all(row["test_loss"] is not None for row in history)
    assert (
        history[1]["running_loss"] != history[1]["train_loss"]
    )  # training mode, mid-epoch weights: not the full pass
    assert all(0 <= row["eval_seconds"] <= row["seconds"] for row in history)


@pytest.mark.parametrize("every", [1, 3])
def test_a_resumed_run_records_the_metrics_of_an_uninterrupted_one(mnist_h5, tmp_path, monkeypatch, every):
    """A crash after epoch 2's checkpoint, then a rerun: every recorded metric,
    full passes and running means alike, equals the uninterrupted run's."""

    config = _config(mnist_h5, epochs=4, train_eval_every=every)
    run(config, tmp_path / "reference", quiet=True, log=lambda *a: None)

    save = checkpoint.save

    def crash_after_epoch_2(path, *args):
        save(path, *args)
        if len(args[-1]) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", crash_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(config, tmp_path / "crashed", quiet=True, log=lambda *a: None)
    monkeypatch.setattr(checkpoint, "save", save)
    lines = []
    run(config, tmp_path / "crashed", quiet=True, log=lines.append)
    assert any("resuming after epoch 2" in line for line in lines)
    recorded = [[row[c] for c in RECORDED] for row in read_history(tmp_path / "crashed" / "history.csv")]
    assert recorded == [
        [row[c] for c in RECORDED] for row in read_history(tmp_path / "reference" / "history.csv")
    ]
    # Full passes at every k-th epoch and the last.
    assert [r[0] is not None for r in recorded] == [e % every == 0 or e == 4 for e in (1, 2, 3, 4)]


def _train_command(data, out, *extra):
    line = (
        "{python} -m pipeline train --data {data} --model mlp --loss ce --optimizer sgd --lr 0.1 --epochs 30 "
        "--batch-size 50 --seed 4 --train-size 20000 --test-size 500 --out {out} --quiet"
    )
    return [*args(line, python=sys.executable, data=data, out=out), *extra]


def test_a_run_directory_is_held_by_one_trainer_at_a_time(mnist_h5, tmp_path, wait_for):
    """A second trainer (as after kill -9 of Snakemake, whose trainers live on)
    stops at once with one line naming the first's PID; once the first is
    gone, however it went, the directory is free again."""
    out = tmp_path / "run"
    first = subprocess.Popen(_train_command(mnist_h5, out), cwd=REPO)
    try:
        wait_for(out / "status.json", first)
        second = subprocess.run(
            _train_command(mnist_h5, out), cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert second.returncode == 2 and f"another trainer (PID {first.pid})" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    third = subprocess.run(
        _train_command(mnist_h5, out, "--epochs", "1"), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert third.returncode == 0, third.stderr


def test_a_run_stopped_by_sigterm_says_failed_and_why_and_resumes(mnist_h5, tmp_path, wait_for):
    out = tmp_path / "run"
    process = subprocess.Popen(_train_command(mnist_h5, out), cwd=REPO, stderr=subprocess.PIPE, text=True)
    wait_for(out / "history.csv", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr
    status = json.loads((out / "status.json").read_text())
    assert status["status"] == "failed" and status["reason"] == "interrupted (terminated by SIGTERM)"
    resumed = subprocess.run(
        _train_command(mnist_h5, out, "--epochs", "2"), cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0 and "resuming after epoch" in resumed.stdout + resumed.stderr


def test_the_time_a_run_was_stopped_is_not_counted_as_training(mnist_h5, tmp_path, wait_for):
    """A study paused with SIGSTOP while a benchmark has the cores: its epochs'
    seconds and its wall time leave the pause out (pipeline.common.clock)."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        _train_command(mnist_h5, out, "--epochs", "4", "--train-size", "60000"), cwd=REPO
    )
    wait_for(out / "history.csv", process)
    time.sleep(0.1)
    process.send_signal(signal.SIGSTOP)  # inside epoch 2
    time.sleep(2.5)
    process.send_signal(signal.SIGCONT)
    assert process.wait(timeout=300) == 0
    status = json.loads((out / "status.json").read_text())
    seconds = [row["seconds"] for row in read_history(out / "history.csv")]
    # Most of the 2.5 s stop seen and left out of the epochs' seconds.
    # A busy machine can only add to what is seen (the wait for a core after SIGCONT), never take from it.
    assert status["stopped_seconds"] >= 1.5 and status["wall_seconds"] == pytest.approx(sum(seconds))


def test_a_run_that_fails_mid_training_says_so_and_the_report_lists_it(mnist_h5, tmp_path, monkeypatch):
    from pipeline.report.aggregate import aggregate
    from pipeline.report.render import render
    from pipeline.runs import checkpoint

    save = checkpoint.save

    def disk_full_after_epoch_1(path, *args):
        if len(args[-1]) == 2:
            raise OSError(28, "No space left on device")
        save(path, *args)

    monkeypatch.setattr(checkpoint, "save", disk_full_after_epoch_1)
    with pytest.raises(OSError):
        run(_config(mnist_h5), tmp_path / "run", quiet=True, log=lambda *a: None)
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed" and "No space left on device" in status["reason"]
    evaluate(tmp_path / "run", mnist_h5, tmp_path / "run" / "metrics.json")
    aggregate([tmp_path / "run"], tmp_path / "summary.json")
    html = render(tmp_path / "summary.json", [], {"experiments": []}, tmp_path / "report.html").read_text()
    assert "Runs that are not results" in html and "No space left on device" in html


def test_a_run_whose_model_predicts_one_class_is_collapsed_not_a_result(tmp_path, encode_image):
    """On images that are all alike any model predicts one class for every
    test image: such a run is flagged collapsed, evaluated, and left out of Table I."""
    from pipeline.datasets import folders, prepare
    from pipeline.report.aggregate import aggregate
    from pipeline.report.tables import table_rows

    black = encode_image(np.zeros((6, 6, 3), np.uint8), "PNG")
    for split in ("train", "test"):
        for name in ("a", "b", "c"):
            for i in range(4):
                (tmp_path / "alike" / split / name).mkdir(parents=True, exist_ok=True)
                (tmp_path / "alike" / split / name / f"{i}.png").write_bytes(black)
    data = prepare.prepare(
        folders.folder_spec("alike", tmp_path / "alike"),
        tmp_path / "alike",
        tmp_path / "alike.h5",
        log=lambda *a: None,
    )
    config = RunConfig(
        data=str(data),
        model="mlp",
        loss="ce",
        optimizer="sgd",
        epochs=2,
        batch_size=4,
        seed=1,
        hyperparameters={"lr": 0.1},
    )
    status = run(config, tmp_path / "run", quiet=True, log=lambda *a: None)
    assert status["status"] == "collapsed" and "predicted as one class" in status["reason"]
    metrics = evaluate(tmp_path / "run", data, tmp_path / "run" / "metrics.json")
    assert metrics["status"] == "collapsed" and len(metrics["confusion_matrix"]) == 3
    (row,) = table_rows(aggregate([tmp_path / "run"], tmp_path / "summary.json"))
    assert row["mean"] is None and row["excluded"] == "1 collapsed"
    assert (
        run(config, tmp_path / "run", quiet=True, log=lambda *a: None)["status"] == "collapsed"
    )  # stays finished


def test_nllrs_keras_form_on_its_floor_from_the_first_epoch_is_collapsed():
    from pipeline.common.lossnames import nllr_keras_floor
    from pipeline.runs.train import _collapsed

    floor = nllr_keras_floor(10)
    config = RunConfig(
        data="d.h5", model="mlp", loss="nllr_keras", optimizer="sgd", epochs=2, batch_size=1, seed=1
    )
    on_floor = [{"running_loss": floor + 1e-4, "test_classes": 10, "test_accuracy": 0.5}] * 2
    assert "floor of -13.92 from the first epoch" in _collapsed(config, on_floor, 10)
    reached_later = [{"running_loss": -5.0, "test_classes": 10, "test_accuracy": 0.5}, on_floor[1]]
    assert _collapsed(config, reached_later, 10) is None
    assert _collapsed(RunConfig(**{**config.to_dict(), "loss": "ce"}), on_floor, 10) is None


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path):
    from pipeline.common.errors import SoftlossError
    from pipeline.common.files import write_atomic

    def full(out):
        raise OSError(28, "No space left on device")

    with pytest.raises(
        SoftlossError, match=rf"^{tmp_path / 'status.json'}: cannot write it: No space left on device$"
    ):
        write_atomic(tmp_path / "status.json", full)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_evaluate_on_the_wrong_data_says_the_shapes_differ(mnist_h5, tmp_path, capsys):
    from tinydata import cifar_spec, make_cifar_archive

    from pipeline.datasets import prepare

    run(_config(mnist_h5, epochs=1, train_size=500), tmp_path / "run", quiet=True, log=lambda *a: None)
    archive, _ = make_cifar_archive(per_batch=2)
    (tmp_path / "cifar-10-binary.tar.gz").write_bytes(archive)
    cifar = prepare.prepare(cifar_spec(archive), tmp_path, tmp_path / "cifar.h5", log=lambda *a: None)
    code = cli.main(
        ["evaluate", "--run", str(tmp_path / "run"), "--data", str(cifar), "--out", str(tmp_path / "m.json")]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and "its images are (32, 32, 3), but" in err
        and "(28, 28, 1)" in err
        and "Traceback" not in err
    )


def test_a_batch_larger_than_the_training_set_is_refused_naming_both(mnist_h5, tmp_path):
    with pytest.raises(
        SoftlossError, match="batch_size 4000 is more than the 3,000 training examples of .*mnist.h5"
    ):
        run(_config(mnist_h5, batch_size=4000), tmp_path / "run", quiet=True, log=lambda *a: None)
    assert not (tmp_path / "run").exists()


def test_a_resume_under_other_numerics_is_refused_unless_allowed(mnist_h5, tmp_path):
    from pipeline.core.settings import SETTINGS

    out = tmp_path / "run"
    first = run(_config(mnist_h5, epochs=1), out, quiet=True, log=lambda *a: None, threads=1)
    assert first["threads"] == 1 and first["numerics"]["settings"]["block_bytes"] == SETTINGS.block_bytes
    assert set(first["numerics"]["versions"]) == {"numpy", "autograd", "numba"} and first["numerics"]["blas"]
    (out / "status.json").unlink()  # as Snakemake reruns a job: the checkpoint is left
    with SETTINGS.using(block_bytes=2 << 20):
        with pytest.raises(
            SoftlossError,
            match=r"written under other settings \(block_bytes 4194304 -> 2097152\).*"
            "--allow-different-settings",
        ):
            run(_config(mnist_h5, epochs=2), out, quiet=True, log=lambda *a: None)
        lines = []
        status = run(
            _config(mnist_h5, epochs=2), out, quiet=True, log=lines.append, allow_different_settings=True
        )
    assert status["epoch"] == 2 and any("resuming after epoch 1" in line for line in lines)
    assert any(
        "resuming under other settings (block_bytes 4194304 -> 2097152), as allowed" in line for line in lines
    )
    assert status["mixed_numerics"] == [{"after_epoch": 1, "changed": "block_bytes 4194304 -> 2097152"}]
