"""Gradient clipping, the standard guard against exploding gradients in BPTT.

* :func:`clip_grad_norm`: rescale all gradients together when their global norm is too large
  (Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent neural
  networks", Algorithm 1; ``torch.nn.utils.clip_grad_norm_``);
* :func:`clip_grad_value`: clip every entry to ``[-clip_value, clip_value]`` (min-char-rnn's
  ``np.clip(dparam, -5, 5)``).

Both rebind ``p.grad`` to new arrays; the old arrays are never changed. Parameters whose
``.grad`` is None are skipped. A gradient held as a Tensor (after ``backward(create_graph=True)``)
is clipped as its value and becomes an array.

Thresholds are absolute: they are not invariant to a rescaling of the loss. A threshold tuned
for a mean over T time steps clips the summed loss's gradient, T times larger, far more often.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..tensor import Tensor

__all__ = ["clip_grad_norm", "clip_grad_value"]


def _with_grads(params, op):
    """The Tensors of ``params`` (a Tensor or an iterable of them) that hold a gradient, each
    with its gradient as an array."""
    params = [params] if isinstance(params, Tensor) else list(params)
    pairs = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(f"{op}: params[{i}] is a {type(p).__name__}, not a Tensor")
        if p.grad is not None:
            g = p.grad
            pairs.append((p, np.asarray(g.value if isinstance(g, Tensor) else g)))
    return pairs


def _threshold(value, name, op):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise ValueError(f"{op}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def clip_grad_norm(params, max_norm, norm_type=2.0, error_if_nonfinite=False) -> float:
    """Rescale the gradients of ``params`` together so that their global norm is at most
    ``max_norm``; return the global norm before clipping (a float).

    With ``G`` the concatenation of every gradient and ``n = ||G||_p`` (``norm_type`` p > 0,
    or ``inf`` for the largest absolute entry)::

        g <- g * max_norm / (n + 1e-6)     for every gradient g,  when  max_norm / (n + 1e-6) < 1

    and nothing changes otherwise. The 1e-6 is PyTorch's; it keeps the division finite when the
    norm is 0. A non-finite norm (an overflow in the backward pass) raises a RuntimeError with
    ``error_if_nonfinite=True``; otherwise the gradients are scaled by 0 or become NaN.
    """
    op = "clip_grad_norm"
    max_norm = _threshold(max_norm, "max_norm", op)
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or not norm_type > 0:
        raise ValueError(f"{op}: norm_type must be a number > 0 or math.inf, got {norm_type!r}")
    pairs = _with_grads(params, op)
    if not pairs:
        return 0.0
    norms = np.array([np.linalg.norm(g.ravel(), ord=norm_type) if g.size else 0.0
                      for _, g in pairs])
    total = float(np.linalg.norm(norms, ord=norm_type))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"{op}: the total {norm_type}-norm of the gradients is {total}; "
                           "the backward pass overflowed or produced NaN")
    scale = max_norm / (total + 1e-6)
    if scale < 1:
        for p, g in pairs:
            p.grad = g * scale
    return total


def clip_grad_value(params, clip_value):
    """Clip every gradient entry to ``[-clip_value, clip_value]``:
    ``g <- min(max(g, -clip_value), clip_value)`` (the direction of the gradient may change)."""
    op = "clip_grad_value"
    clip_value = _threshold(clip_value, "clip_value", op)
    for p, g in _with_grads(params, op):
        p.grad = np.clip(g, -clip_value, clip_value)
