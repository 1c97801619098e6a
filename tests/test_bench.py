"""The train-step bench: softloss alone, and --compare's turns between the
values of a CPU setting."""

import pytest

from pipeline import cli
from pipeline.bench import cases, compare
from pipeline.bench import run as bench_run
from pipeline.core import backend
from pipeline.core.settings import SETTINGS


def test_bench_times_softloss_alone_on_the_cpu():
    said = []
    rows = bench_run.run(cases=["mnist_cnn:4"], steps=1, repeats=1, alone=True, out=said.append)
    assert rows[0]["softloss"] > 0 and said[0].startswith("machine: ") and "threads" in said[1]
    assert said[-1].split()[:2] == ["mnist_cnn", "4"]


def test_compare_times_every_value_in_turns_and_restores_the_setting(monkeypatch):
    current = {"value": 7}
    seen = []  # the setting's value at every step, in order

    def stepper(model, batch_size, backend):
        return lambda: seen.append(current["value"])

    def write(value):
        current["value"] = value

    monkeypatch.setitem(compare.COMPARABLE, "probe", (cases.whole, lambda: current["value"], write))
    monkeypatch.setattr(bench_run, "softloss_stepper", stepper)
    said = []
    (row,) = bench_run.run(
        cases=["knet_softmax:2"], steps=3, repeats=2, out=said.append, compare="probe=1,2,3"
    )
    warm_up = [1, 1, 2, 2, 3, 3]
    assert seen == warm_up + ([1] * 3 + [2] * 3 + [3] * 3) * 2
    assert current["value"] == 7  # put back as it was
    assert set(row) == {"model", "batch", "1", "2", "3", "ratio_2", "ratio_3"}
    assert row["ratio_3"] == pytest.approx(row["3"] / row["1"])
    assert said[2] == "compare: probe = 1, 2, 3, each against 1 (one block each in turn)"
    assert said[3].split() == ["model", "batch", "1", "img/s", "2", "img/s", "ratio", "3", "img/s", "ratio"]


def test_compare_switches_a_real_setting_and_puts_it_back():
    rows = bench_run.run(
        cases=["mnist_cnn:4"], steps=1, repeats=1, out=lambda line: None, compare="pooling=quadrants,compiled"
    )
    assert rows[0]["quadrants"] > 0 and rows[0]["compiled"] > 0 and "projected_seconds" not in rows[0]
    assert SETTINGS.pooling == "compiled"


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--compare", "pool=a,b"],
            "the setting is one of convolution, pooling, cross-entropy, optimizer-update, threads",
        ),
        (["--compare", "pooling=compiled,quad"], "'quad' is not one of compiled, quadrants"),
        (["--compare", "threads=2"], "give two or more different values, as threads=A,B"),
        (["--compare", "threads=2,2"], "give two or more different values"),
        (["--compare", "block-kib=1024,-5"], "'-5' is not a whole number >= 1"),
        (["--compare", "threads=1,2", "--threads", "1"], "both set the thread count"),
        (["--cases", "mnist_cnn"], "the batch size is a whole number >= 1, as mnist_cnn:128"),
        (["--cases", "resnet:8"], "unknown benchmark model 'resnet'"),
    ],
)
def test_bench_refuses_bad_input_in_one_line(capsys, argv, message):
    code = cli.main(["bench", "--alone", *argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert message in err


def test_compare_refuses_a_device_backend():
    import strictdevice

    device = backend.device_backend(strictdevice, "strict", "CPU stand-in for CuPy")
    with pytest.raises(ValueError, match="--compare switches CPU settings"):
        bench_run.run(cases=["knet_softmax:2"], out=lambda line: None, backend=device, compare="threads=1,2")


@pytest.mark.parametrize("option", ["--steps", "--repeats", "--threads"])
def test_bench_counts_are_whole_numbers_of_at_least_one(capsys, option):
    with pytest.raises(SystemExit) as exit:
        cli.main(["bench", "--alone", option, "0"])
    assert exit.value.code == 2 and f"argument {option}: must be >= 1, got 0" in capsys.readouterr().err


def test_without_a_yardstick_the_bench_says_the_comparison_is_missing(monkeypatch):
    monkeypatch.setattr(bench_run.yardsticks, "installed", lambda backend, threads: [])
    said = []
    bench_run.run(cases=["knet_softmax:4"], steps=1, repeats=1, out=said.append)
    assert any("none installed" in line and "compared with nothing" in line for line in said)
