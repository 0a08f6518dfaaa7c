"""The graph: the node record, the recording state, and the iterative walks.

Every operation on a tensor that requires grad records a :class:`Node`: the primitive, its
inputs as an ordered tuple of nodes (so ``a + a`` is two edges), what its derivative rules will
read, and the scope tags that were active. A node points to its inputs and never the other way
round, so a graph lives exactly as long as its output is referenced: no reference cycles,
nothing for the garbage collector to find.

A node is not its value. The value lives in the :class:`~microgradrnn.tensor.Tensor` the user
holds; the node keeps only what its rules need (for ``tanh`` the output, for ``add`` nothing),
so an intermediate result nobody needs is freed as soon as its Tensor is dropped.

This module holds no mathematics. The walks are iterative, so a graph of a million nodes is
walked without recursion.
"""
from __future__ import annotations

import itertools
import operator
import os
import sys
import weakref
from typing import NamedTuple

import numpy as np

__all__ = ["Node", "ArrayInfo", "state", "backward_order", "forward_order", "nodes_leading_to",
           "user_frame", "detached_view", "was_detached"]


class ArrayInfo(NamedTuple):
    """What a node keeps of an input whose rules need its shape but not its values."""
    shape: tuple
    dtype: np.dtype

    @property
    def ndim(self):
        return len(self.shape)


class Node:
    """How one value that requires grad was made, or, for a leaf, that it was given.

    * ``primitive``: the operation (None for a leaf: a parameter, an input);
    * ``parents[i]``: the node of input i, or None when input i is a constant;
    * ``saved``: the primitive's arguments as its rules read them: an input's array when they
      read its values, its :class:`ArrayInfo` when they need only its shape, None when they never
      look at it; then the static parameters (an axis, a shape, an index);
    * ``out``: the output array when the rules read it, else None;
    * ``spread`` (read off the inputs' nodes, not stored): None, or one entry per input: the
      input's own shape where an elementwise op broadcast it to the result's shape (the engine
      sums its cotangent back to that shape and broadcasts its tangent forward), None where it
      was not broadcast;
    * ``shape``, ``dtype``: of the value; ``tags``: the scope tags; ``serial``: the creation
      number (a node is always created after its inputs);
    * ``grad``: filled by ``backward`` on leaves and on nodes that asked (``retains_grad``);
      ``name`` (a parameter's), ``origin`` (the user's line, under ``detect_anomaly``): these
      are set on few nodes and read rarely, so they are class-level defaults until a node sets
      its own (in its ``__dict__``, made on first assignment): recording does not store them.

    ``__init__`` makes leaves; an op's node is filled field by field in
    :func:`microgradrnn.ops._core.apply` (a call per op saved), which must set the same fields
    (``tests/test_autodiff.py`` checks that it does).
    """

    __slots__ = ("primitive", "parents", "saved", "out", "shape", "dtype", "tags", "serial",
                 "retains_grad", "__dict__", "__weakref__")
    grad = None
    name = None
    origin = None

    def __init__(self, primitive, parents, saved, out, shape, dtype, tags=None):
        self.serial = next_serial()
        self.primitive = primitive
        self.parents = parents
        self.saved = saved
        self.out = out
        self.shape = shape
        self.dtype = dtype
        self.tags = tags
        self.retains_grad = False  # a slot, not a default: the backward walk reads it per node

    @property
    def spread(self):
        """Where this op broadcast an elementwise input (``primitive.spreads``) to its result's
        shape: per input, that input's own shape, or None (not stretched, or a constant); None
        when no input was stretched. An input's shape is its node's, so recording stores
        nothing for it; the backward walk makes the same comparison inline."""
        primitive = self.primitive
        if primitive is None or not primitive.spreads:
            return None
        parents, shape = self.parents, self.shape
        own = [None] * len(parents)
        for i in primitive.spreads:
            parent = parents[i]
            if parent is not None and parent.shape != shape:
                own[i] = parent.shape
        return None if own.count(None) == len(own) else tuple(own)

    @property
    def is_leaf(self) -> bool:
        """True for a value the user made (a parameter, an input), not an op result."""
        return self.primitive is None

    def __repr__(self):
        what = "leaf" if self.primitive is None else self.primitive.name
        label = f" {self.name!r}" if self.name else ""
        return f"<Node {what}{label} {self.shape}>"


class _RecordingState:
    """What the ops read when they record: grad mode, the current scope tags, anomaly mode.

    One process-wide object (like NumPy's error state); the context managers in
    ``microgradrnn.autodiff`` set it and restore it on exit. ``plain`` is derived, kept up to
    date by the two mode setters: True for the usual case (grad mode on, no anomaly checks),
    so that every recorded op tests one flag instead of two.
    """

    __slots__ = ("_grad_enabled", "_detect_anomaly", "tags", "plain")

    def __init__(self):
        self._grad_enabled, self._detect_anomaly, self.tags, self.plain = True, False, None, True

    @property
    def grad_enabled(self):
        return self._grad_enabled

    @grad_enabled.setter
    def grad_enabled(self, on):
        self._grad_enabled = on
        self.plain = on and not self._detect_anomaly

    @property
    def detect_anomaly(self):
        return self._detect_anomaly

    @detect_anomaly.setter
    def detect_anomaly(self, on):
        self._detect_anomaly = on
        self.plain = self._grad_enabled and not on


state = _RecordingState()


next_serial = itertools.count().__next__  # one number per node, in creation order
_serial_of = operator.attrgetter("serial")


def backward_order(outputs) -> list:
    """Every node reachable from ``outputs`` through recorded parents, consumers first.

    A node is created after its inputs, so its serial number is larger than theirs: sorting the
    reachable nodes by decreasing serial number puts every node after all of its consumers,
    which is the order reverse mode needs (a node's cotangent is complete, the sum over all its
    consumers, before it is passed on). The search is an explicit stack, never recursion.
    """
    seen = {None, *outputs}  # None (a constant input) counts as seen: it is never walked
    stack = list(seen - {None})
    pop, push, mark = stack.pop, stack.append, seen.add
    while stack:
        for parent in pop().parents:
            if parent not in seen:
                mark(parent)
                push(parent)
    seen.discard(None)
    found = list(seen)
    found.sort(key=_serial_of, reverse=True)
    return found


def forward_order(outputs) -> list:
    """The same nodes as :func:`backward_order`, inputs first (the order forward mode needs)."""
    order = backward_order(outputs)
    order.reverse()
    return order


def nodes_leading_to(order, targets) -> set:
    """The nodes of ``order`` (consumers first) from which some target can be reached.

    Reverse mode only needs to send cotangents along these: a branch that never reaches a
    requested input is not walked.
    """
    leading = set(targets)
    for node in reversed(order):  # inputs before consumers
        if node not in leading:
            for parent in node.parents:
                if parent in leading:
                    leading.add(node)
                    break
    return leading


_detached = weakref.WeakValueDictionary()  # id(array) -> array, for arrays made by detach()


def detached_view(array):
    """A read-only view of ``array`` marked as cut from its graph (``Tensor.detach``).

    A constant leaves no node in the graph; an op that reads it keeps the array itself. The
    mark lets a drawing tell a state cut by truncated BPTT from any other constant, and dies
    with the view (nothing is kept alive by it).
    """
    view = array.view()
    view.flags.writeable = False
    _detached[id(view)] = view
    return view


def was_detached(array) -> bool:
    """True when ``array`` is a view made by :func:`detached_view`."""
    return _detached.get(id(array)) is array


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_frame():
    """(filename, line number, function name) of the first caller outside this package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
