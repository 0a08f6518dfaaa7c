"""``RNN``: a cell unrolled over a sequence. Every operation of step t is recorded under
``scope(t=t, module=<the RNN's path>)``, so the graph knows which step each node belongs to,
and the cell's weights are single leaves consumed once per step."""
from __future__ import annotations

import numpy as np

from ..autodiff import scope, time_steps
from ..ops import where
from ..ops._core import shape_of, value_of
from .module import Module, _place

__all__ = ["RNN", "RNNModel"]


class RNN(Module):
    """``hs, state = rnn(xs, h0=None, mask=None, t0=0)``.

    * ``xs``: a list of (B, D) inputs, or one (T, B, D) array or Tensor;
    * ``h0``: the initial state (zeros when None; for an LSTM the pair (h, c));
    * ``mask``: (T, B), true where a sequence has a real step; where it is false the state is
      carried over unchanged, so sequences of different lengths share one batch and the final
      state of each is the one after its last real step;
    * ``t0``: the time of the first step (tags are absolute times when a stream is fed in
      pieces, as truncated BPTT does).

    Returns the list of T hidden vectors (B, H) and the final state.
    """

    def __init__(self, cell, name=None):
        self.cell = cell
        if name:
            _place(self, name)

    @property
    def tag(self):
        """The ``module`` tag of this RNN's nodes: its attribute path, or "rnn" for a root."""
        return self.path or "rnn"

    def forward(self, xs, h0=None, mask=None, t0=0):
        steps = len(xs)
        if steps == 0:
            raise ValueError("RNN: the sequence is empty (T = 0)")
        xs = read_only_sequence(xs)
        cell = self.cell
        state = cell.initial_state(shape_of(xs[0])[0]) if h0 is None else h0
        hs = []
        with time_steps(self.tag) as time:  # :meth:`step` at every t, in one scope
            for t in range(steps):
                time.at(t0 + t)
                new = cell(xs[t], state)
                state = new if mask is None else carry_over(mask[t], new, state)
                hs.append(cell.output(state))
        return hs, state

    def step(self, x, state, t, mask=None):
        """One step at absolute time ``t``: the cell's new state (kept as ``state`` where
        ``mask`` is false)."""
        with scope(t=t, module=self.tag):
            new = self.cell(x, state)
            return new if mask is None else carry_over(mask, new, state)


def read_only_sequence(xs):
    """A writable NumPy sequence copied once, read-only. A graph may keep each step's input,
    and an op copies a writable constant before keeping it (so that changing it later cannot
    change a gradient); one copy of the whole sequence makes every step's slice a read-only
    view that is kept as it is."""
    if type(xs) is np.ndarray and xs.flags.writeable:
        xs = xs.copy()
        xs.flags.writeable = False
    return xs


def carry_over(mask, new, old):
    """The new state where ``mask`` (B,) is true, the old one where it is false (a sequence
    that has ended keeps its last state). States may be tuples (LSTM)."""
    keep = np.asarray(value_of(mask)).astype(bool)[:, None]
    if isinstance(new, tuple):
        return tuple(where(keep, n, o) for n, o in zip(new, old))
    return where(keep, new, old)


class RNNModel(Module):
    """An RNN with a readout applied at every step: ``outputs[t] = head(h_t)``.

    ``outputs, state = model(xs, h0=None, mask=None, t0=0)`` runs a whole sequence;
    ``output, state = model.step(x, state, t)`` runs one step (how truncated BPTT streams a
    sequence). The head of step t is tagged with step t too, so the head's weights also get
    per-step contributions. ``embedding`` (optional) maps integer inputs to vectors first.
    """

    def __init__(self, cell, head, embedding=None, name=None):
        self.embedding = embedding
        self.rnn = RNN(cell)
        self.head = head
        if name:
            _place(self, name)

    def initial_state(self, batch):
        return self.rnn.cell.initial_state(batch)

    def step(self, x, state, t):
        rnn = self.rnn
        cell = rnn.cell
        with scope(t=t, module=rnn.tag):  # one scope for the whole step, head included
            if self.embedding is not None:
                x = self.embedding(x)
            state = cell(x, state)
            return self.head(cell.output(state)), state

    def forward(self, xs, h0=None, mask=None, t0=0):
        state = self.initial_state(shape_of(xs[0])[0]) if h0 is None else h0
        xs = read_only_sequence(xs)
        cell, head, embedding = self.rnn.cell, self.head, self.embedding
        outputs = []
        with time_steps(self.rnn.tag) as time:  # :meth:`step` at every t, in one scope
            for t in range(len(xs)):
                time.at(t0 + t)
                x = xs[t] if embedding is None else embedding(xs[t])
                new = cell(x, state)
                state = new if mask is None else carry_over(mask[t], new, state)
                outputs.append(head(cell.output(new)))
        return outputs, state
