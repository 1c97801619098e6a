import sys
from pathlib import Path

import pytest

# Test helpers that are modules (strictdevice.py, tinydata.py, closed_forms.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from repo import REPO, TINY, VENDOR_DIR


@pytest.fixture
def check_grads():
    """check(f, x): autograd's own check of f's reverse-mode derivative at x
    against finite differences (autograd.test_util), its random directions
    seeded and NumPy's global generator left as it was."""
    import numpy as np
    from autograd.test_util import check_grads as autograd_check

    state = np.random.get_state()
    np.random.seed(0)
    yield lambda f, x: autograd_check(f, modes=["rev"], order=1)(x)
    np.random.set_state(state)


@pytest.fixture(autouse=True)
def _same_process_state():
    """Every test starts from, and leaves behind, the same process-wide state:
    the block threads (as many as BLAS had), the CPU settings and the working directory."""
    import os
    from dataclasses import asdict

    from pipeline.core.settings import SETTINGS
    from pipeline.kernels import parallel

    workers, settings, cwd = parallel.workers(), asdict(SETTINGS), os.getcwd()
    yield
    if parallel.workers() != workers:
        parallel.set_workers(workers)
    SETTINGS.set(**settings)
    os.chdir(cwd)


@pytest.fixture(scope="session")
def mnist_h5(tmp_path_factory):
    """The vendored MNIST, prepared once per test session."""
    from pipeline.datasets import prepare

    out = tmp_path_factory.mktemp("data") / "mnist.h5"
    return prepare.prepare("mnist", VENDOR_DIR / "mnist", out, log=lambda *a: None)


@pytest.fixture
def wait_for():
    """wait(path, process, seconds=120): until `path` exists, failing with what
    was seen if the process ends first or the deadline passes."""
    import time

    def wait(path, process, seconds=120):
        deadline = time.monotonic() + seconds
        while not path.exists():
            assert process.poll() is None, (
                f"the process ended (exit {process.returncode}) before {path.name} was written"
            )
            if time.monotonic() > deadline:
                seen = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
                raise AssertionError(
                    f"no {path.name} after {seconds} s; its folder holds {', '.join(seen) or 'nothing'}"
                )
            time.sleep(0.02)

    return wait


@pytest.fixture
def reference_conv():
    """conv(x, kernel, bias, pads): plain loops over kernel taps in float64, an
    independent definition of the NHWC convolution to check softloss' against."""
    import numpy as np

    def conv(x, kernel, bias, pads):
        top, bottom, left, right = pads
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        kh, kw, _, filters = kernel.shape
        ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        out = np.zeros((x.shape[0], ho, wo, filters))
        for i in range(kh):
            for j in range(kw):
                out += np.einsum("nhwc,cf->nhwf", x[:, i : i + ho, j : j + wo], kernel[i, j])
        return out + bias

    return conv


# ------------------------------------------------------------ images
@pytest.fixture(scope="session")
def encode_image():
    """encode(pixels uint8 (H, W[, C]), "PNG" or "JPEG") -> the file's bytes."""
    import io

    from PIL import Image

    def encode(pixels, fmt):
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        return buffer.getvalue()

    return encode


@pytest.fixture(scope="session")
def classes_folder(encode_image):
    """make(root, n_classes, per_class=2, size=(6, 6)): a class-folder dataset of
    `n_classes` classes (c000, c001, ...), `per_class` random PNGs each in both splits."""
    import numpy as np

    def make(root, n_classes, per_class=2, size=(6, 6)):
        rng = np.random.default_rng(n_classes)
        for split in ("train", "test"):
            for c in range(n_classes):
                for i in range(per_class):
                    path = root / split / f"c{c:03d}" / f"{i}.png"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(encode_image(rng.integers(0, 256, (*size, 3), dtype=np.uint8), "PNG"))
        return root

    return make


# ------------------------------------------------------------ the workflow
@pytest.fixture(scope="session")
def make_workdir():
    """make(path, config_text=the tiny study): a Snakemake working directory holding it as tiny.yaml."""

    def make(path, config_text=TINY):
        path.mkdir(parents=True, exist_ok=True)
        (path / "tiny.yaml").write_text(config_text)  # MNIST: fetch copies the vendored files, offline
        return path

    return make


@pytest.fixture(scope="session")
def snakemake():
    """run(workdir, *args, config="tiny.yaml", snakefile=the checkout's,
    timeout=300, env=None): the workflow in `workdir` on `config` (a file there,
    or a path); run.command(...) is its command line, for a test that starts
    the process itself."""
    import subprocess
    from pathlib import Path

    def command(workdir, *args, config="tiny.yaml", snakefile=REPO / "Snakefile"):
        configfile = Path(workdir) / config  # an absolute `config` stays itself
        snakemake = [sys.executable, "-m", "snakemake", "-s", str(snakefile), "-d", str(workdir)]
        return [*snakemake, "--configfile", str(configfile), *args]

    def run(workdir, *args, timeout=300, env=None, **where):
        return subprocess.run(
            command(workdir, *args, **where), capture_output=True, text=True, timeout=timeout, env=env
        )

    run.command = command
    return run


@pytest.fixture(scope="session")
def finished(tmp_path_factory, make_workdir, snakemake):
    """A working directory where the tiny study ran to its report (tests copy it to change it)."""
    workdir = make_workdir(tmp_path_factory.mktemp("pipeline"))
    result = snakemake(workdir, "--cores", "2", "reports/summary.html")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


# ------------------------------------------------------------ made-up runs for the report
def _made_up_run(loss, seed, accuracy, losses, status="completed"):
    import numpy as np

    history = [
        {
            "epoch": e + 1,
            "train_loss": v,
            "train_accuracy": accuracy,
            "train_error": 1 - accuracy,
            "test_loss": v,
            "test_accuracy": accuracy,
            "test_error": 1 - accuracy,
            "seconds": 1.0,
        }
        for e, v in enumerate(losses)
    ]
    confusion = np.eye(10, dtype=int) * 100
    return {
        "run_dir": f"results/mnist/mnist_cnn/{loss}/seed{seed}",
        "dataset": "mnist",
        "model": "mnist_cnn",
        "loss": loss,
        "seed": seed,
        "status": status,
        "test_accuracy": accuracy,
        "ece": 0.01,
        "confusion_matrix": confusion.tolist(),
        "config": {"epochs": len(losses)},
        "history": history,
        "wall_seconds": 1.0,
        "epoch": len(losses),
        "reason": "non-finite loss" if status == "diverged" else None,
    }


@pytest.fixture(scope="session")
def made_up_run():
    """run(loss, seed, test accuracy, training losses per epoch, status="completed"): a summary's run."""
    return _made_up_run


@pytest.fixture(scope="session")
def report_runs():
    """Table I's losses in both forms, two seeds, one exact NLLR run diverged."""
    run = _made_up_run
    return [
        run("ce", 1, 0.9901, [0.2, 0.05]),
        run("ce", 2, 0.9903, [0.2, 0.04]),
        run("ce_keras", 1, 0.9902, [0.2, 0.05]),
        run("ce_keras", 2, 0.9900, [0.2, 0.05]),
        run("nllr", 1, 0.6062, [-1e10, -1.5e30]),
        run("nllr", 2, 0.11, [-1e10, -1e31], status="diverged"),
        run("nllr_keras", 1, 0.9847, [-13.0, -13.46]),
        run("nllr_keras", 2, 0.9850, [-13.1, -13.5]),
    ]


@pytest.fixture(scope="session")
def rendered(tmp_path_factory, report_runs):
    """(folder, summary.json, the report's HTML) of `report_runs`."""
    import json

    from pipeline.report.render import render

    tmp = tmp_path_factory.mktemp("report")
    summary = tmp / "summary.json"
    summary.write_text(json.dumps({"runs": report_runs}))
    out = render(summary, [], {"experiments": []}, tmp / "summary.html")
    return tmp, summary, out.read_text()
