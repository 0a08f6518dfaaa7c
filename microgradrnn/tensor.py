"""``Tensor``: an array value together with the node that made it.

A Tensor holds a NumPy array (float64 unless another dtype is asked for) and, when it requires
grad, its :class:`~microgradrnn.graph.Node` in the graph: a leaf node for a parameter or an
input, an op node for a computed value. The node keeps only what its derivative rules need,
not the value, so dropping an intermediate Tensor frees its array unless a rule needs it.
Each operator is a one-line delegation to an operation in :mod:`microgradrnn.ops`; Python
scalars and NumPy arrays are accepted on either side and act as constants.

Arrays that a graph may have saved are never changed in place: every public way to reach a
tensor's array (``.value``, ``.numpy()``, ``np.asarray``) hands it out read-only, and constants
given as writable arrays are copied when an op records them. A gradient can therefore never be
computed from values that changed after the forward pass.
"""
from __future__ import annotations

import numpy as np

from . import autodiff, ops
from .graph import Node, detached_view
from .ops._core import register_tensor_type, value_of

__all__ = ["Tensor", "Parameter", "tensor"]

_new = object.__new__


def _as_array(data, dtype, op):
    """``data`` as a new float (or requested dtype) array the tensor owns, or a clear error."""
    if isinstance(data, Tensor):
        raise TypeError(f"{op}: the data is already a Tensor; a Tensor never wraps another one. "
                        "Use it directly, or t.detach() for the same values without a graph")
    if isinstance(data, (list, tuple)):
        _refuse_nested_tensors(data, op)
    try:
        array = np.array(data, copy=True)
    except (ValueError, TypeError) as error:
        raise TypeError(f"{op}: cannot make an array of the data given ({error})") from None
    kind = array.dtype.kind
    if kind not in "biuf":
        what = {"c": "complex", "O": "object", "U": "string", "S": "bytes"}.get(kind, "non-numeric")
        raise TypeError(f"{op}: {what} data (dtype {array.dtype}) cannot be a tensor: "
                        "microgradrnn differentiates real-valued arrays; pass float data"
                        + ("; for complex values use separate real and imaginary tensors"
                           if kind == "c" else ""))
    target = np.dtype(np.float64 if dtype is None else dtype)
    if target.kind not in "biuf":
        raise TypeError(f"{op}: dtype {target} is not supported; use a float dtype "
                        "(float64, the default, or float32)")
    return array.astype(target, copy=False)


def _refuse_nested_tensors(data, op):
    stack = [(data, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, Tensor):
            where = "".join(f"[{i}]" for i in path)
            raise TypeError(f"{op}: the data holds a Tensor at {where}; converting it would cut "
                            "it from its graph. Use mg.stack([...]) to combine Tensors, or "
                            "t.detach() if you mean to drop the gradient")
        if isinstance(item, (list, tuple)):
            stack.extend((sub, path + (i,)) for i, sub in enumerate(item))


class Tensor:
    """A NumPy array that records the operations applied to it.

    ``Tensor(data, requires_grad=False, dtype=None, name=None)``: the data is copied into a
    new array, float64 unless ``dtype`` is given. With ``requires_grad=True`` (float dtypes
    only) operations on it are recorded and ``backward`` fills its ``.grad``.
    """

    __slots__ = ("_value", "node", "_name", "__weakref__")

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        value = _as_array(data, dtype, "Tensor")
        if requires_grad and value.dtype.kind != "f":
            raise TypeError(f"Tensor: requires_grad=True needs a float dtype, got {value.dtype}; "
                            "gradients of integer or boolean data are not defined")
        self._value = value
        self.node = _leaf_node(value, name) if requires_grad else None
        self._name = name

    @staticmethod
    def _wrap(value, node):
        """A Tensor around an array the library made (no copy, no checks): how ops return.
        (An op's result has no name of its own: ``_name`` is left unset, read as None.)"""
        t = _new(Tensor)
        t._value = value
        t.node = node
        return t

    # -- the graph side ----------------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        """True when operations on this tensor are recorded (it has a node)."""
        return self.node is not None

    @property
    def is_leaf(self) -> bool:
        """True unless the tensor was computed by a recorded operation."""
        return self.node is None or self.node.primitive is None

    @property
    def grad(self):
        """The gradient ``backward`` accumulated here (leaves, or after ``retain_grad()``)."""
        return None if self.node is None else self.node.grad

    @grad.setter
    def grad(self, value):
        if self.node is not None:
            self.node.grad = value
        elif value is not None:
            raise RuntimeError("grad: this tensor does not require grad, so it holds no gradient")

    @property
    def name(self):
        """A label (parameter names appear in drawings and error messages)."""
        return getattr(self, "_name", None) if self.node is None else self.node.name

    @name.setter
    def name(self, name):
        self._name = name
        if self.node is not None:
            self.node.name = name

    # -- the value ---------------------------------------------------------------------------

    @property
    def value(self) -> np.ndarray:
        """The array, read-only (a graph may have saved it); copy it to change it."""
        value = self._value
        if value.flags.writeable:
            value.flags.writeable = False
        return value

    @value.setter
    def value(self, new):
        """Rebind a leaf to a new array (how optimizers update parameters): recorded graphs
        keep the old array, so their gradients stay right."""
        if not self.is_leaf:
            raise AttributeError("value: only a leaf's value can be replaced; this tensor was "
                                 f"computed by {self.node.primitive.name}")
        new = np.asarray(value_of(new), dtype=self._value.dtype)
        new.flags.writeable = False
        node = self.node
        if node is not None and new.shape != node.shape:
            # A new shape makes a new leaf: the graphs recorded so far keep the old one, whose
            # shape their nodes were checked against (a gradient for it has the old shape).
            self.node = _leaf_node(new, node.name)
        self._value = new

    def numpy(self) -> np.ndarray:
        """The array (read-only), without the graph."""
        return self.value

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self._value.size != 1:
            raise ValueError(f"item: only a one-element tensor has an item; this one has "
                             f"shape {self._value.shape}")
        return self._value.item()

    shape = property(lambda self: self._value.shape, doc="The shape of the array.")
    dtype = property(lambda self: self._value.dtype, doc="The dtype of the array.")
    ndim = property(lambda self: self._value.ndim, doc="The number of axes.")
    size = property(lambda self: self._value.size, doc="The number of entries.")

    def __len__(self):
        if not self._value.ndim:
            raise TypeError("len() of a 0-dimensional tensor")
        return len(self._value)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __bool__(self):
        if self._value.size != 1:
            raise ValueError(f"the truth value of a tensor of shape {self._value.shape} is "
                             "ambiguous; use (t > 0).any() or .all() on a comparison")
        return bool(self._value)

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __repr__(self):
        extra = ""
        if self.name is not None:
            extra += f", name={self.name!r}"
        if not self.is_leaf:
            extra += f", primitive={self.node.primitive.name}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        body = np.array2string(self._value, separator=", ", prefix="Tensor(")
        return f"{type(self).__name__}({body}{extra})"

    # -- gradients ---------------------------------------------------------------------------

    def backward(self, grad=None, create_graph=False):
        """Add d(self)/d(leaf) to ``leaf.grad`` for every leaf that requires grad."""
        autodiff.backward(self, grad, create_graph)

    def retain_grad(self):
        """Ask ``backward`` to also fill ``.grad`` on this intermediate result."""
        if self.node is None:
            raise RuntimeError("retain_grad: this tensor does not require grad, so it never "
                               "receives one")
        self.node.retains_grad = True
        return self

    def zero_grad(self):
        """Forget the accumulated gradient (the same as ``t.grad = None``)."""
        self.grad = None

    def detach(self) -> "Tensor":
        """The same values as a constant: the graph is cut here (used by truncated BPTT)."""
        return Tensor._wrap(detached_view(self._value), None)

    # -- operators: each one line ------------------------------------------------------------

    def __add__(self, other): return ops.add(self, other)
    def __radd__(self, other): return ops.add(other, self)
    def __sub__(self, other): return ops.sub(self, other)
    def __rsub__(self, other): return ops.sub(other, self)
    def __mul__(self, other): return ops.mul(self, other)
    def __rmul__(self, other): return ops.mul(other, self)
    def __truediv__(self, other): return ops.div(self, other)
    def __rtruediv__(self, other): return ops.div(other, self)
    def __pow__(self, other): return ops.pow(self, other)
    def __rpow__(self, other): return ops.pow(other, self)
    def __matmul__(self, other): return ops.matmul(self, other)
    def __rmatmul__(self, other): return ops.matmul(other, self)
    def __neg__(self): return ops.neg(self)
    def __pos__(self): return self
    def __abs__(self): return ops.abs(self)
    def __getitem__(self, index): return ops.getitem(self, index)

    # Comparisons give boolean arrays: they are piecewise constant, with zero derivative, so
    # there is no graph to keep. ``==`` keeps Python's identity meaning (tensors are graph
    # nodes and are used as dictionary keys).
    def __lt__(self, other): return self._value < value_of(other)
    def __le__(self, other): return self._value <= value_of(other)
    def __gt__(self, other): return self._value > value_of(other)
    def __ge__(self, other): return self._value >= value_of(other)

    def __setitem__(self, index, value):
        raise TypeError("Tensor does not support item assignment: recorded values never change. "
                        "Build a new tensor instead (mg.where, mg.concatenate, mg.scatter_add)")

    # -- methods: the ops, as on a NumPy array -------------------------------------------------

    def exp(self): return ops.exp(self)
    def log(self): return ops.log(self)
    def tanh(self): return ops.tanh(self)
    def sigmoid(self): return ops.sigmoid(self)
    def relu(self): return ops.relu(self)
    def sqrt(self): return ops.sqrt(self)
    def abs(self): return ops.abs(self)
    def clip(self, low=None, high=None): return ops.clip(self, low, high)
    def sum(self, axis=None, keepdims=False): return ops.sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return ops.mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return ops.max(self, axis, keepdims)
    def min(self, axis=None, keepdims=False): return ops.min(self, axis, keepdims)
    def logsumexp(self, axis=None, keepdims=False): return ops.logsumexp(self, axis, keepdims)
    def reshape(self, *shape): return ops.reshape(self, _varargs(shape))
    def transpose(self, *axes): return ops.transpose(self, _varargs(axes) or None)
    def swapaxes(self, axis1, axis2): return ops.swapaxes(self, axis1, axis2)
    def broadcast_to(self, shape): return ops.broadcast_to(self, tuple(shape))
    def expand_dims(self, axis): return ops.expand_dims(self, axis)
    def squeeze(self, axis=None): return ops.squeeze(self, axis)
    T = property(lambda self: ops.transpose(self), doc="The tensor with its axes reversed.")

    # -- NumPy interoperability ------------------------------------------------------------------

    def __array__(self, dtype=None, copy=None):
        value = self.value
        if dtype is not None and np.dtype(dtype) != value.dtype:
            return value.astype(dtype)
        return value.copy() if copy else value

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        # ``ndarray <op> Tensor`` arrives here (NumPy calls the ufunc), as do np.exp(t) and
        # friends: those with a rule here work through the graph; the rest raise.
        if method == "__call__" and not kwargs:
            op = _UFUNC_OPS.get(ufunc)
            if op is not None:
                return op(*inputs)
            if ufunc in _PIECEWISE_CONSTANT_UFUNCS:
                return ufunc(*map(value_of, inputs))
        name = ufunc.__name__ + ("" if method == "__call__" else f".{method}")
        detail = f" with {', '.join(kwargs)}=" if kwargs else ""
        raise TypeError(
            f"np.{name}{detail} cannot be applied to a microgradrnn Tensor: there is no "
            "differentiation rule for it here, and applying it to the raw array would silently "
            "cut the graph. Use a microgradrnn operation (mg.exp, mg.tanh, mg.maximum, ...), "
            "add one with mg.defprimitive, or apply it to t.numpy() to drop gradients on purpose")

    def __array_function__(self, func, types, args, kwargs):
        op = _FUNCTION_OPS.get(func)
        if op is None:
            raise TypeError(
                f"np.{func.__name__} cannot be applied to a microgradrnn Tensor: it has no "
                "differentiation rule here, and the result would be cut from the graph. Use a "
                "microgradrnn operation, or apply it to t.numpy() to drop gradients on purpose")
        return op(*args, **kwargs)


def _varargs(items):
    """``reshape(2, 3)`` and ``reshape((2, 3))`` alike, as NumPy allows."""
    return tuple(items[0]) if len(items) == 1 and isinstance(items[0], (tuple, list)) else items


_UFUNC_OPS = {
    np.add: ops.add, np.subtract: ops.sub, np.multiply: ops.mul, np.divide: ops.div,
    np.negative: ops.neg, np.power: ops.pow, np.exp: ops.exp, np.log: ops.log,
    np.tanh: ops.tanh, np.sqrt: ops.sqrt, np.absolute: ops.abs, np.maximum: ops.maximum,
    np.minimum: ops.minimum, np.matmul: ops.matmul, np.positive: lambda x: x,
}
_PIECEWISE_CONSTANT_UFUNCS = {
    np.less, np.less_equal, np.greater, np.greater_equal, np.equal, np.not_equal,
    np.isfinite, np.isnan, np.isinf, np.signbit, np.sign, np.logical_not,
}
_FUNCTION_OPS = {
    np.sum: ops.sum, np.mean: ops.mean, np.max: ops.max, np.amax: ops.max, np.min: ops.min,
    np.amin: ops.min, np.reshape: ops.reshape, np.transpose: ops.transpose,
    np.swapaxes: ops.swapaxes, np.broadcast_to: ops.broadcast_to,
    np.expand_dims: ops.expand_dims, np.squeeze: ops.squeeze, np.concatenate: ops.concatenate,
    np.stack: ops.stack, np.split: ops.split, np.where: ops.where, np.clip: ops.clip,
    np.shape: lambda t: np.shape(value_of(t)), np.ndim: lambda t: np.ndim(value_of(t)),
    np.size: lambda t: np.size(value_of(t)),
}

register_tensor_type(Tensor)


def _leaf_node(value, name=None):
    """The node of a tensor that requires grad but was not computed: a parameter, an input."""
    node = Node(None, (), (), None, value.shape, value.dtype)
    if name is not None:
        node.name = name
    return node


class Parameter(Tensor):
    """A leaf that requires grad: a weight that training updates (``name`` labels drawings)."""

    __slots__ = ()

    def __init__(self, data, name=None, dtype=None):
        super().__init__(data, requires_grad=True, dtype=dtype, name=name)


def tensor(data, requires_grad=False, dtype=None, name=None) -> Tensor:
    """A new Tensor holding a copy of ``data`` (float64 unless ``dtype`` is given)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, name=name)
