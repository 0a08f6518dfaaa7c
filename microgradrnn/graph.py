"""The graph: the node record, the recording state, and the iterative walks.

Every value computed from a tensor that requires grad is recorded as a :class:`Node`:
the primitive that made it, its inputs as an ordered tuple (so ``a + a`` is two edges), the
arguments the primitive was called with, and the scope tags that were active. Outputs point
to their inputs and never the other way round, so a graph lives exactly as long as its output
is referenced: no reference cycles, nothing for the garbage collector to find.

This module holds no mathematics. The walks are iterative, so a graph of a million nodes is
walked without recursion.
"""
from __future__ import annotations

import itertools
import operator
import os
import sys

__all__ = ["Node", "state", "backward_order", "forward_order", "nodes_leading_to", "user_frame"]


class Node:
    """One recorded value: an array plus, for a computed value, how it was made.

    ``parents[i]`` is the i-th input when that input is a node that requires grad, else None
    (a constant). ``args`` holds the raw values the primitive was called with: the inputs'
    arrays first (one per parent), then its static parameters (an axis, a shape, an index).
    Leaves have ``primitive is None`` and no parents. ``grad`` is filled by ``backward`` on
    leaves and on nodes that asked for it (``retains_grad``). ``serial`` numbers nodes in the
    order they were created: a node is always created after its inputs.
    """

    __slots__ = ("_value", "requires_grad", "grad", "name", "primitive", "parents", "args",
                 "tags", "retains_grad", "origin", "serial", "__weakref__")

    def _init(self, value, requires_grad, primitive, parents, args, tags, name=None):
        self.serial = next_serial()
        self._value = value
        self.requires_grad = requires_grad
        self.grad = None
        self.name = name
        self.primitive = primitive
        self.parents = parents
        self.args = args
        self.tags = tags
        self.retains_grad = False
        self.origin = None

    @property
    def is_leaf(self) -> bool:
        """True for a value the user made (a parameter, an input, a constant), not an op result."""
        return self.primitive is None


class _RecordingState:
    """What the ops read when they record: grad mode, the current scope tags, anomaly mode.

    One process-wide object (like NumPy's error state); the context managers in
    ``microgradrnn.autodiff`` set it and restore it on exit.
    """

    __slots__ = ("grad_enabled", "tags", "detect_anomaly")

    def __init__(self):
        self.grad_enabled = True
        self.tags = None
        self.detect_anomaly = False


state = _RecordingState()


next_serial = itertools.count().__next__
_serial_of = operator.attrgetter("serial")


def backward_order(outputs) -> list:
    """Every node reachable from ``outputs`` through recorded parents, consumers first.

    A node is created after its inputs, so its serial number is larger than theirs: sorting the
    reachable nodes by decreasing serial number puts every node after all of its consumers,
    which is the order reverse mode needs (a node's cotangent is complete, the sum over all its
    consumers, before it is passed on). The search is an explicit stack, never recursion.
    """
    seen = set(outputs)
    found = list(dict.fromkeys(outputs))
    stack = list(found)
    while stack:
        for parent in stack.pop().parents:
            if parent is not None and parent not in seen:
                seen.add(parent)
                found.append(parent)
                stack.append(parent)
    found.sort(key=_serial_of, reverse=True)  # nearly sorted already: a depth-first search
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


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def user_frame():
    """(filename, line number, function name) of the first caller outside this package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return None
    return (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
