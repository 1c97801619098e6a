"""A strict CPU stand-in for CuPy, so the device code paths run in CI.

`strictdevice.ndarray` holds a NumPy array but behaves like `cupy.ndarray`
where autograd and NumPy-minded code trip over CuPy:

* it is not a `numpy.ndarray` subclass, and `np.asarray(x)` raises TypeError
  (CuPy: "Implicit conversion to a NumPy array is not allowed");
* an operation that mixes it with a NumPy array fails (TypeError), also as an
  index or an assigned value; Python and NumPy scalars are fine;
* NumPy's functions and ufuncs dispatch to it (`__array_function__`,
  `__array_ufunc__`, returning NotImplemented for foreign types such as
  autograd's boxes); reductions return 0-d arrays, not scalars;
* its module has CuPy's names for what NumPy cannot dispatch: creation
  (`zeros`, `asarray`, ...), `asnumpy`, `lib.stride_tricks.as_strided` and
  `random.default_rng` (with CuPy's `dtype=` argument);
* and nothing CuPy lacks: a module function or constant, an array attribute
  or method, a ufunc method, a random generator's method, or a NumPy function
  dispatched to it, that CuPy as published does not have (its names are in
  tests/cupy_names.json, read from the real package by tests/cupy_names.py)
  is refused as CuPy refuses it.

Code that computes right on it holds no NumPy-only path; what it cannot show
is CuPy's own kernels, which only a GPU run tests (tests/test_backend.py).
"""

from __future__ import annotations

import json
import numbers
import types
from pathlib import Path

import numpy as np

CUPY = {
    key: set(names) if isinstance(names, list) else names
    for key, names in json.loads(Path(__file__).with_name("cupy_names.json").read_text()).items()
}


def _cupy_has(namespace, name):
    if name not in CUPY[namespace]:
        raise AttributeError(f"strictdevice: {namespace} has no attribute {name!r} (CuPy {CUPY['version']})")


def _wrap(value):
    if isinstance(value, np.ndarray):
        return ndarray(value)
    if isinstance(value, np.generic):
        return ndarray(np.asarray(value))
    if isinstance(value, (tuple, list)):
        return type(value)(_wrap(v) for v in value)
    return value


def _unwrap(value, what=None):
    """Device arrays to their NumPy arrays. With `what` ("index", "value"), a
    NumPy array is refused; without, it passes (axes, permutations: the data
    operands of functions and ufuncs are checked by the dispatch itself)."""
    if isinstance(value, ndarray):
        return value._array
    if what and isinstance(value, np.ndarray):
        raise TypeError(f"strictdevice: a NumPy array as {what}; move it to the device with asarray first")
    if isinstance(value, (tuple, list)):
        return type(value)(_unwrap(v, what) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v, what) for k, v in value.items()}
    return value


def _handled(value):
    return isinstance(value, (ndarray, numbers.Number, np.generic)) or value is None


class ndarray(np.lib.mixins.NDArrayOperatorsMixin):
    __slots__ = ("_array",)
    __array_priority__ = 100

    def __init__(self, array):
        self._array = array

    def __array__(self, dtype=None, copy=None):
        raise TypeError("strictdevice: implicit conversion to a NumPy array is not allowed; use .get()")

    def get(self):
        return self._array.copy()

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        _cupy_has("cupy", ufunc.__name__)
        if method != "__call__":
            _cupy_has("cupy.ufunc", method)
        out = kwargs.get("out", ())
        if method == "at":  # ufunc.at(a, indices, b): indices are checked like an index
            a, index, *rest = inputs
            if not all(_handled(x) for x in (a, *rest)):
                return NotImplemented
            getattr(ufunc, method)(_unwrap(a), _unwrap(index, "index"), *_unwrap(rest))
            return None
        if not all(_handled(x) for x in inputs + tuple(out)):
            return NotImplemented
        result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out:
            return out[0] if len(out) == 1 else tuple(out)
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        if not all(issubclass(t, ndarray) for t in types_):
            return NotImplemented
        namespace = {"numpy": "cupy", "numpy.linalg": "cupy.linalg"}.get(func.__module__)
        if namespace is None or func.__name__ not in CUPY[namespace]:
            return NotImplemented  # CuPy dispatches a NumPy function only to its own of the same name
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)
    strides = property(lambda self: self._array.strides)
    itemsize = property(lambda self: self._array.itemsize)
    nbytes = property(lambda self: self._array.nbytes)
    T = property(lambda self: ndarray(self._array.T))

    def __len__(self):
        return len(self._array)

    def __getitem__(self, index):
        return _wrap(self._array[_unwrap(index, "index")])

    def __setitem__(self, index, value):
        self._array[_unwrap(index, "index")] = _unwrap(value, "value")

    def __float__(self):
        return float(self._array)

    def __int__(self):
        return int(self._array)

    def __bool__(self):
        return bool(self._array)

    def __repr__(self):
        return f"strictdevice.{self._array!r}"

    def __getattr__(self, name):  # array methods: reshape, sum, astype, argmax, ...
        if name.startswith("__"):  # no __array_interface__ & co: NumPy must not see the data
            raise AttributeError(name)
        _cupy_has("cupy.ndarray", name)
        attribute = getattr(self._array, name)
        if not callable(attribute):
            return _wrap(attribute)
        return lambda *args, **kwargs: _wrap(attribute(*_unwrap(args), **_unwrap(kwargs)))


# ------------------------------------------------------------------ module
def asarray(value, dtype=None):
    if isinstance(value, ndarray):
        return value if dtype is None else value.astype(dtype, copy=False)
    return ndarray(np.array(value, dtype=dtype))  # the explicit host-to-device copy


def asnumpy(value):
    return value.get() if isinstance(value, ndarray) else np.asarray(value)


def ascontiguousarray(value, dtype=None):
    return ndarray(np.ascontiguousarray(_unwrap(value), dtype=dtype))


def _creation(name):
    make = getattr(np, name)
    return lambda *args, **kwargs: ndarray(make(*_unwrap(args), **_unwrap(kwargs)))


class _Generator:
    """cupy.random.Generator's one call softloss makes (dropout), with CuPy's `dtype=`."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def __getattr__(self, name):
        _cupy_has("cupy.random.Generator", name)
        raise AttributeError(f"strictdevice: the stand-in's Generator does not draw {name!r} yet")


def __getattr__(name):  # ufuncs, dispatching functions, dtypes, constants: NumPy's own, where CuPy has them
    _cupy_has("cupy", name)
    return getattr(np, name)


lib = types.SimpleNamespace(
    stride_tricks=types.SimpleNamespace(
        as_strided=lambda x, shape=None, strides=None: ndarray(
            np.lib.stride_tricks.as_strided(x._array, shape=shape, strides=strides)
        )
    )
)
random = types.SimpleNamespace(default_rng=_Generator)
globals().update(
    {
        name: _creation(name)
        for name in ("zeros", "ones", "empty", "arange", "zeros_like", "ones_like", "empty_like")
    }
)
