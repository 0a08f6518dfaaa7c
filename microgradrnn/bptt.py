"""Backpropagation through time: what each step contributes, truncated BPTT, and checkpointed
unrolling for long sequences.

Full BPTT needs no code here: unroll the model, take a loss, call ``backward``. The recurrent
weight is one leaf with one consumer per step, and the engine sums what they send. The tools
below look at, or limit, that sum.
"""
from __future__ import annotations

import math
from collections import deque
from typing import NamedTuple

import numpy as np

from .autodiff import no_grad, record_edge_grads, scope
from .graph import forward_order
from .ops import concatenate, reshape, split
from .ops._core import value_of
from .rtrl import RTRL  # forward in time: the same gradient, no unrolled graph (mg.bptt.RTRL)
from .transforms import checkpoint, grad

__all__ = ["sequence_loss", "Contributions", "contributions", "TruncatedBPTT",
           "checkpointed_loss", "RTRL"]

# Linear maps with one input that only move entries: a parameter passed through one of these
# outside the time loop is still "the same weight" at every step, so its per-step gradient can
# be pulled back through the map.
_VIEWS = {"reshape", "transpose", "getitem", "broadcast_to", "input"}


def sequence_loss(outputs, targets, loss_fn, steps="all", reduction="sum"):
    """The loss of a sequence of outputs: ``loss_fn(outputs[t], targets[t])`` at the chosen
    steps, summed or averaged over them.

    ``steps``: ``"all"``, ``"last"``, or a boolean mask of length T (the subset where the loss
    is taken). ``reduction``: ``"sum"`` or ``"mean"`` over those steps. The two differ by the
    factor 1/n, which plain SGD absorbs in its learning rate (the mean with rate n lr makes
    the same update as the sum with rate lr); adaptive optimizers (Adagrad, RMSprop, Adam)
    largely cancel the factor instead, and a clipping threshold means a different thing for
    each, so there the choice matters.
    """
    T = len(outputs)
    if isinstance(steps, str):
        if steps not in ("all", "last"):
            raise ValueError(f"sequence_loss: steps must be 'all', 'last' or a mask, "
                             f"got {steps!r}")
        chosen = list(range(T)) if steps == "all" else [T - 1]
    else:
        mask = np.asarray(steps, dtype=bool)
        if mask.shape != (T,):
            raise ValueError(f"sequence_loss: the mask has shape {mask.shape}; it needs one "
                             f"entry per step, ({T},)")
        chosen = [t for t in range(T) if mask[t]]
    if not chosen:
        raise ValueError("sequence_loss: no step is selected")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"sequence_loss: reduction must be 'sum' or 'mean', got {reduction!r}")
    total = None
    for t in chosen:
        with scope(t=_time_of(outputs[t], t)):  # the loss of step t is part of step t
            loss = loss_fn(outputs[t], targets[t])
            total = loss if total is None else total + loss
    return total if reduction == "sum" else total * (1.0 / len(chosen))


def _time_of(output, default):
    """The time tag of the node that made ``output`` (absolute under truncated BPTT)."""
    node = getattr(output, "node", None)
    tags = node.tags if node is not None else None
    return tags["t"] if tags and "t" in tags else default


class Contributions(NamedTuple):
    """``steps[t]``: the gradient that reached the parameter through the consumers of time
    step t (the gradient of an untied copy used only at step t); ``rest``: through untagged
    consumers (a head outside the loop, a regulariser). ``steps.sum(0) + rest`` is the
    gradient."""
    steps: np.ndarray
    rest: np.ndarray


def contributions(loss, param, steps=None):
    """Split d(loss)/d(param) by time step, from one backward pass.

    The backward pass runs under :func:`~microgradrnn.autodiff.record_edge_grads`; each edge
    into ``param`` comes from a consumer whose ``t`` tag (``scope(t=...)``, set by ``RNN``)
    says which step it belongs to. A parameter reshaped, transposed, sliced or broadcast once
    outside the loop is traced back through that map for each step. Any other operation on it
    outside the loop whose result feeds the steps (``W2 = W * 2`` used at every step) makes the
    split ambiguous and is refused. Does not write ``.grad``.

    ``steps``: the number of rows (default: one more than the largest tag seen).
    """
    if param.node is None or not param.is_leaf:
        raise TypeError("contributions: param must be a leaf tensor that requires grad")
    if loss.node is None:
        raise RuntimeError("contributions: the loss does not depend on anything that requires "
                           "grad")
    views = _views_of(loss.node, param.node)
    with record_edge_grads(only=[param.node, *views]) as record:
        grad(loss, [param], allow_unused=True)
    rows, rest = {}, np.zeros(param.shape, dtype=param.dtype)
    for consumer, receiver, g in record.edges:
        if consumer in views:
            continue  # a view passing the total on: its consumers are counted instead
        g = _pull_back(value_of(g), views.get(receiver, ()))
        t = consumer.tags.get("t") if consumer.tags else None
        if t is None:
            rest = rest + g
        else:
            rows[t] = rows.get(t, 0) + g
    count = max(rows, default=-1) + 1 if steps is None else steps
    table = np.zeros((count,) + param.shape, dtype=param.dtype)
    for t, g in rows.items():
        table[t] = g
    return Contributions(table, rest)


def _views_of(loss_node, param_node):
    """{view node: the chain of view nodes from it back to the parameter} for the untagged
    view operations applied to the parameter; refuses other untagged uses that reach a step."""
    views, derived, touched = {}, {param_node: ()}, set()
    for node in forward_order([loss_node]):
        if node.primitive is None:
            continue
        tagged = bool(node.tags) and "t" in node.tags
        from_param = [p for p in node.parents if p is not None and (p in derived or p in touched)]
        if tagged:
            for p in from_param:
                if p in touched:
                    raise ValueError(
                        f"contributions: the parameter reaches time step {node.tags['t']} "
                        f"through an operation outside any scope(t=...) that is not a reshape, "
                        f"transpose, slice or broadcast; the per-step split is then undefined. "
                        f"Move that operation into the step, or pass its result instead")
            continue
        if not from_param:
            continue
        if node.primitive.name in _VIEWS and node.parents[0] in derived:
            derived[node] = (node,) + derived[node.parents[0]]
            views[node] = derived[node]
        else:
            touched.add(node)
    return views


def _pull_back(g, chain):
    """Pull a cotangent of a view back to the parameter through each view's own VJP."""
    for node in chain:
        g = node.primitive.vjps[0](g, node.out, *node.saved)
    return g


class TruncatedBPTT:
    """BPTT(k2; k1) in the sense of Williams & Peng (1990): stream a sequence one step at a
    time; every ``k1`` steps, backpropagate the losses of those ``k1`` steps ``k2`` steps into
    the past, and let the optimizer step.

    ``model`` has ``step(x, state, t) -> (output, state)`` and ``initial_state(batch)`` (as
    :class:`~microgradrnn.nn.RNNModel`); ``loss_fn(output, target)`` gives a scalar Tensor;
    ``optimizer`` has ``step()`` and ``zero_grad()``. Step tags are absolute times.

    * ``k1 == k2 == k`` (the default, k = 5): the chunked scheme. Each chunk is recorded from
      the state carried in from the previous chunk, cut with ``detach()``; after k steps the
      chunk's summed loss is backpropagated through the chunk.
    * ``k1 < k2``: the forward pass runs without recording, keeping only the last ``k2``
      inputs and (detached) states. At an update the window of ``k2`` steps is recomputed with
      the current weights from the state stored at its start, and the losses of its last
      ``k1`` steps are backpropagated through it. (The other known variant keeps the window's
      graph from before earlier updates; recomputing never reads arrays that changed.)

    Either way, a truncated gradient equals the sum of the rows of :func:`contributions` of a
    full BPTT of the same loss over the window's steps: steps before the window are cut.
    ``clip`` (optional) is called with the parameters before each optimizer step, e.g.
    ``lambda ps: mg.optim.clip_grad_norm(ps, 1.0)``.
    """

    def __init__(self, model, loss_fn, optimizer, k1=5, k2=None, batch=1, state=None,
                 params=None, clip=None):
        k2 = k1 if k2 is None else k2
        if not 1 <= k1 <= k2:
            raise ValueError(f"TruncatedBPTT: need 1 <= k1 <= k2, got k1={k1}, k2={k2}")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.k1, self.k2, self.clip = k1, k2, clip
        self.params = list(model.parameters() if params is None else params)
        self.t = 0                       # the global step counter (absolute time tags)
        self.state = model.initial_state(batch) if state is None else state
        self._chunk_loss = None          # k1 == k2: the recorded loss of the current chunk
        self._window = deque(maxlen=k2)  # k1 < k2: (state before step, x, target)
        self.updates = 0

    def step(self, x, target):
        """Feed one time step; returns its loss as a float. Updates every k1 steps."""
        if self.k1 == self.k2:
            return self._chunked_step(x, target)
        return self._windowed_step(x, target)

    def _chunked_step(self, x, target):
        output, self.state = self.model.step(x, self.state, self.t)
        loss = self.loss_fn(output, target)
        self._chunk_loss = loss if self._chunk_loss is None else self._chunk_loss + loss
        self.t += 1
        if self.t % self.k1 == 0:
            self._update(self._chunk_loss)
            self._chunk_loss = None
            self.state = _detached(self.state)
        return loss.item()

    def _windowed_step(self, x, target):
        self._window.append((self.state, x, target))
        with no_grad():
            output, self.state = self.model.step(x, self.state, self.t)
            value = self.loss_fn(output, target).item()
        self.t += 1
        if self.t % self.k1 == 0:
            self._update(self._recompute_window())
        return value

    def _recompute_window(self):
        """The summed loss of the last k1 steps, recorded through the last k2 steps."""
        start = self.t - len(self._window)
        state, total = self._window[0][0], None
        for offset, (_, x, target) in enumerate(self._window):
            output, state = self.model.step(x, state, start + offset)
            if offset >= len(self._window) - self.k1:
                loss = self.loss_fn(output, target)
                total = loss if total is None else total + loss
        return total

    def _update(self, loss):
        loss.backward()
        if self.clip is not None:
            self.clip(self.params)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.updates += 1


def _detached(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def checkpointed_loss(model, xs, targets, loss_fn, segment=None, h0=None):
    """The summed loss of ``model`` over the whole sequence, keeping only the state at the
    start of every segment of ``segment`` steps (default ~sqrt(T)): each segment is a
    :func:`~microgradrnn.transforms.checkpoint`, recomputed in the backward pass. Memory grows
    like sqrt(T) instead of T, for about one more forward pass; the gradients are those of
    plain BPTT.
    """
    T = len(xs)
    segment = max(1, math.isqrt(T)) if segment is None else segment
    state = model.initial_state(np.shape(value_of(xs[0]))[0]) if h0 is None else h0
    shapes = [s.shape for s in (state if isinstance(state, tuple) else (state,))]
    params = model.parameters()
    total = None
    for start in range(0, T, segment):
        stop = min(T, start + segment)

        def run(*flat_state, start=start, stop=stop):
            state = flat_state if len(flat_state) > 1 else flat_state[0]
            seg_loss = None
            for t in range(start, stop):
                output, state = model.step(xs[t], state, t)
                loss = loss_fn(output, targets[t])
                seg_loss = loss if seg_loss is None else seg_loss + loss
            parts = state if isinstance(state, tuple) else (state,)
            return concatenate([reshape(p, (-1,)) for p in parts] + [reshape(seg_loss, (1,))])

        packed = checkpoint(run, *(state if isinstance(state, tuple) else (state,)),
                            params=params)
        sizes = np.cumsum([math.prod(s) for s in shapes])
        pieces = split(packed, list(sizes))
        parts = tuple(reshape(p, s) for p, s in zip(pieces[:-1], shapes))
        state = parts if len(parts) > 1 else parts[0]
        seg_total = reshape(pieces[-1], ())
        total = seg_total if total is None else total + seg_total
    return total
