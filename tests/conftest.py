import sys
from pathlib import Path

import pytest

# Test helpers that are modules (strictdevice.py, tinydata.py, closed_forms.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

from repo import VENDOR_DIR  # noqa: E402


@pytest.fixture
def check_grads():
    """check(f, x): autograd's own check of f's reverse-mode derivative at x
    against finite differences (autograd.test_util), its random directions
    seeded and NumPy's global generator left as it was."""
    from autograd.test_util import check_grads as autograd_check

    import numpy as np

    state = np.random.get_state()
    np.random.seed(0)
    yield lambda f, x: autograd_check(f, modes=["rev"], order=1)(x)
    np.random.set_state(state)


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
            assert process.poll() is None, f"the process ended (exit {process.returncode}) before {path.name} was written"
            if time.monotonic() > deadline:
                seen = sorted(p.name for p in path.parent.iterdir()) if path.parent.exists() else []
                raise AssertionError(f"no {path.name} after {seconds} s; its folder holds {', '.join(seen) or 'nothing'}")
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
