"""Teach HIPS autograd (1.9) to trace a device array type such as `cupy.ndarray`.

autograd boxes only the array types it registered, builds each value's vector
space with `np.asarray` (which CuPy refuses: no silent device-to-host copies),
and a handful of its NumPy VJPs allocate or scatter with NumPy itself. CuPy
arrays otherwise dispatch NumPy's functions and ufuncs to CuPy
(`__array_function__`, `__array_ufunc__`), so autograd's wrappers already run
on them. `enable(xp)` fixes the rest, once per array type:

* `ArrayBox.register(xp.ndarray)`: ArrayBox itself, not a subclass, because
  autograd's ufunc dispatch looks boxes up by exact type;
* `DeviceArrayVSpace`: shape and dtype read from the array, zeros and ones
  made by `xp`;
* VJPs rewritten over the array module of their cotangent:
  `repeat_to_match_shape` (the gradients of sum, mean, max, min, prod, var,
  std), `dot` (as the tensordot it is), `where`, indexing (`untake`),
  `concatenate` and the ones tensor of the `einsum` VJP.

Each replacement serves device arrays only: on NumPy arrays autograd's own
VJP runs, so a process that enabled a device keeps every derivative autograd
has, forward mode (JVPs) and higher orders included (CI runs autograd's own
test suite with the replacements installed). On the device they compute the
gradient autograd computes on NumPy (tests/test_backend.py checks them against
finite differences and across backends), keeping float32: the mean's count is
a Python int, and `where`'s zeros and einsum's ones take the operand's dtype.

Not patched: `autograd.scipy.special.logsumexp` wraps SciPy's NumPy-only
function; softloss has its own logsumexp primitive (`pipeline.core.primitives`).
Only real (not complex) device arrays get a vector space.
"""

from __future__ import annotations

import math

import autograd.numpy as anp
import numpy as onp
from autograd.extend import defjvp, defjvp_argnum, defvjp, defvjp_argnum, defvjp_argnums, primitive

from .autograd_internals import (
    ArrayBox,
    ArrayVSpace,
    SparseObject,
    VSpace,
    getval,
    numpy_jvps,
    numpy_vjps,
    numpy_wrapper,
    primitive_vjps,
)

_ENABLED = {}  # device ndarray type -> its array module
# autograd.numpy.where is a plain wrapper (it returns lists for list inputs)
# around the primitive that carries the VJPs.
_WHERE = getattr(anp, "_original_where", anp.where)
_PATCHED = False


def module_of(value):
    """The array module owning `value` (boxed or not): a device module or NumPy."""
    value_type = type(getval(value))
    module = _ENABLED.get(value_type)
    if module is not None:
        return module
    if value_type.__module__.startswith("cupy"):  # made outside backend.resolve: enable on first sight
        import cupy

        return enable(cupy)
    return onp


class DeviceArrayVSpace(ArrayVSpace):
    """autograd's ArrayVSpace for arrays of a device module `xp`."""

    def __init__(self, value):
        if value.dtype.kind == "c":
            raise TypeError("complex device arrays are not supported by softloss' autograd bridge")
        self.shape, self.dtype = value.shape, value.dtype
        self.xp = _ENABLED[type(value)]

    def zeros(self):
        return self.xp.zeros(self.shape, dtype=self.dtype)

    def ones(self):
        return self.xp.ones(self.shape, dtype=self.dtype)

    def standard_basis(self):
        for index in onp.ndindex(*self.shape):
            vector = self.zeros()
            vector[index] = 1
            yield vector

    def randn(self):
        return self.xp.asarray(onp.random.randn(*self.shape).astype(self.dtype))

    def _inner_prod(self, x, y):
        return self.xp.dot(self.xp.ravel(x), self.xp.ravel(y))


# ------------------------------------------------------------------ VJPs
def _repeat_to_match_shape(g, shape, dtype, axis, keepdims):
    """g, reduced over `axis`, broadcast back to `shape` (a fresh writable
    array: autograd later adds into it in place), and the reduced count."""
    if shape == ():
        return g, 1
    axes = range(len(shape)) if axis is None else (axis,) if isinstance(axis, int) else axis
    axes = {a % len(shape) for a in axes}
    kept = tuple(1 if i in axes else n for i, n in enumerate(shape))
    count = math.prod(shape[i] for i in axes)  # a Python int: float32 / count stays float32
    return anp.reshape(g, kept) + module_of(g).zeros(shape, dtype=dtype), count


def _dot_axes(a_ndim, b_ndim):
    """`tensordot` axes equal to `dot` for these ranks (0 = outer product)."""
    if a_ndim == 0 or b_ndim == 0:
        return 0
    return ([a_ndim - 1], [max(b_ndim - 2, 0)])


def _cast(x, dtype):
    return x if anp.result_type(x) == dtype else x.astype(dtype)


def _dot_vjp(argnum):
    tensordot_vjp = (numpy_vjps.tensordot_vjp_0, numpy_vjps.tensordot_vjp_1)[argnum]

    def make_vjp(ans, A, B):
        vjp = tensordot_vjp(ans, A, B, _dot_axes(anp.ndim(A), anp.ndim(B)))
        dtype = anp.result_type((A, B)[argnum])
        return lambda g: _cast(vjp(g), dtype)

    return make_vjp


def _is_basic_index(index):
    """Ints, slices, None and Ellipsis only: no element is selected twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (int, onp.integer, slice)) or p is None or p is Ellipsis for p in parts)


@primitive
def _untake(x, index, vs):
    """The gradient of `A[index]`: x added into zeros shaped like A."""
    if isinstance(index, list) and (not index or not isinstance(index[0], slice)):
        index = module_of(x).asarray(onp.array(index, dtype="int64"))  # an index array where x lives

    def mut_add(A):
        if _is_basic_index(index):
            A[index] += x
        else:  # repeated indices must accumulate
            module_of(A).add.at(A, index, x)
        return A

    return SparseObject(vs, mut_add)


defvjp(_untake, lambda ans, x, index, _: lambda g: g[index])
defjvp(_untake, "same")  # linear in x: forward mode (Hessian-vector products) as autograd has it


@primitive
def _concatenate_args(axis, *args):
    out = onp.concatenate(args, axis)  # dispatches to the arrays' own module
    return out.view(onp.ndarray) if isinstance(out, onp.ndarray) else out


defvjp_argnum(_concatenate_args, numpy_vjps.grad_concatenate_args)
defjvp_argnum(_concatenate_args, numpy_jvps.fwd_grad_concatenate_args)


def _grad_einsum(argnum, ans, operands, kwargs):
    """autograd's einsum VJP, made to work on device arrays.

    For "ij,j->i"-style subscripts autograd parses the subscripts with NumPy's
    parser, which converts the operands (CuPy refuses), and contracts labels
    that only the differentiated operand has with a ones tensor allocated by
    NumPy. Here the subscripts are parsed on shape-only stand-ins, that ones
    tensor comes from the operand's module, and the expression is handed to
    autograd's VJP in its (operand, sublist, ...) form, which parses nothing."""
    arrays = list(operands[1:])
    if not isinstance(operands[0], str):
        return numpy_vjps.grad_einsum(argnum, ans, operands, kwargs)
    shapes = [tuple(anp.shape(a)) for a in arrays]
    stand_ins = [onp.broadcast_to(onp.zeros((), onp.int8), shape) for shape in shapes]
    in_subs, out_subs, _ = anp.parse_einsum_input(operands[0], *stand_ins)
    subs = in_subs.split(",")
    k = argnum - 1
    elsewhere = set(out_subs).union(*subs[:k], *subs[k + 1 :])
    alone = "".join(dict.fromkeys(s for s in subs[k] if s not in elsewhere))
    if alone:  # appending a ones tensor over them leaves the value unchanged
        ones_shape = tuple(shapes[k][subs[k].index(s)] for s in alone)
        arrays.append(module_of(arrays[k]).ones(ones_shape, dtype=anp.result_type(arrays[k])))
        subs.append(alone)
    label = {s: i for i, s in enumerate(dict.fromkeys("".join(subs) + out_subs))}
    sublists = [[label[s] for s in sub] for sub in subs]
    interleaved = [x for pair in zip(arrays, sublists) for x in pair] + [[label[s] for s in out_subs]]
    vjp = numpy_vjps.grad_einsum(2 * k, ans, interleaved, kwargs)
    meta = anp.metadata(operands[argnum])
    return lambda g: numpy_vjps.unbroadcast(vjp(g), meta)


def _on_device(values):
    return any(module_of(value) is not onp for value in values)


def _for_devices(fun, *device_vjpmakers, argnum=False):
    """Give `fun` the VJPs `device_vjpmakers` (as autograd's defvjp takes them,
    or one defvjp_argnum maker with `argnum`) for device arrays, keeping
    autograd's own for NumPy arrays."""
    numpy_vjps_of_fun = primitive_vjps[fun]
    (defvjp_argnum if argnum else defvjp)(fun, *device_vjpmakers)
    device_vjps = primitive_vjps[fun]

    def vjp_argnums(argnums, ans, args, kwargs):
        chosen = device_vjps if _on_device(args) else numpy_vjps_of_fun
        return chosen(argnums, ans, args, kwargs)

    defvjp_argnums(fun, vjp_argnums)


def _install_vjps():
    global _PATCHED
    if _PATCHED:
        return
    repeat, untake, concatenate_args = (
        numpy_vjps.repeat_to_match_shape,
        numpy_vjps.untake,
        numpy_wrapper.concatenate_args,
    )
    numpy_vjps.repeat_to_match_shape = lambda g, *args: (
        _repeat_to_match_shape if _on_device([g]) else repeat
    )(g, *args)
    numpy_vjps.untake = lambda x, index, vs: (_untake if _on_device([x]) else untake)(x, index, vs)
    numpy_wrapper.concatenate_args = anp.concatenate_args = lambda axis, *args: (
        _concatenate_args if _on_device(args) else concatenate_args
    )(axis, *args)
    _for_devices(anp.dot, _dot_vjp(0), _dot_vjp(1))
    _for_devices(
        _WHERE,
        None,
        lambda ans, c, x=None, y=None: lambda g: anp.where(c, g, 0),
        lambda ans, c, x=None, y=None: lambda g: anp.where(c, 0, g),
    )
    _for_devices(anp.einsum, _grad_einsum, argnum=True)
    _PATCHED = True


def enable(xp):
    """Make autograd trace `xp.ndarray` (e.g. `enable(cupy)`); idempotent."""
    if xp.ndarray in _ENABLED:
        return xp
    _install_vjps()
    ArrayBox.register(xp.ndarray)
    VSpace.register(xp.ndarray, DeviceArrayVSpace)
    _ENABLED[xp.ndarray] = xp
    return xp
