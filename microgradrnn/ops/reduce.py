"""Reductions over axes: sum, mean, max, min and logsumexp, each a primitive.

Every reduction takes ``axis`` (None for all axes, an int, or a tuple of ints, negative
counting from the end) and ``keepdims``. Their VJPs first put the reduced axes back
(``_keep``), then broadcast to the input's shape.
"""
from __future__ import annotations

import math

import numpy as np

from ._core import Primitive, defprimitive, shape_of, value_of
from .broadcasting import broadcast_to
from .elementwise import exp

__all__ = ["sum", "mean", "max", "min", "logsumexp", "normalize_axes"]

_add_reduce, _max_reduce, _all_reduce = np.add.reduce, np.maximum.reduce, np.logical_and.reduce


def normalize_axes(axis, ndim, op):
    """``axis`` as a sorted tuple of non-negative ints, or a clear error naming ``op``."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    result = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, (bool, np.bool_)):
            raise TypeError(f"{op}: axis must be an int or a tuple of ints, got {axis!r}")
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} "
                             f"dimension(s); use an axis in [{-ndim}, {ndim - 1}]"
                             if ndim else
                             f"{op}: axis {a} is out of range for a 0-dimensional tensor; "
                             "use axis=None")
        result.append(int(a) % ndim)
    if len(set(result)) != len(result):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(result))


def _keep(g, x_shape, axes, keepdims):
    """``g`` with the reduced axes restored as length-1 axes, so that it broadcasts against the
    input (nothing to do with keepdims, or when only leading axes were reduced)."""
    if keepdims or axes == tuple(range(len(axes))):
        return g
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(x_shape)))


def _sum_vjp(g, out, x, axes, keepdims):
    shape = shape_of(x)
    return broadcast_to(_keep(g, shape, axes, keepdims), shape)


_sum = defprimitive(
    lambda x, axes, keepdims: np.sum(x, axis=axes, keepdims=keepdims), name="sum",
    saves="s", saves_out=False,
    doc="sum(x, axis);  the VJP copies g back to every summed position",
    vjp=_sum_vjp,
    jvp=lambda x_dot, out, x, axes, keepdims: _sum(x_dot, axes, keepdims))


def _share_of_extremum(x, out, axes, keepdims):
    """1/k at each of the k positions that attain the max (or min), 0 elsewhere."""
    x = value_of(x)
    hits = x == _keep(value_of(out), x.shape, axes, keepdims)
    return (hits / hits.sum(axis=axes, keepdims=True)).astype(x.dtype, copy=False)


def _extremum(name, reduce):
    return defprimitive(
        lambda x, axes, keepdims: reduce(x, axis=axes, keepdims=keepdims), name=name, saves="v",
        doc=f"{name}(x, axis); ties share the gradient equally (each of k tied entries gets 1/k)",
        vjp=lambda g, out, x, axes, keepdims: (
            _keep(g, shape_of(x), axes, keepdims) * _share_of_extremum(x, out, axes, keepdims)),
        jvp=lambda x_dot, out, x, axes, keepdims: _sum(
            x_dot * _share_of_extremum(x, out, axes, keepdims), axes, keepdims))


_max = _extremum("max", np.max)
_min = _extremum("min", np.min)


def _logsumexp(x, axes, keepdims):
    exponentials, shift, finite = _shifted_exponentials(x, axes)
    total = _add_reduce(exponentials, axis=axes, keepdims=keepdims)
    return _log_plus_shift(total, shift if keepdims else shift.reshape(np.shape(total)), finite)


def _shifted_exponentials(x, axes):
    """``(exp(x - shift), shift, finite)``, ``shift`` the maximum over ``axes`` (kept as axes of
    length 1), so that exp never overflows. A slice that is all -inf (or holds inf or nan) is
    shifted by 0 instead (``finite`` is then False): its sum may be 0, and log 0 = -inf is
    then the right answer, not an error. (The ufuncs' reduce methods, called directly: np.max
    and np.sum are Python functions around them, and a loss computes this once per step.)"""
    shift = _max_reduce(x, axis=axes, keepdims=True)
    finite = _all_reduce(np.isfinite(shift), axis=None)
    if not finite:
        shift = np.where(np.isfinite(shift), shift, 0.0)
    shifted = np.asarray(x - shift)  # an array even for 0-d x (NumPy gives a scalar)
    return np.exp(shifted, out=shifted), shift, finite  # in the new array: no second one


def _log_plus_shift(total, shift, finite):
    """log(total) + shift: the logsumexp from a sum of shifted exponentials."""
    if finite:
        return np.log(total) + shift
    with np.errstate(divide="ignore"):
        return np.log(total) + shift


def _softmax_weights(x, out, axes, keepdims):
    """exp(x - logsumexp(x)): the softmax over the reduced axes, the derivative of logsumexp."""
    return exp(x - _keep(out, shape_of(x), axes, keepdims))


# logsumexp is a primitive for stability and speed: one node, computed with the max shift,
# whose derivative is the softmax.
_lse = defprimitive(
    _logsumexp, name="logsumexp", saves="v",
    doc="logsumexp(x, axis) = log sum exp(x);  d/dx = softmax(x) = exp(x - out)",
    vjp=lambda g, out, x, axes, keepdims: (
        _keep(g, shape_of(x), axes, keepdims) * _softmax_weights(x, out, axes, keepdims)),
    jvp=lambda x_dot, out, x, axes, keepdims: _sum(
        x_dot * _softmax_weights(x, out, axes, keepdims), axes, keepdims))


def _reduction(primitive: Primitive, doc):
    def reduce(x, axis=None, keepdims=False):
        axes = normalize_axes(axis, len(shape_of(x)), primitive.name)
        return primitive(x, axes, bool(keepdims))
    reduce.__name__ = primitive.name
    reduce.__doc__ = doc
    reduce.primitive = primitive
    return reduce


sum = _reduction(_sum, "Sum over ``axis`` (all axes when None).")
max = _reduction(_max, "Maximum over ``axis``; tied maxima share the gradient equally.")
min = _reduction(_min, "Minimum over ``axis``; tied minima share the gradient equally.")
logsumexp = _reduction(_lse, "log(sum(exp(x))) over ``axis``, computed stably.")


# mean is a primitive of its own rather than sum times 1/count: one node, not two, for the
# reduction that ends most losses.
_mean = defprimitive(
    lambda x, axes, keepdims, scale: _add_reduce(x, axis=axes, keepdims=keepdims) * scale,
    name="mean", saves="s", saves_out=False,
    doc="mean(x, axis, keepdims, scale): the sum times scale = 1/count;  the VJP copies "
        "g / count back to every position",
    vjp=lambda g, out, x, axes, keepdims, scale: _sum_vjp(g * scale, out, x, axes, keepdims),
    jvp=lambda x_dot, out, x, axes, keepdims, scale: _mean(x_dot, axes, keepdims, scale))


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis``: the sum times 1/count (NaN over an empty axis)."""
    shape = shape_of(x)
    axes = normalize_axes(axis, len(shape), "mean")
    count = math.prod(shape[a] for a in axes)
    return _mean(x, axes, bool(keepdims), 1.0 / count if count else float("nan"))
