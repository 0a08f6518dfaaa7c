"""Matrix multiplication with NumPy's rules for 1-D, 2-D and batched operands.

The primitive multiplies stacks of matrices with equal batch shapes:
``out = x @ y``, ``dL/dx = g @ y^T``, ``dL/dy = x^T @ g`` (transposes of the last two axes).
The public :func:`matmul` reduces every other case to that one with recorded reshapes (a 1-D
operand becomes a matrix and back) and ``broadcast_to`` (batch axes), so the primitive's rules
never have to undo broadcasting themselves.
"""
from __future__ import annotations

import numpy as np

from ._core import Declined, defprimitive, shape_of
from .broadcasting import broadcast_to
from .shape import reshape

__all__ = ["matmul", "affine"]


def _t(a):
    """The transpose of the last two axes (``.T`` for the usual 2-D case)."""
    return a.T if a.ndim == 2 else a.swapaxes(-1, -2)


_matmul = defprimitive(
    np.matmul, name="matmul", saves="vv", saves_out=False, doc="matmul(x, y) = x @ y;  dx = g @ y^T,  dy = x^T @ g",
    vjp=(lambda g, out, x, y: g @ _t(y),
         lambda g, out, x, y: _t(x) @ g),
    jvp=(lambda x_dot, out, x, y: x_dot @ y,
         lambda y_dot, out, x, y: x @ y_dot))


def matmul(x, y):
    """``x @ y`` as ``np.matmul``: 1-D operands are promoted to matrices (and the added axis
    removed from the result), batch axes broadcast."""
    x_shape, y_shape = shape_of(x), shape_of(y)
    if not x_shape or not y_shape:
        raise ValueError(f"matmul: operands must have at least one axis, got shapes {x_shape} "
                         f"and {y_shape}; use * to multiply by a scalar")
    if len(x_shape) == 2 and len(y_shape) == 2 and x_shape[1] == y_shape[0]:
        return _matmul(x, y)  # the common case, first
    x_vector, y_vector = len(x_shape) == 1, len(y_shape) == 1
    if x_vector:
        x, x_shape = reshape(x, (1,) + x_shape), (1,) + x_shape
    if y_vector:
        y, y_shape = reshape(y, y_shape + (1,)), y_shape + (1,)
    if x_shape[-1] != y_shape[-2]:
        raise ValueError(f"matmul: shapes {shape_of(x)} and {shape_of(y)} do not align: the last "
                         f"axis of the first ({x_shape[-1]}) must equal the second-to-last axis "
                         f"of the second ({y_shape[-2]})")
    try:
        batch = np.broadcast_shapes(x_shape[:-2], y_shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch shapes {x_shape[:-2]} and {y_shape[:-2]} do not "
                         "broadcast") from None
    if x_shape[:-2] != batch:
        x = broadcast_to(x, batch + x_shape[-2:])
    if y_shape[:-2] != batch:
        y = broadcast_to(y, batch + y_shape[-2:])
    out = _matmul(x, y)
    if x_vector or y_vector:
        out_shape = shape_of(out)
        out = reshape(out, out_shape[:-2] + out_shape[-2:-1] * (not x_vector)
                      + out_shape[-1:] * (not y_vector))
    return out


def _affine_forward(x, W, c):
    # The fused case: matrices x (B, n) and W (n, p), and c a term that broadcasts to the
    # product's shape (a bias (p,), a term (B, p)). NumPy checks the shapes as it computes (a
    # ValueError: x and W do not align, or c does not broadcast to the product); those and
    # any other operands (a batch of matrices, a list, a number) are declined.
    try:
        if x.ndim != 2 or W.ndim != 2:
            raise Declined
        out = np.matmul(x, W)
        if c.dtype is out.dtype:  # (an equal dtype that is another object: the path below)
            out += c  # into the product's own new array: no second (B, p) array
            return out
        total = out + c  # another dtype: NumPy's promotion
    except (AttributeError, ValueError):
        raise Declined from None
    if total.shape != out.shape:
        raise Declined  # c enlarged the result
    return total


def _matmul_and_add(x, W, c):
    """affine's other cases: NumPy's rules for matmul and for the broadcasting add."""
    return matmul(x, W) + c


# affine(x, W, c) = x @ W + c as one node, BLAS's gemm: every layer and every recurrent cell
# applies it at every time step, as a layer x W + b or as a recurrent term h W_hh added to the
# input's x W_xh + b. Recording it once instead of twice (a matmul, then an add) halves the
# bookkeeping of the most frequent pair of operations. c is elementwise with the result
# (declared to broadcast), so the engine sums its cotangent back to (p,) for a bias: its rule
# is just g. Other shapes (a batch of sequences, a vector, a c larger than the product) are
# the matmul and the add, with NumPy's rules.
affine = defprimitive(
    _affine_forward, name="affine", saves="vv-", saves_out=False, broadcasts=(2,),
    otherwise=_matmul_and_add,
    doc="affine(x, W, c) = x @ W + c: one node for x (B, n), W (n, p) and c an array that "
        "broadcasts to (B, p) (a bias (p,), a term (B, p));  dx = g W^T,  dW = x^T g,  "
        "dc = g (summed over the rows for a bias). Other shapes: matmul and add, with "
        "NumPy's rules",
    vjp=(lambda g, out, x, W, c: g @ W.T,   # x and W are matrices here: .T, not _t
         lambda g, out, x, W, c: x.T @ g,
         lambda g, out, x, W, c: g),
    jvp=(lambda x_dot, out, x, W, c: x_dot @ W,
         lambda W_dot, out, x, W, c: x @ W_dot,
         lambda c_dot, out, x, W, c: c_dot))
