"""Composite functions built from the primitives (no rules of their own): softmax,
log_softmax, cross_entropy, mse and one_hot."""
from __future__ import annotations

import functools

import numpy as np

from .ops import logsumexp, mean, sum as reduce_sum
from .ops.softmax import softmax, softmax_cross_entropy
from .ops._core import shape_of, value_of

__all__ = ["softmax", "log_softmax", "cross_entropy", "mse", "one_hot"]

_REDUCTIONS = ("mean", "sum", "none")


def log_softmax(x, axis=-1):
    """x - logsumexp(x): log-probabilities, stable for any logits (no exp overflows)."""
    return x - logsumexp(x, axis, keepdims=True)


def one_hot(indices, num_classes, dtype=np.float64):
    """A constant array with a 1 at each index: shape ``indices.shape + (num_classes,)``."""
    indices = np.asarray(value_of(indices))
    if indices.dtype.kind not in "iu":
        raise TypeError(f"one_hot: indices must be integers, got dtype {indices.dtype}")
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f"one_hot: indices must lie in [0, {num_classes - 1}], got values from "
                         f"{indices.min()} to {indices.max()}")
    return np.eye(num_classes, dtype=dtype)[indices]


def _reduce(losses, reduction, op):
    if reduction == "mean":
        return mean(losses)
    if reduction == "sum":
        return reduce_sum(losses)
    if reduction == "none":
        return losses
    raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


_min_reduce, _max_reduce = np.minimum.reduce, np.maximum.reduce


@functools.lru_cache(maxsize=64)
def _rows(shape):
    """The index arrays that pick one entry per row of a (shape + (classes,)) array, with the
    targets as the last index: np.indices(shape, sparse=True), made once per shape (a loss
    is computed at every step, nearly always of the same shape). Read-only, as shared."""
    rows = np.indices(shape, sparse=True)
    for index in rows:
        index.flags.writeable = False
    return tuple(rows)


def cross_entropy(logits, targets, reduction="mean"):
    """-sum_c p_c log softmax(logits)_c over the last axis, one loss per row.

    ``targets`` are class indices (integers, shape ``logits.shape[:-1]``) or probabilities
    (the shape of ``logits``; treated as constants). ``reduction``: "mean" over rows, "sum", or
    "none". One fused primitive (``softmax_cross_entropy``), whose gradient is softmax - p.
    """
    shape = shape_of(logits)
    targets = np.asarray(value_of(targets))
    if targets.dtype.kind in "iu":
        if targets.shape != shape[:-1]:
            raise ValueError(f"cross_entropy: integer targets must have shape {shape[:-1]} "
                             f"(the logits' shape {shape} without the class axis), got "
                             f"{targets.shape}")
        if targets.size and (_min_reduce(targets, axis=None) < 0
                             or _max_reduce(targets, axis=None) >= shape[-1]):
            raise ValueError(f"cross_entropy: class indices must lie in [0, {shape[-1] - 1}], "
                             f"got values from {targets.min()} to {targets.max()}")
        targets = _rows(targets.shape) + (targets,)  # picks each row's class
    elif targets.dtype.kind == "f":
        if targets.shape != shape:
            raise ValueError(f"cross_entropy: probability targets must have the logits' shape "
                             f"{shape}, got {targets.shape}")
    else:
        raise TypeError(f"cross_entropy: targets must be class indices (integers) or "
                        f"probabilities (floats), got dtype {targets.dtype}")
    return _reduce(softmax_cross_entropy(logits, targets), reduction, "cross_entropy")


def mse(prediction, target, reduction="mean"):
    """Mean squared error: mean of (prediction - target)^2 over all entries ("sum", "none")."""
    if shape_of(prediction) != shape_of(target):
        raise ValueError(f"mse: prediction has shape {shape_of(prediction)} but target has "
                         f"shape {shape_of(target)}; they must be equal (no broadcasting, "
                         "which usually hides a bug here)")
    difference = prediction - target
    return _reduce(difference * difference, reduction, "mse")
