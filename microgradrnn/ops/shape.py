"""Primitives that move entries without changing them: reshape, transpose, indexing,
scatter-add and concatenate; and the composites expand_dims, squeeze, stack and split.

Each VJP is the adjoint movement: reshape back, transpose by the inverse permutation,
scatter-add what indexing gathered (and gather what scatter-add spread), slice what
concatenate joined. Each is linear, so its JVP is the op itself applied to the tangent.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ._core import Primitive, defprimitive, shape_of, value_of
from .broadcasting import broadcast_to
from .reduce import normalize_axes

__all__ = ["reshape", "transpose", "swapaxes", "broadcast_to", "expand_dims", "squeeze",
           "getitem", "scatter_add", "concatenate", "stack", "split"]

_reshape = defprimitive(
    lambda x, shape: np.reshape(x, shape), name="reshape", saves="s", saves_out=False,
    doc="reshape(x, shape)",
    vjp=lambda g, out, x, shape: _reshape(g, shape_of(x)),
    jvp=lambda x_dot, out, x, shape: _reshape(x_dot, shape))


def reshape(x, shape):
    """``x`` with a new shape of the same size (one entry may be -1)."""
    old = shape_of(x)
    shape = _resolve_shape(shape, old)
    return x if shape == old else _reshape(x, shape)


def _resolve_shape(shape, old):
    """``shape`` as a tuple of ints with a -1 filled in, or a clear error."""
    shape = tuple(shape) if isinstance(shape, (tuple, list)) else (shape,)
    size = math.prod(old)
    try:
        shape = tuple(operator.index(n) for n in shape)
    except TypeError:
        raise TypeError(f"reshape: the shape must be ints, got {shape!r}") from None
    known = math.prod(n for n in shape if n != -1)
    if shape.count(-1) == 1 and known and size % known == 0:
        shape = tuple(size // known if n == -1 else n for n in shape)
    if math.prod(shape) != size or any(n < 0 for n in shape):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {old} (size {size}) "
                         f"into shape {shape}; the sizes must match (one entry may be -1)")
    return shape


_transpose = defprimitive(
    lambda x, axes: np.transpose(x, axes), name="transpose", saves="-", saves_out=False,
    doc="transpose(x, axes): permute the axes; the VJP applies the inverse permutation",
    vjp=lambda g, out, x, axes: _transpose(g, tuple(np.argsort(axes))),
    jvp=lambda x_dot, out, x, axes: _transpose(x_dot, axes))


def transpose(x, axes=None):
    """Permute the axes of ``x`` (reverse them when ``axes`` is None), as ``np.transpose``."""
    ndim = len(shape_of(x))
    if axes is None:
        return _transpose(x, tuple(reversed(range(ndim))))
    axes = tuple(operator.index(a) % ndim if ndim else operator.index(a) for a in axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"transpose: axes {axes} are not a permutation of the {ndim} axes "
                         f"of a tensor of shape {shape_of(x)}")
    return _transpose(x, axes)


def swapaxes(x, axis1, axis2):
    """Exchange two axes of ``x``."""
    ndim = len(shape_of(x))
    a, b = normalize_axes(axis1, ndim, "swapaxes")[0], normalize_axes(axis2, ndim, "swapaxes")[0]
    axes = list(range(ndim))
    axes[a], axes[b] = b, a
    return _transpose(x, tuple(axes))


def expand_dims(x, axis):
    """Insert length-1 axes at ``axis`` (an int or tuple), via reshape."""
    shape = shape_of(x)
    axes = normalize_axes(axis, len(shape) + (len(axis) if isinstance(axis, tuple) else 1),
                          "expand_dims")
    it = iter(shape)
    new_shape = tuple(1 if i in axes else next(it) for i in range(len(shape) + len(axes)))
    return _reshape(x, new_shape)


def squeeze(x, axis=None):
    """Remove length-1 axes (all of them, or those named by ``axis``), via reshape."""
    shape = shape_of(x)
    if axis is None:
        axes = tuple(i for i, n in enumerate(shape) if n == 1)
    else:
        axes = normalize_axes(axis, len(shape), "squeeze")
        for a in axes:
            if shape[a] != 1:
                raise ValueError(f"squeeze: axis {a} of shape {shape} has length {shape[a]}, "
                                 "not 1")
    return _reshape(x, tuple(n for i, n in enumerate(shape) if i not in axes))


def _is_basic(index):
    """True for indices made of ints, slices, None and Ellipsis (no entry is picked twice)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(p is None or p is Ellipsis or isinstance(p, (slice, int, np.integer))
               for p in parts)


def _scatter_add(g, index, shape):
    out = np.zeros(shape, dtype=np.result_type(g))
    if _is_basic(index):
        out[index] = g
    else:
        np.add.at(out, index, g)  # repeated indices add up
    return out


def _getitem_jvp(x_dot, out, x, index):
    """The same entries of the tangent. A batch of tangents (extra leading axes, one tangent
    per entry: forward mode in many directions at once) is indexed behind its leading axes."""
    lead = len(shape_of(x_dot)) - len(shape_of(x))
    if not lead:
        return _getitem(x_dot, index)
    parts = index if isinstance(index, tuple) else (index,)
    picked = _getitem(x_dot, (slice(None),) * lead + parts)
    # Integer-array indices separated by a slice, None or Ellipsis put their axes first (NumPy's
    # rule), in front of the batch axes too: move the batch axes back to the front.
    arrays = [p for p in parts if isinstance(p, np.ndarray)]
    advanced = [i for i, p in enumerate(parts)
                if isinstance(p, np.ndarray) or (arrays and isinstance(p, (int, np.integer)))]
    if advanced and advanced[-1] - advanced[0] + 1 != len(advanced):
        k = len(np.broadcast_shapes(*(np.shape(parts[i]) for i in advanced)))
        ndim = len(shape_of(picked))
        picked = _transpose(picked, tuple(range(k, k + lead)) + tuple(range(k))
                            + tuple(range(k + lead, ndim)))
    return picked


_getitem = defprimitive(
    lambda x, index: x[index], name="getitem", saves="s", saves_out=False,
    doc="x[index]: slices, ints, integer arrays, boolean masks; the VJP is scatter_add",
    vjp=lambda g, out, x, index: scatter_add(g, index, shape_of(x)),
    jvp=_getitem_jvp)

scatter_add = defprimitive(
    _scatter_add, name="scatter_add", saves="-", saves_out=False,
    doc="scatter_add(g, index, shape): zeros of ``shape`` with g added at ``index`` "
        "(repeated indices add); the adjoint of indexing, whose VJP is indexing",
    vjp=lambda g, out, values, index, shape: _getitem(g, index),
    jvp=lambda v_dot, out, values, index, shape: scatter_add(v_dot, index, shape))


def _normalize_index(index, shape):
    """Turn Tensors and lists inside an index into arrays, and boolean masks into the integer
    arrays they select (``x[mask]`` is ``x[mask.nonzero()]``), so scatter_add can use them."""
    parts = index if isinstance(index, tuple) else (index,)
    result = []
    for part in parts:
        part = value_of(part)
        if isinstance(part, (list, np.ndarray)):
            part = np.asarray(part)
            if part.dtype == np.bool_:
                result.extend(part.nonzero())
                continue
            if part.dtype.kind not in "iu":
                raise IndexError(f"getitem: index arrays must be integer or boolean, got dtype "
                                 f"{part.dtype} (indexing a tensor of shape {shape})")
        result.append(part)
    return tuple(result) if isinstance(index, tuple) or len(result) != 1 else result[0]


def getitem(x, index):
    """``x[index]`` with NumPy's rules; entries picked twice receive the sum of their gradients."""
    return _getitem(x, _normalize_index(index, shape_of(x)))


def _concatenate(*args):
    *xs, axis, bounds = args
    return np.concatenate(xs, axis=axis)


class _PerInput(dict):
    """The VJP rules of a primitive with any number of inputs: ``rules[i]`` is the rule that
    ``make_rule(i)`` returns, made on first use and kept (a dict, so the walk finds a rule made
    before in one lookup)."""

    def __init__(self, make_rule):
        super().__init__()
        self.make_rule = make_rule

    def __missing__(self, i):
        rule = self[i] = self.make_rule(i)
        return rule


def _concatenate_vjp(i):
    """Input i's rule: its slice bounds[i]:bounds[i+1] of g along the joined axis."""
    def rule(g, out, *args):
        axis, bounds = args[-2], args[-1]
        return g[(slice(None),) * axis + (slice(bounds[i], bounds[i + 1]),)]
    return rule


def _joined_tangents(primitive, tangents, static, input_shape):
    """The JVP of a primitive that joins its inputs (concatenate, stack): the same join of
    their tangents, with zeros for the inputs that have none, of shape
    ``input_shape(i, the shape of a tangent that is there)`` (the inputs' own shapes are not
    kept: they differ at most along the joined axis)."""
    present = next((t for t in tangents if t is not None), None)
    if present is None:
        return None
    like, dtype = shape_of(present), np.result_type(value_of(present))
    parts = [t if t is not None else np.zeros(input_shape(i, like), dtype=dtype)
             for i, t in enumerate(tangents)]
    return primitive(*parts, *static)


def _concatenate_jvp(tangents, out, *args):
    axis, bounds = args[-2], args[-1]
    return _joined_tangents(concatenate_primitive, tangents, args[-2:], lambda i, like: (
        like[:axis] + (bounds[i + 1] - bounds[i],) + like[axis + 1:]))


concatenate_primitive = Primitive(
    "concatenate", _concatenate, vjps=_PerInput(_concatenate_vjp), jvp=_concatenate_jvp,
    nin=None, statics=2, saves="-", saves_out=False,
    doc="concatenate(x_0, ..., x_n-1, axis, bounds): join along an axis; the VJP of input i "
        "is the slice bounds[i]:bounds[i+1] of g")


def concatenate(xs, axis=0):
    """Join a sequence of tensors along an existing axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("concatenate: needs at least one tensor")
    shapes = [shape_of(x) for x in xs]
    axis = normalize_axes(axis, len(shapes[0]), "concatenate")[0] if shapes[0] else 0
    for shape in shapes:
        if len(shape) != len(shapes[0]) or any(
                a != b for k, (a, b) in enumerate(zip(shape, shapes[0])) if k != axis):
            raise ValueError(f"concatenate: shapes {shapes} differ outside axis {axis}; all "
                             "tensors must match except along the joined axis")
    bounds = tuple(int(b) for b in np.cumsum([0] + [s[axis] for s in shapes]))
    return concatenate_primitive(*xs, axis, bounds)


def _stack_vjp(i):
    """Input i's rule: g's entry i along the new axis (``g[i]`` for axis 0)."""
    def rule(g, out, *args):
        axis = args[-1]
        return g[i] if axis == 0 else g[(slice(None),) * axis + (i,)]
    return rule


def _stack_jvp(tangents, out, *args):
    return _joined_tangents(stack_primitive, tangents, args[-1:], lambda i, like: like)


def _stack(*args):
    arrays, axis = args[:-1], args[-1]
    first = arrays[0]
    if axis == 0 and type(first) is np.ndarray and first.ndim:
        # np.stack's own work, without its Python-level checks (stack() has made them): the
        # arrays end to end, then the new leading axis
        return np.concatenate(arrays).reshape((len(arrays),) + first.shape)
    return np.stack(arrays, axis=axis)


# One node for the whole stack, not an expand_dims per input and a concatenate: a sequence
# model stacks its T outputs once per forward pass.
stack_primitive = Primitive(
    "stack", _stack, vjps=_PerInput(_stack_vjp),
    jvp=_stack_jvp, nin=None, statics=1, saves="-", saves_out=False,
    doc="stack(x_0, ..., x_n-1, axis): join along a new axis; the VJP of input i is g's "
        "index i along that axis")


def stack(xs, axis=0):
    """Join tensors of equal shape along a new axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("stack: needs at least one tensor")
    shapes = set(map(shape_of, xs))
    if len(shapes) != 1:
        raise ValueError(f"stack: all tensors must have the same shape, got {sorted(shapes)}")
    axis = normalize_axes(axis, len(shape_of(xs[0])) + 1, "stack")[0]
    return stack_primitive(*xs, axis)


def split(x, indices_or_sections, axis=0):
    """Split ``x`` along ``axis`` into equal sections or at the given indices (as ``np.split``);
    each piece is a slice of ``x``."""
    shape = shape_of(x)
    axis = normalize_axes(axis, len(shape), "split")[0]
    n = shape[axis]
    if isinstance(indices_or_sections, (int, np.integer)):
        sections = int(indices_or_sections)
        if sections <= 0 or n % sections:
            raise ValueError(f"split: axis {axis} of length {n} cannot be split into "
                             f"{sections} equal sections; pass split indices instead")
        cuts = [n // sections * k for k in range(1, sections)]
    else:
        cuts = list(indices_or_sections)
    edges = [0] + cuts + [n]
    head = (slice(None),) * axis
    return [_getitem(x, head + (slice(a, b),)) for a, b in zip(edges[:-1], edges[1:])]
