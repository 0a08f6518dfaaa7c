"""Elementwise primitives and the composites built from them.

Binary primitives follow NumPy broadcasting (``broadcasts=True``): the core records a
``broadcast_to`` node for an input that needs it, so these rules see equal shapes.
Masks inside rules (which side of a maximum won) are constants: ``value_of`` reads the raw
array, so the mask is not differentiated.
"""
from __future__ import annotations

import numpy as np

from ._core import defprimitive, value_of

__all__ = ["add", "sub", "mul", "div", "pow", "exp", "log", "tanh", "sigmoid", "maximum",
           "minimum", "where", "neg", "relu", "abs", "sqrt", "clip"]

add = defprimitive(
    np.add, name="add", broadcasts=True, saves="--", saves_out=False, doc="add(x, y) = x + y",
    vjp=(lambda g, out, x, y: g,
         lambda g, out, x, y: g),
    jvp=(lambda x_dot, out, x, y: x_dot,
         lambda y_dot, out, x, y: y_dot))

# sub and div are primitives rather than x + (-y) and x * y**-1: one node instead of two for
# the most common binary operations, and div keeps NumPy's correctly rounded quotient.
sub = defprimitive(
    np.subtract, name="sub", broadcasts=True, saves="--", saves_out=False,
    doc="sub(x, y) = x - y",
    vjp=(lambda g, out, x, y: g,
         lambda g, out, x, y: -g),
    jvp=(lambda x_dot, out, x, y: x_dot,
         lambda y_dot, out, x, y: -y_dot))

mul = defprimitive(
    np.multiply, name="mul", broadcasts=True, saves="vv", saves_out=False,
    doc="mul(x, y) = x * y",
    vjp=(lambda g, out, x, y: g * y,
         lambda g, out, x, y: g * x),
    jvp=(lambda x_dot, out, x, y: x_dot * y,
         lambda y_dot, out, x, y: x * y_dot))

div = defprimitive(
    np.divide, name="div", broadcasts=True, saves="-v",
    doc="div(x, y) = x / y;  d/dy = -x / y^2 = -out / y",
    vjp=(lambda g, out, x, y: g / y,
         lambda g, out, x, y: -g * out / y),
    jvp=(lambda x_dot, out, x, y: x_dot / y,
         lambda y_dot, out, x, y: -y_dot * out / y))


def _log_base(x):
    """log(x) where x != 0, 0 where x == 0: d(x^y)/dy = x^y log x is 0 at x = 0 (for y > 0)."""
    return log(where(value_of(x) == 0, 1.0, x))


def _power_slope(x, y):
    """d(x^y)/dx = y x^(y-1). Where y = 0 and x is 0 (or so small that x^-1 overflows) that is
    0 * inf = NaN, although x^0 is constant: there the exponent is replaced by 1, which gives the
    exact slope 0 and keeps every derivative of an integer power finite at 0."""
    x_value, y_value = value_of(x), value_of(y)
    tiny = np.finfo(np.result_type(x_value, y_value)).tiny
    overflow = (y_value == 0) & (np.abs(x_value) < tiny)
    return y * x ** where(np.asarray(overflow), 1.0, y - 1)


pow = defprimitive(
    np.power, name="pow", broadcasts=True, saves="vv",
    doc="pow(x, y) = x^y;  d/dx = y x^(y-1),  d/dy = x^y log x",
    vjp=(lambda g, out, x, y: g * _power_slope(x, y),
         lambda g, out, x, y: g * out * _log_base(x)),
    jvp=(lambda x_dot, out, x, y: x_dot * _power_slope(x, y),
         lambda y_dot, out, x, y: y_dot * out * _log_base(x)))

exp = defprimitive(
    np.exp, name="exp", saves="-", doc="exp(x);  d/dx = exp(x) = out",
    vjp=lambda g, out, x: g * out,
    jvp=lambda x_dot, out, x: x_dot * out)

log = defprimitive(
    np.log, name="log", saves="v", saves_out=False, doc="log(x) (natural);  d/dx = 1/x",
    vjp=lambda g, out, x: g / x,
    jvp=lambda x_dot, out, x: x_dot / x)

# tanh and sigmoid are primitives because their derivatives are cheapest from the output,
# and every recurrent cell applies them at every step.
tanh = defprimitive(
    np.tanh, name="tanh", saves="-", doc="tanh(x);  d/dx = 1 - tanh(x)^2 = 1 - out^2",
    vjp=lambda g, out, x: g * (1 - out * out),
    jvp=lambda x_dot, out, x: x_dot * (1 - out * out))


def _sigmoid(x):
    # 1 / (1 + e^-x) written as exp(-log(1 + e^-x)): no overflow for large |x| and full
    # relative precision in both tails.
    return np.exp(-np.logaddexp(0.0, -x))


sigmoid = defprimitive(
    _sigmoid, name="sigmoid", saves="-", doc="sigmoid(x) = 1 / (1 + e^-x);  d/dx = out (1 - out)",
    vjp=lambda g, out, x: g * out * (1 - out),
    jvp=lambda x_dot, out, x: x_dot * out * (1 - out))


def _wins(x, y, better):
    """1 where x strictly wins, 1/2 on ties, 0 where y wins: how a tie shares the gradient."""
    x, y = value_of(x), value_of(y)
    return (better(x, y) + 0.5 * (x == y)).astype(np.result_type(x, y), copy=False)


def _elementwise_extremum(name, choose, better):
    return defprimitive(
        choose, name=name, broadcasts=True, saves="vv", saves_out=False,
        doc=f"{name}(x, y), elementwise; on a tie each input receives half of the gradient",
        vjp=(lambda g, out, x, y: g * _wins(x, y, better),
             lambda g, out, x, y: g * _wins(y, x, better)),
        jvp=(lambda x_dot, out, x, y: x_dot * _wins(x, y, better),
             lambda y_dot, out, x, y: y_dot * _wins(y, x, better)))


maximum = _elementwise_extremum("maximum", np.maximum, np.greater)
minimum = _elementwise_extremum("minimum", np.minimum, np.less)

# The condition is a static parameter (it is not differentiable), so it comes last.
_select = defprimitive(
    lambda x, y, condition: np.where(condition, x, y), name="where", broadcasts=True,
    saves="--", saves_out=False,
    doc="where(condition, x, y): x where the condition holds, else y",
    vjp=(lambda g, out, x, y, condition: _select(g, 0.0, condition),
         lambda g, out, x, y, condition: _select(0.0, g, condition)),
    jvp=(lambda x_dot, out, x, y, condition: _select(x_dot, 0.0, condition),
         lambda y_dot, out, x, y, condition: _select(0.0, y_dot, condition)))


def where(condition, x, y):
    """x where ``condition`` is true, else y (NumPy broadcasting); the gradient follows the choice."""
    condition = np.asarray(value_of(condition))
    if condition.dtype != np.bool_:
        raise TypeError(f"where: the condition must be boolean, got dtype {condition.dtype}; "
                        "compare first (for example x > 0)")
    return _select(x, y, condition)


# Composites: each is one node of a primitive above, so they need no rules of their own.

def neg(x):
    """-x, as x * (-1): exact in floating point."""
    return mul(x, -1.0)


def relu(x):
    """max(x, 0); the gradient at 0 is 0 (the usual convention)."""
    return where(value_of(x) > 0, x, 0.0)


def abs(x):
    """|x| = x * sign(x); the gradient at 0 is 0 (sign(0) = 0)."""
    return mul(x, np.sign(value_of(x)))


def sqrt(x):
    """sqrt(x) = x ** 0.5."""
    return pow(x, 0.5)


def clip(x, low=None, high=None):
    """x limited to [low, high] (either may be None); inside the range the gradient is 1,
    outside it goes to the bound that was chosen (so a Tensor bound can learn)."""
    if low is None and high is None:
        raise ValueError("clip: give low, high or both")
    value = value_of(x)
    if low is not None:
        x = where(value < value_of(low), low, x)
        value = value_of(x)
    if high is not None:
        x = where(value > value_of(high), high, x)
    return x
