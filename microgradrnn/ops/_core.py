"""The primitive registry and the one function that runs a primitive: :func:`apply`.

A primitive is a NumPy forward function plus its derivative rules, declared side by side:

* one VJP rule per input, ``vjp_i(g, out, *args) -> cotangent for input i``;
* a JVP rule, ``jvp(tangents, out, *args) -> tangent of out``, where ``tangents[i]`` is the
  tangent of input i or None when that input is constant.

``args`` are the primitive's positional arguments: its array inputs, then its static
parameters (an axis, a shape, an index). Rules are written with this package's own operations
and operators, which accept raw arrays and Tensors alike: called with raw arrays (ordinary
backward) they are plain NumPy; called with Tensors (``create_graph=True``) they record a new
graph, which is how every derivative is differentiable again with no extra code.

Broadcasting is undone in one place. A primitive declared ``broadcasts=True`` is elementwise:
when one of its recorded inputs has a smaller shape than the result, :func:`apply` records an
explicit ``broadcast_to`` node in front of it, whose VJP is the sum that undoes the broadcast.
So the elementwise rules only ever see inputs of the result's shape.
"""
from __future__ import annotations

import numpy as np

from ..graph import Node, state, user_frame

__all__ = ["Primitive", "defprimitive", "apply", "AnomalyError", "value_of", "shape_of"]

# The concrete tensor class that op results are made of. It is defined in
# ``microgradrnn.tensor``, a layer above this one, which registers it here on import
# (a lower layer never imports a higher one).
Tensor = None


def register_tensor_type(tensor_type):
    global Tensor
    Tensor = tensor_type


class AnomalyError(FloatingPointError):
    """A NaN or Inf appeared under ``detect_anomaly()``."""


class Primitive:
    """A differentiable operation: ``forward`` (NumPy), one VJP per input, one JVP.

    Call it like its forward function: ``prim(x, y, *params)``. On raw arrays it is the bare
    NumPy call; with a Tensor among its inputs it returns a Tensor, recorded when an input
    requires grad.
    """

    def __init__(self, name, forward, vjps, jvp, nin, broadcasts=False, doc=None):
        self.name = name
        self.forward = forward
        self.vjps = vjps   # vjps[i](g, out, *args): the cotangent for input i
        self.jvp = jvp     # jvp(tangents, out, *args): the tangent of the output
        self.nin = nin     # the number of inputs; None when each call says (concatenate)
        self.broadcasts = broadcasts
        self.__doc__ = doc or forward.__doc__

    def __call__(self, *args):
        return apply(self, args, self.nin)

    def __repr__(self):
        return f"<primitive {self.name}>"


def _sum_of_input_jvps(rules):
    """Turn per-input JVP rules into one: the output tangent is the sum of the contributions."""
    def jvp(tangents, out, *args):
        total = None
        for rule, tangent in zip(rules, tangents):
            if tangent is not None:
                term = rule(tangent, out, *args)
                total = term if total is None else total + term
        return total
    return jvp


def defprimitive(forward, vjp, jvp, *, name=None, broadcasts=False, doc=None):
    """Declare a primitive from its forward function and its derivative rules.

    ``vjp`` and ``jvp`` are one rule each for a one-input primitive, or tuples with one rule
    per input. Rules receive the output and all arguments (inputs, then static parameters)::

        softplus = mg.defprimitive(
            lambda x: np.logaddexp(0.0, x),
            vjp=lambda g, out, x: g * mg.sigmoid(x),          # d/dx log(1 + e^x) = sigmoid(x)
            jvp=lambda x_dot, out, x: x_dot * mg.sigmoid(x),
            name="softplus")

    Write the rules with microgradrnn operations (``mg.sigmoid``, operators, ``mg.sum``...), not
    with ``np.*`` functions: then they run on raw arrays during an ordinary backward pass and
    on Tensors under ``create_graph=True``, so the primitive supports derivatives of any order.
    Check a new primitive with :func:`microgradrnn.gradcheck.check_primitive`.
    """
    vjps = tuple(vjp) if isinstance(vjp, (tuple, list)) else (vjp,)
    jvps = tuple(jvp) if isinstance(jvp, (tuple, list)) else (jvp,)
    if len(vjps) != len(jvps):
        raise ValueError(f"defprimitive: {len(vjps)} VJP rules but {len(jvps)} JVP rules; "
                         "give one of each per input")
    return Primitive(name or forward.__name__, forward, vjps, _sum_of_input_jvps(jvps),
                     nin=len(vjps), broadcasts=broadcasts, doc=doc)


def value_of(x):
    """The raw array inside a Tensor, or ``x`` itself (for masks and shapes inside rules)."""
    return x._value if isinstance(x, Node) else x


def shape_of(x):
    """The shape of a Tensor, an array or a scalar (inside rules, where x may be any of them)."""
    if isinstance(x, Node):
        return x._value.shape
    return x.shape if isinstance(x, np.ndarray) else np.shape(x)


def _describe(args, nin):
    return ", ".join(str(shape_of(a)) for a in args[:nin])


def apply(primitive, args, nin):
    """Run ``primitive`` on ``args`` (the first ``nin`` are its inputs): raw in, raw out;
    Tensors in, a Tensor out, recorded when an input requires grad and grad mode is on."""
    values = None
    parents = None
    record = False
    for i in range(nin):
        a = args[i]
        if isinstance(a, Node):
            if values is None:
                values = list(args)
                parents = [None] * nin
            values[i] = a._value
            if a.requires_grad:
                parents[i] = a
                record = True
    if values is None:  # no Tensor at all: the bare NumPy call
        return primitive.forward(*args)
    try:
        out = primitive.forward(*values)
    except (ValueError, TypeError, IndexError) as error:
        raise _explained(error, primitive, values, nin) from error
    if type(out) is not np.ndarray:
        out = np.asarray(out)
    if state.detect_anomaly:
        _check_finite(out, primitive, values, nin)
    if not (record and state.grad_enabled):
        return Tensor._constant(out)
    for i in range(nin):
        if parents[i] is None:
            values[i] = _owned(values[i])
        elif primitive.broadcasts and parents[i]._value.shape != out.shape:
            parents[i] = broadcast_to(parents[i], out.shape)
    node = Tensor._record(out, primitive, tuple(parents), tuple(values), state.tags)
    if state.detect_anomaly:
        node.origin = user_frame()
    return node


def _owned(constant):
    """A constant the graph can keep: a writable array the caller owns is copied, so that
    changing it in place later cannot change a gradient computed from this graph."""
    if type(constant) is np.ndarray and constant.flags.writeable:
        return constant.copy()
    return constant


def _explained(error, primitive, args, nin):
    """NumPy's error again, prefixed with the op and the input shapes (and, for a broadcasting
    op, what broadcasting needs)."""
    message = f"{primitive.name}: cannot apply to inputs of shapes {_describe(args, nin)}: {error}"
    if primitive.broadcasts and isinstance(error, ValueError):
        message += ("; elementwise inputs must broadcast (NumPy's rule: shapes aligned from the "
                    "right, each axis equal or 1): reshape or expand_dims one of them")
    kind = next(k for k in (TypeError, IndexError, ValueError) if isinstance(error, k))
    return kind(message)


def _check_finite(value, primitive, args, nin):
    if np.all(np.isfinite(value)):
        return
    raise AnomalyError(
        f"detect_anomaly: {primitive.name} produced a non-finite value in its forward; "
        f"input shapes {_describe(args, nin)}; scope tags {dict(state.tags or {})}; "
        f"called from {_format_frame(user_frame())}")


def _format_frame(frame):
    if frame is None:
        return "an unknown line"
    filename, line, function = frame
    return f"{filename}:{line} in {function}"


def check_cotangent(value, node, input_index):
    """Raise AnomalyError when a backward rule produced NaN or Inf (used by the engine)."""
    if np.all(np.isfinite(value_of(value))):
        return
    origin = node.origin
    made = (f"the op was created at {_format_frame(origin)}" if origin is not None
            else "the op was created outside detect_anomaly(), so its line is unknown")
    raise AnomalyError(
        f"detect_anomaly: the VJP of {node.primitive.name} produced a non-finite cotangent "
        f"for input {input_index}; input shapes "
        f"{_describe(node.args, len(node.parents))}; scope tags {dict(node.tags or {})}; {made}")


def _unbroadcast(g, shape):
    """Sum ``g`` back down to ``shape``: over the leading axes broadcasting added, and (keeping
    them) over the axes where ``shape`` has 1. Written with methods that arrays and Tensors share."""
    lead = g.ndim - len(shape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    ones = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if ones:
        g = g.sum(axis=ones, keepdims=True)
    return g


broadcast_to = Primitive(
    "broadcast_to",
    lambda x, shape: np.broadcast_to(x, shape),
    vjps=(lambda g, out, x, shape: _unbroadcast(g, shape_of(x)),),
    jvp=lambda tangents, out, x, shape: broadcast_to(tangents[0], shape), nin=1,
    doc="broadcast_to(x, shape): numpy broadcasting made explicit; its VJP sums the copies "
        "(the single place where broadcasting is undone).")
