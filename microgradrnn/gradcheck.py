"""Finite-difference checks of derivatives, as library code: ``gradcheck`` (reverse mode),
``jvpcheck`` (forward mode), ``gradgradcheck`` (second order, both ways) and
``check_primitive`` (all three on one primitive alone).

Each check works in random directions, which sees every entry of the Jacobian at once: for
random ``u`` (input space) and ``v`` (output space), reverse mode must satisfy
``<J^T v, u> = <v, J u>``, and ``J u`` must match the central difference
``(f(x + eps u) - f(x - eps u)) / (2 eps)`` (float64). A failure raises
:class:`GradcheckError` naming the input, the analytic and numeric values and their relative
error; success returns True.
"""
from __future__ import annotations

import numpy as np

from .ops import concatenate, reshape
from .ops._core import value_of
from .tensor import Tensor
from .transforms import _leaf, grad, jvp, vjp

__all__ = ["gradcheck", "jvpcheck", "gradgradcheck", "check_primitive", "GradcheckError"]


class GradcheckError(AssertionError):
    """A derivative disagreed with finite differences (or reverse with forward mode)."""


def _float64_inputs(inputs, op):
    inputs = (inputs,) if isinstance(inputs, (Tensor, np.ndarray, float, int)) else tuple(inputs)
    arrays = []
    for i, x in enumerate(inputs):
        array = np.asarray(value_of(x))
        if array.dtype != np.float64:
            raise TypeError(f"{op}: input {i} has dtype {array.dtype}; finite differences need "
                            "float64 inputs to be meaningful")
        arrays.append(array)
    return arrays


def _flat(f):
    """``f`` with its output (a Tensor or a tuple of them) as one flat vector."""
    def flat_f(*xs):
        out = f(*xs)
        if isinstance(out, tuple):
            return concatenate([reshape(o, (-1,)) for o in out])
        return out
    return flat_f


def _evaluate(f, xs):
    # Inputs that require grad, so that a function which itself differentiates (the gradient
    # inside gradgradcheck) can run; only the value is kept.
    return np.asarray(value_of(f(*(_leaf(x) for x in xs))), dtype=np.float64)


def _central_difference(f, xs, i, u, eps):
    plus = [x + eps * u if k == i else x for k, x in enumerate(xs)]
    minus = [x - eps * u if k == i else x for k, x in enumerate(xs)]
    return (_evaluate(f, plus) - _evaluate(f, minus)) / (2 * eps)


def _close(a, b, rtol, atol):
    return np.all(np.abs(a - b) <= atol + rtol * np.maximum(np.abs(a), np.abs(b)))


def _relative_error(a, b):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return float(np.max(np.abs(a - b), initial=0.0) / scale)


def _fail(op, i, x, what, analytic, numeric, rtol, atol):
    raise GradcheckError(
        f"{op} failed for input {i} (shape {x.shape}): {what}\n"
        f"  analytic: {np.array2string(np.asarray(analytic), precision=10)}\n"
        f"  numeric:  {np.array2string(np.asarray(numeric), precision=10)}\n"
        f"  relative error {_relative_error(analytic, numeric):.3g} "
        f"(tolerance rtol={rtol}, atol={atol})")


def gradcheck(f, inputs, *, eps=1e-6, rtol=1e-5, atol=1e-7, directions=3, seed=0,
              _op="gradcheck"):
    """Check reverse mode: ``<J^T v, u>`` against ``<v, central difference along u>``, for
    each input alone, in ``directions`` random directions."""
    xs = _float64_inputs(inputs, _op)
    f = _flat(f)
    rng = np.random.default_rng(seed)
    out_shape = _evaluate(f, xs).shape
    for _ in range(directions):
        v = rng.standard_normal(out_shape)
        _, pullback = vjp(f, *xs)
        cotangents = pullback(v)
        for i, x in enumerate(xs):
            u = rng.standard_normal(x.shape)
            analytic = float(np.sum(value_of(cotangents[i]) * u))
            numeric = float(np.sum(v * _central_difference(f, xs, i, u, eps)))
            if not _close(analytic, numeric, rtol, atol):
                _fail(_op, i, x, "reverse mode <J^T v, u> disagrees with the central "
                      "difference <v, (f(x + eps u) - f(x - eps u)) / (2 eps)>",
                      analytic, numeric, rtol, atol)
    return True


def jvpcheck(f, inputs, *, eps=1e-6, rtol=1e-5, atol=1e-7, directions=3, seed=0,
             _op="jvpcheck"):
    """Check forward mode: ``J u`` against the central difference along ``u`` (entry by
    entry), and the adjoint identity ``<v, J u> = <J^T v, u>`` against reverse mode."""
    xs = _float64_inputs(inputs, _op)
    f = _flat(f)
    rng = np.random.default_rng(seed)
    for _ in range(directions):
        for i, x in enumerate(xs):
            u = rng.standard_normal(x.shape)
            tangents = [u if k == i else np.zeros_like(xk) for k, xk in enumerate(xs)]
            _, ju = jvp(f, xs, tangents)
            ju = np.asarray(value_of(ju))
            numeric = _central_difference(f, xs, i, u, eps)
            if not _close(ju, numeric, rtol, atol):
                _fail(_op, i, x, "forward mode J u disagrees with the central difference "
                      "(f(x + eps u) - f(x - eps u)) / (2 eps)", ju, numeric, rtol, atol)
            v = rng.standard_normal(ju.shape)
            _, pullback = vjp(f, *xs)
            forward_side = float(np.sum(v * ju))
            reverse_side = float(np.sum(value_of(pullback(v)[i]) * u))
            if not _close(forward_side, reverse_side, rtol, atol):
                _fail(_op, i, x, "the adjoint identity <v, J u> = <J^T v, u> fails between "
                      "forward mode (analytic) and reverse mode (numeric column)",
                      forward_side, reverse_side, rtol, atol)
    return True


def gradgradcheck(f, inputs, *, eps=1e-6, rtol=1e-5, atol=1e-7, directions=3, seed=0):
    """Check second derivatives: the gradient ``x -> J(x)^T v`` (recorded with
    ``create_graph=True``, random fixed ``v``) must itself pass :func:`gradcheck` (reverse over
    reverse) and :func:`jvpcheck` (forward over reverse)."""
    xs = _float64_inputs(inputs, "gradgradcheck")
    f_flat = _flat(f)
    v = np.random.default_rng(seed + 1).standard_normal(_evaluate(f_flat, xs).shape)

    def gradient(*ts):
        grads = grad(f_flat(*ts), ts, grad_outputs=v, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else Tensor._wrap(np.zeros(t.shape), None)
                     for g, t in zip(grads, ts))

    kwargs = dict(eps=eps, rtol=rtol, atol=atol, directions=directions, seed=seed)
    gradcheck(gradient, xs, _op="gradgradcheck (reverse over reverse)", **kwargs)
    jvpcheck(gradient, xs, _op="gradgradcheck (forward over reverse)", **kwargs)
    return True


def check_primitive(primitive, inputs, params=(), *, second_order=True, **tolerances):
    """Check one primitive alone: its VJP rules (gradcheck), its JVP rule (jvpcheck) and,
    unless ``second_order=False``, the derivatives of its rules (gradgradcheck).
    ``params`` are the primitive's static parameters, passed after the inputs."""
    def f(*xs):
        return primitive(*xs, *params)
    gradcheck(f, inputs, **tolerances)
    jvpcheck(f, inputs, **tolerances)
    if second_order:
        gradgradcheck(f, inputs, **tolerances)
    return True
