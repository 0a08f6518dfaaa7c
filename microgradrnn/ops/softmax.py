"""Softmax, and softmax cross-entropy, as primitives.

Composed from exp, a max shift, a sum and a division, softmax takes five nodes; composed from
``log_softmax``, a product with the targets and a sum, cross-entropy takes five more, each a full
(rows, classes) array in both passes. As primitives they are one node each, with the familiar
derivatives ``out * (g - sum(g * out))`` and ``softmax(x) - p``: faster, and just as stable
(the exponentials are shifted by the row maximum). Every rule is written with the package's
operations, so higher derivatives work as for any primitive.
"""
from __future__ import annotations

import numpy as np

from ._core import defprimitive, shape_of, value_of
from .reduce import (_add_reduce, _log_plus_shift, _shifted_exponentials, normalize_axes,
                     sum as reduce_sum)

__all__ = ["softmax", "softmax_cross_entropy"]


def _softmax(x, axis):
    shifted = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return shifted / np.sum(shifted, axis=axis, keepdims=True)


def _softmax_vjp(g, out, x, axis):
    return out * (g - reduce_sum(g * out, axis, keepdims=True))


softmax_primitive = defprimitive(
    _softmax, name="softmax", saves="-",
    doc="softmax(x, axis) = exp(x) / sum exp(x);  the VJP is out * (g - sum(g * out))",
    vjp=_softmax_vjp,
    jvp=lambda x_dot, out, x, axis: _softmax_vjp(x_dot, out, x, axis))  # J is symmetric


def softmax(x, axis=-1):
    """Probabilities along ``axis`` (exp(x) / sum exp(x), shifted by the maximum: stable)."""
    return softmax_primitive(x, normalize_axes(axis, len(shape_of(x)), "softmax")[0])


def _target_distribution(targets, shape, dtype):
    """The targets as probabilities over the last axis (one-hot for class indices)."""
    if isinstance(targets, tuple):
        distribution = np.zeros(shape, dtype=dtype)
        distribution[targets] = 1.0
        return distribution
    return targets


def _softmax_minus_targets(out, x, targets, kept):
    """softmax(x) - p over the last axis: the derivative of the cross-entropy.

    The softmax comes from the forward's by-product ``kept``, its exponentials and their row
    sums, so no second exponential of the whole (rows, classes) array is taken. On raw arrays
    (an ordinary backward pass, a forward-mode pass) it is their ratio; on Tensors
    (``create_graph``) it is the one recorded node :data:`softmax_of_kept`, whose own rules
    give the second derivative."""
    exponentials, sums = kept
    if type(x) is np.ndarray:
        return _minus_targets(exponentials / sums, targets, 1.0)
    probabilities = softmax_of_kept(x, exponentials, sums)
    return probabilities - _target_distribution(targets, shape_of(x),
                                                value_of(probabilities).dtype)


# softmax(x) from the exponentials exp(x - shift) and row sums that a cross-entropy's forward
# kept (they are x's: the rule that records it is given the same x): one node and a division,
# where recomputing the softmax on Tensors would record a shift, an exponential and a
# division of the whole array again. Its rules are softmax's.
softmax_of_kept = defprimitive(
    lambda x, exponentials, sums: exponentials / sums, name="softmax", saves="-",
    doc="softmax(x) given exp(x - shift) and its sums over the last axis (kept by "
        "softmax_cross_entropy's forward);  the VJP is out * (g - sum(g * out))",
    vjp=lambda g, out, x, exponentials, sums: _softmax_vjp(g, out, x, -1),
    jvp=lambda x_dot, out, x, exponentials, sums: _softmax_vjp(x_dot, out, x, -1))


def _minus_targets(slope, targets, weights):
    """``slope - weights * p`` in ``slope`` (a new array), with ``weights`` one per row (or
    1.0); class indices subtract one entry per row, with no one-hot array built."""
    if isinstance(targets, tuple):
        slope[targets] -= weights
    else:
        slope -= targets * (weights if np.ndim(weights) == 0 else weights[..., None])
    return slope


def _cross_entropy_vjp(g, out, x, targets, kept):
    if type(x) is np.ndarray and type(g) is np.ndarray:
        exponentials, sums = kept  # g * softmax in one pass, which makes the new array
        return _minus_targets(exponentials * (g[..., None] / sums), targets, g)
    return g.reshape(shape_of(g) + (1,)) * _softmax_minus_targets(out, x, targets, kept)


def _forward(x, targets):
    """The losses logsumexp(x) - sum_c p_c x_c per row, and (the by-product the rules reuse)
    the exponentials exp(x - shift) that the logsumexp summed, with their sums: the softmax
    is their ratio."""
    axis = x.ndim - 1
    exponentials, shift, finite = _shifted_exponentials(x, (axis,))
    sums = _add_reduce(exponentials, axis=axis, keepdims=True)
    lse = _log_plus_shift(sums, shift, finite).reshape(x.shape[:-1])
    losses = lse - (x[targets] if isinstance(targets, tuple) else np.sum(x * targets, axis=-1))
    return losses, (exponentials, sums)


softmax_cross_entropy = defprimitive(
    _forward, name="softmax_cross_entropy", saves="v", saves_out=True, byproduct=True,
    doc="softmax_cross_entropy(x, targets) = logsumexp(x) - sum_c p_c x_c per row (last axis); "
        "d/dx = softmax(x) - p. targets: an index tuple picking each row's class, or "
        "probabilities of x's shape. The forward's exponentials are kept for the rules",
    vjp=_cross_entropy_vjp,
    jvp=lambda x_dot, out, x, targets, kept: reduce_sum(
        x_dot * _softmax_minus_targets(out, x, targets, kept), -1))
