"""The engine: reverse mode (backward), forward mode (tangent propagation) and the contexts
that control recording.

Reverse mode walks the recorded graph once, from the outputs back to the inputs, consumers
before the nodes they consume (``graph.backward_order``). Each node pops its cotangent ``g``,
asks its primitive for one VJP per recorded input, and sends each result to that input with
:func:`send` — the single place where the cotangents of a node with several consumers are
summed. For a recurrent weight used at T time steps that sum *is* backpropagation through
time's "add up the gradients of every unrolled copy". :func:`record_edge_grads` switches on a
record of every (consumer, input, gradient) that passes through :func:`send`.

Forward mode walks the same graph the other way, inputs first, and applies each primitive's
JVP rule to the tangents of its inputs.

With ``create_graph=True`` the rules receive the graph's own Tensors instead of raw arrays, so
the derivatives they compute are recorded too, and can be differentiated again.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from .graph import Node, backward_order, nodes_leading_to, state
from .ops import _core
from .ops._core import check_cotangent, shape_of
from .ops.broadcasting import broadcast_to, spread_tangent, unbroadcast, unspread

__all__ = ["backward", "backward_pass", "forward_pass", "send", "no_grad", "enable_grad",
           "is_grad_enabled", "scope", "untagged", "detect_anomaly", "record_edge_grads", "EdgeGrad"]


class EdgeGrad(NamedTuple):
    """What one consumer sent one of its inputs during a backward pass."""
    consumer: Node   # the node whose VJP produced the gradient
    input: Node      # the node that received it
    grad: Any        # the gradient (an array; a Tensor under create_graph=True)


def _node_of(x):
    return x if isinstance(x, Node) else x.node


class EdgeRecorder:
    """The edges seen by :func:`send` while :func:`record_edge_grads` is active."""

    def __init__(self, only=None):
        self.only = None if only is None else {_node_of(x) for x in only}
        self.edges: list[EdgeGrad] = []

    def into(self, x):
        """The edges that ended at ``x`` (a Tensor or a node), in the order they were sent."""
        node = _node_of(x)
        return [edge for edge in self.edges if edge.input is node]


_recorder: EdgeRecorder | None = None


def send(grads, consumer, node, g, owned):
    """Add the cotangent ``g`` that ``consumer`` sends to ``node``: the one fan-out sum.

    A node consumed k times receives k cotangents; its total is their sum (the multivariate
    chain rule). The first one is kept as it came (a rule may hand the same array to several
    inputs); the second makes a new array that this pass owns (``owned``), and later ones are
    added into it in place. With recording on, the single edge is also written down.
    """
    if _recorder is not None and (_recorder.only is None or node in _recorder.only):
        _recorder.edges.append(EdgeGrad(consumer, node, g))
    previous = grads.get(node)
    if previous is None:
        grads[node] = g
    elif node in owned and type(g) is not _core.Tensor:
        previous += g
    else:
        total = previous + g
        grads[node] = total
        if type(total) is np.ndarray:
            owned.add(node)


def _freeze(value):
    """Mark an array the engine made read-only. Under create_graph, rules mix such raw arrays
    with Tensors; recorded ops would otherwise copy every writable constant they keep."""
    if type(value) is np.ndarray:
        value.flags.writeable = False
    return value


def _traced(node):
    """The node's output and arguments as Tensors on the graph (for create_graph), so that
    the rules evaluated on them are recorded in turn. An input that the op broadcast is
    broadcast again, on the graph, from its own array."""
    wrap = _core.Tensor._wrap
    parents, saved, spread = node.parents, node.saved, node.spread
    args = []
    for i, (parent, a) in enumerate(zip(parents, saved)):
        if parent is not None and type(a) is np.ndarray:
            if spread is not None and spread[i] is not None:
                a = broadcast_to(wrap(unspread(a, spread[i]), parent), node.shape)
            else:
                a = wrap(a, parent)
        args.append(a)
    return (None if node.out is None else wrap(node.out, node)), (*args, *saved[len(parents):])


def backward_pass(outputs, seeds, wanted=None, create_graph=False, order=None, owned=None):
    """Propagate ``seeds`` (one cotangent per output node) back through the graph.

    Returns {node: total cotangent} for the ``wanted`` nodes; when ``wanted`` is None, for every
    leaf reached and every node that asked to retain its gradient. Only branches that lead to a
    wanted node are walked. ``order`` may pass ``backward_order(outputs)`` computed once, when
    the same graph is walked many times (Jacobians, Gauss-Newton products). ``owned`` (a set)
    receives the nodes whose returned cotangent is an array this pass made (a sum of several
    contributions), which the caller may keep without copying.
    """
    if order is None:
        order = backward_order(outputs)
    leading = None if wanted is None else nodes_leading_to(order, wanted)
    grads = {}
    owned = set() if owned is None else owned
    for out, seed in zip(outputs, seeds):
        grads[out] = seed if out not in grads else grads[out] + seed
    reached = {}
    if wanted is None and not create_graph and not state.detect_anomaly and _recorder is None:
        _plain_walk(order, grads, owned, reached)
        return reached
    check = state.detect_anomaly
    pop = grads.pop
    for node in order:
        g = pop(node, None)
        if g is None:
            continue  # nothing flows here, or this branch leads to no wanted node
        primitive = node.primitive
        if (node in wanted) if wanted is not None else (primitive is None or node.retains_grad):
            reached[node] = g
        if primitive is None:
            continue  # a leaf: nothing further back
        if create_graph:
            out, args = _traced(node)
        else:
            out, args = node.out, node.saved
        spreads, shape, vjps = primitive.spreads, node.shape, primitive.vjps
        for i, parent in enumerate(node.parents):
            if parent is not None and (leading is None or parent in leading):
                g_input = vjps[i](g, out, *args)
                if i in spreads and parent.shape != shape:  # broadcast: summed back
                    g_input = unbroadcast(g_input, parent.shape)
                if check:
                    check_cotangent(g_input, node, i)
                if create_graph:
                    _freeze(g_input)
                send(grads, node, parent, g_input, owned)
    return reached


def _plain_walk(order, grads, owned, reached):
    """The loop of :func:`backward_pass` for its most common call (an ordinary
    ``loss.backward()``: every branch, raw arrays, no anomaly checks, no edge recording),
    with those choices taken once instead of at every node: the same steps as the general
    loop, with :func:`send`'s sum written in place (this loop runs once per edge of the
    graph, and a function call there is a measurable share of a small model's backward)."""
    pop, get = grads.pop, grads.get
    for node in order:
        g = pop(node, None)
        if g is None:
            continue
        primitive = node.primitive
        if primitive is None:
            reached[node] = g
            continue
        if node.retains_grad:
            reached[node] = g
        spreads, shape, vjps = primitive.spreads, node.shape, primitive.vjps
        arguments = (g, node.out) + node.saved  # every rule's arguments, built once per node
        for i, parent in enumerate(node.parents):
            if parent is not None:
                g_input = vjps[i](*arguments)
                if i in spreads and parent.shape != shape:  # broadcast: summed back
                    g_input = unbroadcast(g_input, parent.shape)
                previous = get(parent)
                if previous is None:
                    grads[parent] = g_input
                elif parent in owned:
                    previous += g_input
                else:
                    total = grads[parent] = previous + g_input
                    if type(total) is np.ndarray:
                        owned.add(parent)


def forward_pass(order, seeds, create_graph=False):
    """Propagate tangents forward: ``seeds`` maps nodes to their tangents, ``order`` lists
    the nodes inputs first (``forward_order``). Returns {node: tangent} for every node whose
    tangent is not identically zero."""
    tangents = dict(seeds)
    get = tangents.get
    for node in order:
        primitive = node.primitive
        if primitive is None or node in seeds:
            continue
        node_tangents = tuple(map(get, node.parents))  # None for constants and zero tangents
        for tangent in node_tangents:
            if tangent is not None:
                break
        else:
            continue  # no input carries a tangent: this node's tangent is zero
        spread = node.spread
        if spread is not None:
            node_tangents = tuple(t if t is None or own is None else
                                  spread_tangent(t, own, node.shape)
                                  for t, own in zip(node_tangents, spread))
        if create_graph:
            out, args = _traced(node)
        else:
            out, args = node.out, node.saved
        tangent = primitive.jvp(node_tangents, out, *args)
        if tangent is not None:
            tangents[node] = _freeze(tangent) if create_graph else tangent
    return tangents


def checked_seed(output, grad, op):
    """The cotangent to start reverse mode from the Tensor ``output``: ones for a scalar,
    else ``grad``, checked."""
    if not isinstance(output, _core.Tensor):
        raise TypeError(f"{op}: expected a Tensor output, got {type(output).__name__}")
    value = output._value
    if output.node is None:
        raise RuntimeError(
            f"{op}: the output (shape {value.shape}) does not require grad, so it has no graph "
            "to differentiate: it was computed under mg.no_grad(), from detached tensors, or "
            "from tensors created without requires_grad=True")
    if grad is None:
        if value.size != 1:
            raise RuntimeError(
                f"{op}: the output has shape {value.shape}, not a scalar; pass the cotangent "
                f"explicitly (an array of shape {value.shape}), or reduce the output first "
                "(for example .sum())")
        return np.ones_like(value)
    if shape_of(grad) != value.shape:
        raise ValueError(f"{op}: the gradient given has shape {shape_of(grad)} but the output "
                         f"has shape {value.shape}; they must be equal")
    if isinstance(grad, _core.Tensor):
        return grad
    grad = np.asarray(grad)
    if grad.dtype.kind not in "fiu":
        raise TypeError(f"{op}: the gradient given has dtype {grad.dtype}; pass a float array")
    return _freeze(np.array(grad, dtype=value.dtype))  # our own copy, read-only


def backward(output, grad=None, create_graph=False):
    """Accumulate d(output)/d(leaf) into ``leaf.grad`` for every leaf that requires grad (and
    into ``.grad`` of every node that called ``retain_grad()``), as PyTorch's ``backward``."""
    seed = checked_seed(output, grad, "backward")
    owned = set()
    reached = backward_pass([output.node], [seed], create_graph=create_graph, owned=owned)
    for node, g in reached.items():
        if type(g) is not _core.Tensor and not (node in owned and g.dtype == node.dtype):
            g = np.array(g, dtype=node.dtype)  # a fresh array the caller owns, in its dtype
        node.grad = g if node.grad is None else node.grad + g


class _Setting:
    """A context manager that sets one field of the recording state and restores it on exit
    (a small class rather than a generator: cheap to enter)."""

    __slots__ = ("name", "value", "previous")

    def __init__(self, name, value):
        self.name, self.value = name, value

    def __enter__(self):
        self.previous = getattr(state, self.name)
        setattr(state, self.name, self.value)
        return self

    def __exit__(self, *exc):
        setattr(state, self.name, self.previous)
        return False


def no_grad():
    """Inside, operations are not recorded: results are constants (for evaluation, updates)."""
    return _Setting("grad_enabled", False)


def enable_grad():
    """Inside, operations are recorded again (even within ``no_grad``)."""
    return _Setting("grad_enabled", True)


def is_grad_enabled() -> bool:
    return state.grad_enabled


class scope:
    """Tag every node created inside with ``tags`` (e.g. ``scope(t=3, module="rnn")``).

    Scopes nest; the tags merge and an inner key wins. Drawing and the BPTT tools group nodes
    by these tags (one cluster, one gradient contribution per time step ``t``). (A class, not
    a function returning one: an RNN enters a scope at every time step.)
    """

    __slots__ = ("tags", "previous")

    def __init__(self, **tags):
        outer = state.tags
        self.tags = MappingProxyType({**outer, **tags} if outer else tags)  # a new dict: ours

    def __enter__(self):
        self.previous, state.tags = state.tags, self.tags
        return self

    def __exit__(self, *exc):
        state.tags = self.previous
        return False


class time_steps:
    """One scope for a loop over time: ``with time_steps(module) as steps:``, then
    ``steps.at(t)`` at the start of each step tags every node created after it with
    ``t=t, module=module`` (merged into the tags of the scope around the loop), as entering
    ``scope(t=t, module=module)`` at every step would, at a fraction of the cost (an RNN does
    this T times per sequence). The tags in force before the loop come back at its end."""

    __slots__ = ("module", "outer")

    def __init__(self, module):
        self.module = module

    def __enter__(self):
        self.outer = state.tags
        return self

    def at(self, t):
        """From here on, nodes belong to step ``t``."""
        outer = self.outer
        state.tags = (_step_tags(t, self.module) if outer is None else
                      MappingProxyType({**outer, "t": t, "module": self.module}))

    def __exit__(self, *exc):
        state.tags = self.outer
        return False


@functools.lru_cache(maxsize=4096)
def _step_tags(t, module):
    """The tags of step ``t`` of ``module`` (read-only, so one mapping serves every graph)."""
    return MappingProxyType({"t": t, "module": module})


def untagged():
    """Inside, nodes carry no scope tags, whatever scope the caller is in (a drawing that
    records a fresh step of its own)."""
    return _Setting("tags", None)


def detect_anomaly():
    """Inside, the first op whose forward value or backward cotangent holds a NaN or an Inf
    raises :class:`AnomalyError`, naming the op, its input shapes, its scope tags and the line
    of user code that created it. Slower: for debugging."""
    return _Setting("detect_anomaly", True)


@contextmanager
def record_edge_grads(only=None):
    """Record what each consumer sends each input during backward passes inside the block.

    ``with mg.record_edge_grads() as rec: loss.backward()`` leaves ``rec.edges``, a list of
    :class:`EdgeGrad` (consumer, input, grad); ``only=[W]`` keeps just the edges into ``W``.
    For a shared weight these are the per-step terms whose sum is its gradient.
    """
    global _recorder
    previous, _recorder = _recorder, EdgeRecorder(only)
    try:
        yield _recorder
    finally:
        _recorder = previous
