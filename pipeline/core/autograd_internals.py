"""Every part of HIPS autograd that softloss takes from outside its public API
(autograd.extend, autograd.numpy), in one place: the tracer that
`autodiff.value_and_grad` drives, and the tables and wrappers that
`autograd_device` extends for CuPy arrays. Internals can change in any
release, so only the versions this code was checked with are accepted: any
other stops here, at import, with one line (pyproject.toml holds the same range)."""

from __future__ import annotations

from importlib.metadata import version

from ..common.errors import SoftlossError

TESTED = ((1, 7), (1, 10))  # autograd >= 1.7, < 1.10


def _check(installed):
    parts = tuple(int(p) for p in installed.split(".")[:2] if p.isdigit())
    if not TESTED[0] <= parts < TESTED[1]:
        low, high = (".".join(map(str, v)) for v in TESTED)
        raise SoftlossError(
            f"autograd {installed} is installed; softloss uses its internals as autograd >= {low}, "
            f"< {high} has them: pip install 'autograd>={low},<{high}'"
        )
    return installed


INSTALLED = _check(version("autograd"))

from autograd.core import SparseObject, VJPNode, VSpace, add_outgrads, primitive_vjps, vspace  # noqa: E402
from autograd.numpy import numpy_jvps, numpy_vjps, numpy_wrapper  # noqa: E402
from autograd.numpy.numpy_boxes import ArrayBox  # noqa: E402
from autograd.numpy.numpy_vspaces import ArrayVSpace  # noqa: E402
from autograd.tracer import getval, isbox, new_box, toposort, trace_stack  # noqa: E402

__all__ = [
    "ArrayBox",
    "ArrayVSpace",
    "SparseObject",
    "VJPNode",
    "VSpace",
    "add_outgrads",
    "getval",
    "isbox",
    "new_box",
    "numpy_jvps",
    "numpy_vjps",
    "numpy_wrapper",
    "primitive_vjps",
    "toposort",
    "trace_stack",
    "vspace",
]
