"""Softmax cross-entropy as one primitive.

Composed from ``log_softmax``, a product with the targets and a sum, cross-entropy takes five
nodes, each a full (rows, classes) array in both passes. Fused, it is one node whose derivative
is the familiar ``softmax(x) - p``: faster, and just as stable (the log-sum-exp is shifted by
the row maximum). Every rule is still written with the package's operations, so higher
derivatives work as for any primitive.
"""
from __future__ import annotations

import numpy as np

from ._core import defprimitive, shape_of
from .elementwise import exp
from .reduce import _logsumexp, sum as reduce_sum
from .shape import getitem, reshape

__all__ = ["softmax_cross_entropy"]


def _at_targets(x, targets):
    """sum_c p_c x_c along the last axis: x at each row's class (``targets`` is then the index
    that picks it), or x weighted by target probabilities."""
    if isinstance(targets, tuple):
        return getitem(x, targets)
    return reduce_sum(x * targets, -1)


def _target_distribution(targets, shape, dtype):
    """The targets as probabilities over the last axis (one-hot for class indices)."""
    if isinstance(targets, tuple):
        distribution = np.zeros(shape, dtype=dtype)
        distribution[targets] = 1.0
        return distribution
    return targets


def _softmax_minus_targets(x, out, targets):
    """softmax(x) - p, with softmax = exp(x - logsumexp(x)) and logsumexp = out + sum_c p_c x_c."""
    shape = shape_of(x)
    lse = out + _at_targets(x, targets)
    probabilities = exp(x - reshape(lse, shape[:-1] + (1,)))
    return probabilities - _target_distribution(targets, shape, probabilities.dtype)


def _forward(x, targets):
    lse = _logsumexp(x, (x.ndim - 1,), False)
    return lse - (x[targets] if isinstance(targets, tuple) else np.sum(x * targets, axis=-1))


softmax_cross_entropy = defprimitive(
    _forward, name="softmax_cross_entropy", saves="v",
    doc="softmax_cross_entropy(x, targets) = logsumexp(x) - sum_c p_c x_c per row (last axis); "
        "d/dx = softmax(x) - p. targets: an index tuple picking each row's class, or "
        "probabilities of x's shape",
    vjp=lambda g, out, x, targets: (
        reshape(g, shape_of(g) + (1,)) * _softmax_minus_targets(x, out, targets)),
    jvp=lambda x_dot, out, x, targets: reduce_sum(
        x_dot * _softmax_minus_targets(x, out, targets), -1))
