"""The primitive registry and the one function that runs a primitive: :func:`apply`.

A primitive is a NumPy forward function plus its derivative rules, declared side by side:

* one VJP rule per input, ``vjp_i(g, out, *args) -> cotangent for input i``;
* a JVP rule, ``jvp(tangents, out, *args) -> tangent of out``, where ``tangents[i]`` is the
  tangent of input i or None when that input is constant;
* ``saves``: what the rules read of each input, so the graph keeps no more than that.

``args`` are the primitive's positional arguments: its array inputs, then its static
parameters (an axis, a shape, an index). Rules are written with this package's own operations
and operators, which accept raw arrays and Tensors alike: called with raw arrays (ordinary
backward) they are plain NumPy; called with Tensors (``create_graph=True``) they record a new
graph, which is how every derivative is differentiable again with no extra code.

An input declared elementwise (``broadcasts=True`` for every input, or a tuple of input
indices, as ``affine``'s added term) may have a smaller shape than the result: its node's
shape differs from the result's (``node.spread`` reads it off), and the engine undoes that
broadcasting (:mod:`microgradrnn.ops.broadcasting`), so the rules only ever see elementwise
inputs of the result's shape and a bias added at every time step costs no node of its own.
"""
from __future__ import annotations

import numpy as np

from ..graph import ArrayInfo, Node, next_serial, state, user_frame

__all__ = ["Primitive", "Declined", "defprimitive", "apply", "AnomalyError",
           "value_of", "shape_of"]

# The concrete tensor class that op results are made of. It is defined in
# ``microgradrnn.tensor``, a layer above this one, which registers it here on import
# (a lower layer never imports a higher one).
Tensor = None


def register_tensor_type(tensor_type):
    global Tensor, _wrap
    Tensor = tensor_type
    _wrap = tensor_type._wrap


_wrap = None  # Tensor._wrap, looked up once: apply calls it for every op
_new_tensor = _new_node = object.__new__
_ndarray = np.ndarray  # one global look-up, not two, in apply


class AnomalyError(FloatingPointError):
    """A NaN or Inf appeared under ``detect_anomaly()``."""


def value_of(x):
    """The raw array inside a Tensor, or ``x`` itself (for masks and shapes inside rules)."""
    return x._value if isinstance(x, Tensor) else x


def shape_of(x):
    """The shape of a Tensor, an array, an :class:`ArrayInfo` or a scalar."""
    if isinstance(x, Tensor):
        return x._value.shape
    if isinstance(x, (np.ndarray, ArrayInfo)):
        return x.shape
    return np.shape(x)


def _describe(args, nin):
    return ", ".join(str(shape_of(a)) for a in args[:nin])


class Declined(Exception):
    """Raised by a fused primitive's forward for arguments outside the case it fuses."""


def apply(primitive, *args):
    """Run ``primitive`` on ``args`` (its inputs, then its static parameters): raw in, raw
    out; Tensors in, a Tensor out, recorded when an input requires grad and grad mode is on.

    This is calling a primitive in general (``Primitive.__call__``): any number of inputs, any
    of them constants. The common plans (one input, two, affine's three, each with what its
    node keeps fixed in advance) are called through the classes below, which spell the same
    steps out for their inputs; :func:`_record` takes the modes and the per-call plans."""
    nin = primitive.nin
    if nin is None:  # a primitive of any number of inputs (stack): all but the statics
        nin = len(args) - primitive.statics
    values, parents = list(args), [None] * nin
    any_tensor = False
    for i in range(nin):
        a = args[i]
        if isinstance(a, Tensor):
            values[i], parents[i], any_tensor = a._value, a.node, True
    if not any_tensor:
        return _bare(primitive, args)
    values, parents = tuple(values), tuple(parents)
    try:
        out = primitive.forward(*values)
    except Declined:  # a fused primitive outside the case it fuses: the composite instead
        return primitive.otherwise(*args)
    except (ValueError, TypeError, IndexError) as error:
        raise _explained(error, primitive, values, nin) from error
    if type(out) is not _ndarray:
        if primitive.byproduct:  # (out, by-product): the node keeps both (by _record)
            return _record(primitive, np.asarray(out[0]), parents, values, nin, out[1])
        out = np.asarray(out)
    read = primitive.reads
    if read is None or not state.plain:
        return _record(primitive, out, parents, values, nin)  # a mode is on, or no fixed plan
    if _stretched_and_read(primitive, parents, values, out.shape):
        return _record(primitive, out, parents, values, nin)  # kept as a broadcast view
    # a None in place of each input whose value is not read, then the static parameters
    saved = values[primitive.read_values] + primitive.unread + values[nin:]
    if None in parents:  # a constant input, or only constants
        saved = _own_constants(saved, parents, nin)
        if saved is None:
            return _wrap(out, None)  # nothing requires grad: nothing to record
    return _recorded(primitive, out, parents, saved)


def _stretched_and_read(primitive, parents, values, shape):
    """Did broadcasting stretch an elementwise input whose value the rules read? (It is then
    kept as a broadcast view of the result's shape, by _record.)"""
    for i in primitive.spreads_read:
        if parents[i] is not None and values[i].shape != shape:
            return True
    return False


def _bare(primitive, args):
    """No Tensor among the inputs (inside a rule, say): the bare NumPy call, with NumPy's own
    errors; a fused primitive outside its case runs its composite."""
    try:
        out = primitive.forward(*args)
    except Declined:
        return primitive.otherwise(*args)
    return out[0] if primitive.byproduct else out


def _record(primitive, out, parents, values, nin, byproduct=None):
    """:func:`apply`'s result for the cases its fast path leaves: a mode is on (anomaly checks,
    grad mode off), the node keeps a shape or an input's value at the result's shape (a
    stretched input whose value the rules read), the primitive takes any number of inputs,
    or its forward returned a by-product (kept last, after the static parameters)."""
    recording = state
    if not recording.plain:
        if recording.detect_anomaly:
            _check_finite(out, primitive, values, nin)
        if not recording.grad_enabled:
            return _wrap(out, None)
    constants = parents.count(None)
    if constants == nin:
        return _wrap(out, None)  # nothing requires grad: nothing to record
    shape, stretched = out.shape, False
    for i in primitive.spreads:  # did broadcasting stretch an elementwise input?
        if parents[i] is not None and values[i].shape != shape:
            stretched = True
    if primitive.reads is None or stretched and primitive.spreads_read:
        saved = _kept(primitive, values, parents, shape, stretched, nin)
    else:
        saved = values[primitive.read_values] + primitive.unread + values[nin:]
        if constants:
            saved = _own_constants(saved, parents, nin)
    if primitive.byproduct:
        saved += (byproduct,)
    node = Node(primitive, parents, saved, out if primitive.saves_out else None, shape,
                out.dtype, recording.tags)
    if not recording.plain:
        node.origin = user_frame()
    return _wrap(out, node)


def _own_constants(saved, parents, nin):
    """``saved`` with the array of each constant input that the rules read replaced by one
    the graph owns (:func:`_owned`); None when every input is a constant (nothing to record)."""
    count = parents.count(None)
    if count == nin:
        return None
    if count == 1:  # the usual case (a one-hot input, an initial state): no loop
        i = parents.index(None)
        constant = saved[i]
        if type(constant) is not np.ndarray or not constant.flags.writeable:
            return saved  # not read (None), a number, or an array that is read-only already
        return saved[:i] + (_owned(constant),) + saved[i + 1:]
    saved = list(saved)
    for i, parent in enumerate(parents):
        if parent is None and saved[i] is not None:
            saved[i] = _owned(saved[i])
    return tuple(saved)


def _kept(primitive, values, parents, shape, stretched, nin):
    """What a new node keeps when its primitive has no fixed plan (``reads`` is None), or when
    a stretched input's value is read: for each input, its array, its shape, or nothing, as
    ``primitive.keeps`` says; then the static parameters. A constant's array is kept as the
    graph's own (:func:`_owned`); a stretched input's as a broadcast view of the result's
    shape, which costs no copy.

    A stretched input is not recorded as a node of its own: the engine sums its cotangent back
    to its own shape and stretches its tangent (``ops.broadcasting``, ``Node.spread``), so the
    rules only ever see inputs of the result's shape."""
    if primitive.keeps is None and primitive.saves == "-" and not stretched:
        return (None,) * nin + values[nin:]  # a variadic op whose rules read no input (stack)
    keeps = primitive.keeps or (primitive.saves or "v") * nin
    spreads = primitive.spreads if stretched else ()
    saved = list(values)
    for i in range(nin):
        keep = keeps[i]
        if keep == "-":
            saved[i] = None
        elif parents[i] is None:
            saved[i] = _owned(values[i]) if keep == "v" else _info(values[i])
        elif i in spreads and values[i].shape != shape:
            saved[i] = (np.broadcast_to(values[i], shape) if keep == "v" else
                        ArrayInfo(shape, values[i].dtype))
        elif keep == "s":
            saved[i] = ArrayInfo(values[i].shape, values[i].dtype)
    return tuple(saved)


def _info(constant):
    if type(constant) is np.ndarray:
        return ArrayInfo(constant.shape, constant.dtype)
    return ArrayInfo(np.shape(constant), np.result_type(constant))


def _owned(constant):
    """A constant the graph can keep: a writable array the caller owns is copied, so that
    changing it in place later cannot change a gradient computed from this graph."""
    if type(constant) is np.ndarray and constant.flags.writeable:
        constant = constant.copy()
        constant.flags.writeable = False  # ours now: never copied again
    return constant


class Primitive:
    """A differentiable operation: ``forward`` (NumPy), one VJP per input, one JVP.

    Call it like its forward function: ``prim(x, y, *params)``. On raw arrays it is the bare
    NumPy call; with a Tensor among its inputs it returns a Tensor, recorded when an input
    requires grad.

    ``saves`` has one letter per input (or one letter for all): ``"v"`` the rules read its
    values, ``"s"`` only its shape and dtype, ``"-"`` nothing; ``saves_out`` says whether they
    read the output. None keeps every input's value. ``broadcasts``: True when every input
    is elementwise with the output (NumPy broadcasting applies), or the indices of the inputs
    that are (``affine``'s added term); the engine undoes their broadcasting. ``nin=None``
    takes any number of inputs (``stack``): every argument but the last ``statics``.
    ``byproduct=True``: the forward returns ``(out, byproduct)``, an array it computed on the
    way that the rules can reuse (a cross-entropy's softmax); the node keeps it after the
    static parameters, so the rules receive it as their last argument.
    """

    def __init__(self, name, forward, vjps, jvp, nin, saves=None, saves_out=True,
                 broadcasts=False, doc=None, statics=0, otherwise=None, byproduct=False):
        self.name = name
        self.forward = forward
        self.vjps = vjps   # vjps[i](g, out, *args): the cotangent for input i
        self.jvp = jvp     # jvp(tangents, out, *args): the tangent of the output
        self.nin = nin     # the number of inputs; None: all the arguments but the last
        self.statics = statics  # ``statics`` (stack's axis), however many inputs are given
        self.saves = saves  # None: every input's value (or the letter for all, if one given)
        self.saves_out = saves_out
        # what to keep of each input, spelled out once (variadic primitives decide per call)
        self.keeps = (tuple(saves) if saves and len(saves) == nin and nin
                      else None if nin is None else tuple((saves or "v") * nin))
        # the inputs that are elementwise with the output, which broadcasting may stretch
        self.spreads = (tuple(range(nin or 0)) if broadcasts is True
                        else tuple(broadcasts) if broadcasts else ())
        # What the node keeps, when it can be decided once here (every input's keep is its value
        # or nothing, and the inputs read come first): ``reads``, the number of leading inputs
        # whose values the rules read (``read_values``: their slice); a None (``unread``)
        # stands for each of the rest; the static parameters follow (tanh: 0 read, (None,);
        # affine: 2 read, (None,)). None: each call decides (a shape is kept, an unread input
        # comes before a read one, or the number of inputs varies).
        keeps = self.keeps or ()
        read = keeps.index("-") if "-" in keeps else len(keeps)
        fixed = nin is not None and "s" not in keeps and "v" not in keeps[read:]
        self.reads = read if fixed else None
        self.read_values, self.unread = slice(read), (None,) * (len(keeps) - read)
        # the elementwise inputs whose values the rules read: stretched, they are kept as a
        # broadcast view of the result's shape (the rules see every input at that shape)
        self.spreads_read = tuple(i for i in self.spreads if keeps and keeps[i] == "v")
        # A fused primitive: its forward handles a common case and raises Declined for the
        # rest, which ``otherwise`` (the composite, built from other primitives) computes.
        self.otherwise = otherwise
        self.byproduct = byproduct
        self.__doc__ = doc or forward.__doc__
        if type(self) is Primitive:  # the common plans have their calls spelled out (below)
            self.__class__ = _plan_class(self)

    __call__ = apply  # calling a primitive runs it: prim(x, y, *params) is apply(prim, x, ...)

    def __repr__(self):
        return f"<primitive {self.name}>"


# -- the common plans, spelled out -------------------------------------------------------------
# A primitive of one input (tanh, exp, a reduction), of two (mul, add, matmul) or of affine's
# three, whose node keeps a plan fixed in advance, is an instance of one of the classes below
# (Primitive.__init__ picks it): the steps of apply, with the inputs as named parameters rather
# than a tuple taken apart in a loop, the forward called with them directly and the kept
# arguments written as a tuple. A recurrent step is a few such calls, and a general loop over
# the inputs is a measurable share of their cost at small sizes. What a class does not cover
# (a raw array where it expects a Tensor, a mode, a stretched input that is read) goes to apply
# or to _record, as before.

class _OneInput(Primitive):
    """One input, a fixed plan: its value kept or not."""

    def __call__(self, x, *statics):
        if not isinstance(x, Tensor):
            return _bare(self, (x, *statics))
        value = x._value
        try:
            out = self.forward(value, *statics)
        except Declined:
            return self.otherwise(x, *statics)
        except (ValueError, TypeError, IndexError) as error:
            raise _explained(error, self, (value, *statics), 1) from error
        if type(out) is not _ndarray:
            out = np.asarray(out)
        parent = x.node
        if parent is None:
            return _wrap(out, None)  # a Tensor that does not require grad: nothing to record
        if not state.plain:
            return _record(self, out, (parent,), (value, *statics), 1)
        return _recorded(self, out, (parent,),
                         ((value,) if self.reads else self.unread) + statics)


class _TwoInputs(Primitive):
    """Two inputs (either may be a constant), a fixed plan: both values kept, or neither;
    when kept, both are elementwise (``spreads_read`` is (0, 1)) or neither is (matmul)."""

    def __call__(self, x, y, *statics):
        x_tensor, y_tensor = isinstance(x, Tensor), isinstance(y, Tensor)
        if not (x_tensor or y_tensor):
            return _bare(self, (x, y, *statics))
        parents = (x.node if x_tensor else None, y.node if y_tensor else None)
        values = (x._value if x_tensor else x, y._value if y_tensor else y)
        try:
            out = self.forward(*values, *statics)
        except Declined:
            return self.otherwise(x, y, *statics)
        except (ValueError, TypeError, IndexError) as error:
            raise _explained(error, self, values + statics, 2) from error
        if type(out) is not _ndarray:
            out = np.asarray(out)
        shape = out.shape
        if not state.plain or self.spreads_read and (  # a stretched input kept as a view
                parents[0] is not None and values[0].shape != shape
                or parents[1] is not None and values[1].shape != shape):
            return _record(self, out, parents, values + statics, 2)
        saved = (values if self.reads else self.unread) + statics
        if None in parents:  # a constant input, or only constants
            saved = _own_constants(saved, parents, 2)
            if saved is None:
                return _wrap(out, None)
        return _recorded(self, out, parents, saved)


class _Affine(Primitive):
    """Three inputs, the values of the first two kept and not the third's (affine's plan:
    x W + c), with Tensors for the last two; x may be a constant array."""

    def __call__(self, x, W, c, *statics):
        if statics or not (isinstance(W, Tensor) and isinstance(c, Tensor)):
            return apply(self, x, W, c, *statics)
        if isinstance(x, Tensor):
            parents, x_value = (x.node, W.node, c.node), x._value
        else:  # a constant array (a one-hot input, say)
            parents, x_value = (None, W.node, c.node), x
        W_value, c_value = W._value, c._value
        try:
            out = self.forward(x_value, W_value, c_value)
        except Declined:
            return self.otherwise(x, W, c)
        except (ValueError, TypeError, IndexError) as error:
            raise _explained(error, self, (x_value, W_value, c_value), 3) from error
        if type(out) is not _ndarray:
            out = np.asarray(out)
        if not state.plain:
            return _record(self, out, parents, (x_value, W_value, c_value), 3)
        if parents[0] is None and parents[1] is not None and parents[2] is not None:
            # x alone is a constant (the usual case): kept as the graph's own (_own_constants)
            if type(x_value) is _ndarray and x_value.flags.writeable:
                x_value = _owned(x_value)
        elif None in parents:  # other constants, or only constants
            saved = _own_constants((x_value, W_value, None), parents, 3)
            return _wrap(out, None) if saved is None else _recorded(self, out, parents, saved)
        return _recorded(self, out, parents, (x_value, W_value, None))


def _recorded(primitive, out, parents, saved):
    """The Tensor around ``out`` and its new node (the fields Node.__init__ sets, set here)."""
    node = _new_node(Node)
    node.serial = next_serial()
    node.primitive = primitive
    node.parents = parents
    node.saved = saved
    node.out = out if primitive.saves_out else None
    node.shape = out.shape
    node.dtype = out.dtype
    node.tags = state.tags
    node.retains_grad = False
    result = _new_tensor(Tensor)
    result._value = out
    result.node = node
    return result


def _plan_class(primitive):
    """The class that spells out ``primitive``'s plan, or Primitive (apply decides per call)."""
    if primitive.reads is None or primitive.byproduct:
        return Primitive  # no fixed plan, or a by-product to keep: apply and _record
    if primitive.nin == 1 and not primitive.spreads_read:
        return _OneInput
    if primitive.nin == 2 and primitive.reads in (0, 2) and len(primitive.spreads_read) != 1:
        return _TwoInputs
    if primitive.nin == 3 and primitive.keeps == ("v", "v", "-"):
        return _Affine
    return Primitive


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


def defprimitive(forward, vjp, jvp, *, name=None, saves=None, saves_out=True, broadcasts=False,
                 doc=None, otherwise=None, byproduct=False):
    """Declare a primitive from its forward function and its derivative rules.

    ``vjp`` and ``jvp`` are one rule each for a one-input primitive, or tuples with one rule
    per input. Rules receive the output and all arguments (inputs, then static parameters)::

        softplus = mg.defprimitive(
            lambda x: np.logaddexp(0.0, x),
            vjp=lambda g, out, x: g * mg.sigmoid(x),          # d/dx log(1 + e^x) = sigmoid(x)
            jvp=lambda x_dot, out, x: x_dot * mg.sigmoid(x),
            name="softplus", saves="v", saves_out=False)

    Write the rules with microgradrnn operations (``mg.sigmoid``, operators, ``mg.sum``...), not
    with ``np.*`` functions: then they run on raw arrays during an ordinary backward pass and
    on Tensors under ``create_graph=True``, so the primitive supports derivatives of any order.

    ``saves`` (one letter per input: ``"v"`` value, ``"s"`` shape only, ``"-"`` nothing) and
    ``saves_out`` say what the rules read; the graph keeps only that, so intermediate results
    can be freed. The default keeps everything, which is always right. ``broadcasts=True``
    declares an elementwise primitive whose inputs follow NumPy broadcasting (or pass the
    indices of the inputs that do): its rules then see those inputs at the result's shape, and
    the engine sums their cotangents back to their own shapes.
    ``otherwise`` makes a fused primitive: a forward that handles
    only a common case raises :class:`Declined` for the rest, and ``otherwise`` (a function of
    the same arguments, written with other operations) computes those.
    ``byproduct=True``: the forward returns ``(out, byproduct)``, and the rules receive the
    by-product (an array the graph owns) as their last argument, to reuse work the forward did;
    it is a raw array, so a rule uses it only when its inputs are raw arrays too (on Tensors,
    under ``create_graph``, a rule recomputes it from the inputs, which records its derivative).
    Check a new primitive with :func:`microgradrnn.gradcheck.check_primitive`.
    """
    vjps = tuple(vjp) if isinstance(vjp, (tuple, list)) else (vjp,)
    jvps = tuple(jvp) if isinstance(jvp, (tuple, list)) else (jvp,)
    if len(vjps) != len(jvps):
        raise ValueError(f"defprimitive: {len(vjps)} VJP rules but {len(jvps)} JVP rules; "
                         "give one of each per input")
    if broadcasts not in (True, False) and not set(broadcasts) <= set(range(len(vjps))):
        raise ValueError(f"defprimitive: broadcasts={broadcasts!r} must be True, False or a "
                         f"tuple of input indices below {len(vjps)}")
    if saves is not None and (len(saves) != len(vjps) or set(saves) - set("vs-")):
        raise ValueError(f"defprimitive: saves={saves!r} needs one letter per input "
                         f"({len(vjps)}), each 'v' (value), 's' (shape) or '-' (nothing)")
    return Primitive(name or forward.__name__, forward, vjps, _sum_of_input_jvps(jvps),
                     nin=len(vjps), saves=saves, saves_out=saves_out, broadcasts=broadcasts,
                     doc=doc, otherwise=otherwise, byproduct=byproduct)


def _explained(error, primitive, args, nin):
    """NumPy's error again, prefixed with the op and the input shapes (and, for a broadcasting
    op, what broadcasting needs)."""
    message = f"{primitive.name}: cannot apply to inputs of shapes {_describe(args, nin)}: {error}"
    if primitive.spreads and isinstance(error, ValueError):
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
    shapes = ", ".join(str(p.shape if p is not None else shape_of(a))
                       for p, a in zip(node.parents, node.saved))
    raise AnomalyError(
        f"detect_anomaly: the VJP of {node.primitive.name} produced a non-finite cotangent "
        f"for input {input_index}; input shapes {shapes}; scope tags {dict(node.tags or {})}; "
        f"{made}")
