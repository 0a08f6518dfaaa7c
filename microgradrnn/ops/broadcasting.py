"""Broadcasting, undone in one place.

An elementwise op may stretch an input to the result's shape (NumPy broadcasting). The input
is not recorded as a node of its own: its node's shape differs from the result's (which
``Node.spread`` reads off), and the engine, not the op's rules, uses the three functions here:
reverse mode sums the input's cotangent back to its shape (:func:`unbroadcast`), forward mode
stretches its tangent (:func:`spread_tangent`), and ``create_graph`` re-broadcasts its array on
the graph (:func:`unspread` finds the array behind the kept view). The explicit
``broadcast_to`` primitive, whose VJP is the same sum, is for users and for matmul's batch axes.
"""
from __future__ import annotations

import numpy as np

from ..graph import ArrayInfo
from ._core import Primitive, shape_of

__all__ = ["unbroadcast", "spread_tangent", "unspread", "broadcast_to"]

_add_reduce = np.add.reduce


def unbroadcast(g, shape):
    """Sum ``g`` back down to ``shape``: over the leading axes broadcasting added, and (keeping
    them) over the axes where ``shape`` has 1. Written with methods that arrays and Tensors share."""
    lead = g.ndim - len(shape)
    if lead == 1 and type(g) is np.ndarray and 1 not in shape:
        # A bias's cotangent, summed over the rows at every time step: np.add.reduce called
        # directly (an array's .sum() is a Python function around it).
        return _add_reduce(g, 0)
    if lead:
        axes = 0 if lead == 1 else tuple(range(lead))
        g = _add_reduce(g, axes) if type(g) is np.ndarray else g.sum(axis=axes)
    if 1 in shape:
        ones = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
        if ones:
            g = g.sum(axis=ones, keepdims=True)
    return g


def _broadcast_to_jvp(tangents, out, x, shape):
    """The tangent broadcast like x. A batch of tangents (extra leading axes, one tangent per
    entry: forward mode in many directions at once) keeps its leading axes in front: x's
    axes are lined up with the trailing axes of ``shape``, not with the batch."""
    x_dot, x_shape = tangents[0], shape_of(x)
    lead = len(shape_of(x_dot)) - len(x_shape)
    if lead:
        batch = shape_of(x_dot)[:lead]
        x_dot = x_dot.reshape(batch + (1,) * (len(shape) - len(x_shape)) + x_shape)
        shape = batch + tuple(shape)
    return broadcast_to(x_dot, shape)


broadcast_to = Primitive(
    "broadcast_to",
    lambda x, shape: np.broadcast_to(x, shape),
    vjps=(lambda g, out, x, shape: unbroadcast(g, shape_of(x)),),
    jvp=_broadcast_to_jvp, nin=1,
    saves="s", saves_out=False,
    doc="broadcast_to(x, shape): numpy broadcasting made explicit; its VJP sums the copies "
        "(the single place where broadcasting is undone).")


def spread_tangent(tangent, own_shape, shape):
    """The tangent of an input of shape ``own_shape`` that an elementwise op broadcast to
    ``shape``, stretched the same way (leading tangent-batch axes stay in front)."""
    return _broadcast_to_jvp((tangent,), None, ArrayInfo(own_shape, None), shape)


def unspread(view, own_shape):
    """The array of shape ``own_shape`` behind a broadcast view of it (no copy; the trailing
    Ellipsis keeps a 0-d result an array rather than a NumPy scalar)."""
    lead = view.ndim - len(own_shape)
    index = (0,) * lead + tuple(slice(0, 1) if n == 1 and m != 1 else slice(None)
                                for n, m in zip(own_shape, view.shape[lead:]))
    return view[index + (Ellipsis,)]
