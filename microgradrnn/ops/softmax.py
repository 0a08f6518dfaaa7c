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
from .elementwise import exp
from .reduce import _logsumexp, normalize_axes, sum as reduce_sum

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


def _target_term(x, targets):
    """sum_c p_c x_c per row: the target's logit (or the p-weighted mean of the logits)."""
    return x[targets] if isinstance(targets, tuple) else reduce_sum(x * targets, -1)


def _softmax_minus_targets(out, x, targets):
    """softmax(x) - p over the last axis: the derivative of the cross-entropy.

    The forward pass already found logsumexp(x) = out + sum_c p_c x_c, stably, so the softmax
    is one exponential, exp(x - logsumexp(x)) (never above 1): no second max, sum or division
    over the (rows, classes) array."""
    lse = out + _target_term(x, targets)
    # .reshape, the method: an array's is one C call; a Tensor's records the reshape node
    shifted = x - lse.reshape(shape_of(lse) + (1,))
    if type(shifted) is np.ndarray:
        # Raw arrays (an ordinary backward pass): the same values computed in the new array,
        # in place, with no (rows, classes) one-hot array built to be subtracted.
        probabilities = np.exp(shifted, out=shifted)
        if isinstance(targets, tuple):
            probabilities[targets] -= 1.0
        else:
            probabilities -= targets
        return probabilities
    probabilities = exp(shifted)
    return probabilities - _target_distribution(targets, shape_of(x), value_of(probabilities).dtype)


def _cross_entropy_vjp(g, out, x, targets):
    slope = _softmax_minus_targets(out, x, targets)
    g = g.reshape(shape_of(g) + (1,))  # one cotangent per row, spread over its classes
    if type(slope) is np.ndarray and type(g) is np.ndarray:
        slope *= g  # an array this rule made: scaled in place
        return slope
    return g * slope


def _forward(x, targets):
    lse = _logsumexp(x, (x.ndim - 1,), False)
    return lse - (x[targets] if isinstance(targets, tuple) else np.sum(x * targets, axis=-1))


softmax_cross_entropy = defprimitive(
    _forward, name="softmax_cross_entropy", saves="v", saves_out=True,
    doc="softmax_cross_entropy(x, targets) = logsumexp(x) - sum_c p_c x_c per row (last axis); "
        "d/dx = softmax(x) - p. targets: an index tuple picking each row's class, or "
        "probabilities of x's shape",
    vjp=_cross_entropy_vjp,
    jvp=lambda x_dot, out, x, targets: reduce_sum(
        x_dot * _softmax_minus_targets(out, x, targets), -1))
