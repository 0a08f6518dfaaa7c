"""Real-time recurrent learning (Williams & Zipser 1989): the gradient of a recurrent network
carried forward in time by forward-mode differentiation, instead of backpropagated through it.

Along with the state s_t (h, or (h, c) for an LSTM) RTRL carries its *sensitivity* to every
parameter entry, S_t = ds_t/dθ, one column per entry, by the recurrence

    S_t = (∂s_t/∂s_{t-1}) S_{t-1} + ∂s_t/∂θ,        S_0 = 0.

Column p of S_t is one forward-mode (JVP) pass through step t with the tangents
(ṡ_{t-1}, θ̇) = (S_{t-1}[p], e_p): the cells' own JVP rules, applied here to a batch of columns
at once (the tangents carry a leading axis, one entry per column). The gradient of the loss of
step t is then known at step t, so the weights can change at every step ("real time"):

    dL_t/dθ = ∂L_t/∂θ + (∂L_t/∂s_{t-1}) S_{t-1},

where both partial derivatives, with s_{t-1} held fixed, come from one reverse pass through
step t alone (exact and local in time: a readout head's weights get their whole gradient
there). Re-associated, this is Williams & Zipser's (∂L_t/∂s_t) S_t plus the head's term.

Nothing of earlier steps is kept: memory is the P x |s| sensitivities (P parameter entries that
reach the state, |s| state entries per sequence in the batch) whatever the length T, against
BPTT's T copies of the step. The price is time: for H hidden units P ~ H^2, so a step costs
O(H^4) against O(H^2) for BPTT. RTRL suits long or endless streams of small networks.

R. J. Williams and D. Zipser, "A learning algorithm for continually running fully recurrent
neural networks", Neural Computation 1(2), 270-280 (1989).
"""
from __future__ import annotations

import numpy as np

from .autodiff import backward_pass, checked_seed, enable_grad, forward_pass
from .graph import forward_order
from .ops._core import value_of
from .tensor import tensor

__all__ = ["RTRL", "BATCHED_JVP_RULES"]

# The primitives whose JVP rules accept a batch of tangents (extra leading axes) and treat each
# tangent of the batch as the unbatched rule would (tests/test_rtrl.py checks each of them).
# Elementwise rules and matmul broadcast over leading axes by NumPy's own rules; broadcast_to
# and getitem line the tangent's trailing axes up with x's. Rules that name axes (sum, reshape,
# transpose, softmax, concatenate) count them from x's first axis, so they are not here.
BATCHED_JVP_RULES = frozenset({"add", "sub", "mul", "div", "pow", "exp", "log", "tanh",
                               "sigmoid", "maximum", "minimum", "where", "matmul", "affine",
                               "broadcast_to", "getitem"})


def _parts(state):
    return state if isinstance(state, tuple) else (state,)


def _packed(parts, like):
    return tuple(parts) if isinstance(like, tuple) else parts[0]


def _constant(state):
    """The state's values, cut from any graph (what is carried to the next step)."""
    values = [np.asarray(value_of(s)) for s in _parts(state)]
    return _packed([tensor(v, dtype=v.dtype) for v in values], state)


def _leaf(s):
    """s_{t-1} as a leaf of the step's graph: where its tangents S_{t-1} are seeded, and
    where the reverse pass collects dL_t/ds_{t-1}."""
    return tensor(s.value, requires_grad=True, dtype=s.dtype)


class RTRL:
    """Real-time recurrent learning: stream a sequence one step at a time, carrying the
    sensitivities S_t = ds_t/dθ forward (Williams & Zipser 1989), accumulating into each
    parameter's ``.grad`` the gradient of the losses seen so far.

    ``model`` has ``step(x, state, t) -> (output, state)`` and ``initial_state(batch)`` (as
    :class:`~microgradrnn.nn.RNNModel`); ``loss_fn(output, target)`` gives a scalar Tensor.
    ``optimizer`` (optional) has ``step()`` and ``zero_grad()``: with one, the parameters are
    updated every ``update_every`` steps (1, the default, is Williams & Zipser's online
    learning); without one, gradients only accumulate and the caller updates (for instance once
    per sequence, which is then exactly full BPTT's update). ``clip`` is called with the
    parameters before each update, as in :class:`~microgradrnn.bptt.TruncatedBPTT`.

    After an online update the sensitivities carried on were computed with the old weights:
    the gradient is that of the changing network, a good approximation for small learning
    rates (Williams & Zipser's own caveat). :meth:`reset` starts a new sequence (S = 0).

    Sensitivities exist only for the parameters the state depends on (found in the first
    step's graph); the others (a readout head) get their gradient from the step's reverse pass.
    The step's forward pass must use primitives in :data:`BATCHED_JVP_RULES`; the columns go
    through it ``chunk`` at a time (default: 64 to 128), so the working memory of a step stays
    near the size of the sensitivities themselves.
    """

    def __init__(self, model, loss_fn, optimizer=None, *, update_every=1, batch=1, state=None,
                 params=None, clip=None, chunk=None):
        if update_every < 1:
            raise ValueError(f"RTRL: update_every must be at least 1, got {update_every}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"RTRL: chunk must be at least 1, got {chunk}")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.update_every, self.clip, self.chunk = update_every, clip, chunk
        self.params = list(model.parameters() if params is None else params)
        self.columns = None   # [(param, first column, last column + 1)] for the state's params
        self.updates = 0
        self._since_update = 0
        self._buffers = {}    # id(param) -> the reused array of its unit tangents
        self.reset(batch, state)

    def reset(self, batch=None, state=None):
        """Start a new sequence: the initial state (``model.initial_state(batch)`` unless
        ``state`` is given), zero sensitivities (the initial state does not depend on θ) and
        time 0. Accumulated gradients are kept."""
        if state is None:
            state = self.model.initial_state(1 if batch is None else batch)
        self.state = _constant(state)
        self.sensitivities = None  # S_t, one array (P, *state part shape) per part; None: zero
        self.t = 0

    @property
    def size(self):
        """P, the number of parameter entries the state depends on (None before a step)."""
        if self.columns is None:
            return None
        return self.columns[-1][2] if self.columns else 0

    def sensitivity(self, param):
        """ds_t/d(param) for the current state: an array of shape ``param.shape +
        state.shape`` (a tuple of them for a tuple state); zeros for a parameter the state does
        not depend on."""
        parts = _parts(self.state)
        found = [(a, b) for p, a, b in (self.columns or ()) if p is param]
        result = []
        for k, part in enumerate(parts):
            shape = param.shape + part.shape
            if not found or self.sensitivities is None:
                result.append(np.zeros(shape, dtype=part.dtype))
            else:
                a, b = found[0]
                result.append(self.sensitivities[k][a:b].reshape(shape))
        return _packed(result, self.state)

    def step(self, x, target=None):
        """Feed one time step. With a ``target``, add the gradient of its loss to the
        parameters' ``.grad`` and return the loss as a float (else None). Then carry the
        sensitivities one step forward; with an optimizer, update every ``update_every`` steps.
        """
        previous = _packed([_leaf(s) for s in _parts(self.state)], self.state)
        with enable_grad():  # the step's own graph: dropped when this call returns
            output, state = self.model.step(x, previous, self.t)
            loss = None if target is None else self.loss_fn(output, target)
        leaves = [s.node for s in _parts(previous)]
        nodes = [getattr(s, "node", None) for s in _parts(state)]
        order = forward_order([n for n in nodes if n is not None])
        self._check(order)
        value = None
        if loss is not None:
            value = loss.item()
            if loss.node is not None:
                self._accumulate(loss, leaves)  # uses S_{t-1}: before the sensitivities move on
        self._advance(order, nodes, leaves)
        self.state = _constant(state)
        self.t += 1
        self._since_update += 1
        if self.optimizer is not None and self._since_update >= self.update_every:
            if self.clip is not None:
                self.clip(self.params)
            self.optimizer.step()
            self.optimizer.zero_grad()
            self.updates += 1
            self._since_update = 0
        return value

    # -- the two halves of a step --------------------------------------------------------------

    def _accumulate(self, loss, leaves):
        """dL_t/dθ = ∂L_t/∂θ + (∂L_t/∂s_{t-1}) S_{t-1}, into each parameter's ``.grad``.
        The partial derivatives (s_{t-1} held fixed) are one reverse pass through this step."""
        wanted = {p.node for p in self.params} | set(leaves)
        reached = backward_pass([loss.node], [checked_seed(loss, None, "RTRL")], wanted=wanted)
        total = {id(p): reached.get(p.node) for p in self.params}
        if self.sensitivities is not None:
            through_state = sum(np.tensordot(S, reached[leaf], axes=np.ndim(reached[leaf]))
                                for S, leaf in zip(self.sensitivities, leaves)
                                if leaf in reached)
            if not np.isscalar(through_state):  # 0 when the loss ignores s_{t-1}
                for p, a, b in self.columns:
                    g = through_state[a:b].reshape(p.shape)
                    direct = total[id(p)]
                    total[id(p)] = g if direct is None else direct + g
        for p in self.params:
            g = total[id(p)]
            if g is not None:
                g = np.array(g, dtype=p.dtype)  # a fresh array the caller owns
                p.grad = g if p.grad is None else p.grad + g

    def _advance(self, order, nodes, leaves):
        """S_t = (∂s_t/∂s_{t-1}) S_{t-1} + ∂s_t/∂θ: forward passes through this step, a block
        of columns at a time, with tangents S_{t-1}[block] for s_{t-1} and the unit vectors
        e_p of the block's columns for the parameters. Columns are independent, so each block
        overwrites its own rows of S."""
        parts = _parts(self.state)
        P = self.size
        if not P:
            return  # the state depends on no parameter
        S = self.sensitivities
        if S is None:
            S = [np.zeros((P,) + part.shape, dtype=part.dtype) for part in parts]
        block = self.chunk or self._default_chunk(parts)
        for start in range(0, P, block):
            stop = min(P, start + block)
            seeds = {} if self.sensitivities is None else {  # S_0 = 0: no seed needed
                leaf: S_k[start:stop] for leaf, S_k in zip(leaves, S)}
            units = self._unit_tangents(start, stop, block)
            seeds.update((p.node, e) for p, e, _ in units)
            tangents = forward_pass(order, seeds)
            for k, node in enumerate(nodes):
                tangent = None if node is None else tangents.get(node)
                if tangent is None:
                    S[k][start:stop] = 0.0  # this part of the state does not depend on θ
                    continue
                if any(np.may_share_memory(tangent, S_j) for S_j in S):
                    tangent = np.array(tangent)  # a state passed on unchanged: a view of S
                S[k][start:stop] = tangent
            del tangents
            for _, e, ones in units:  # the buffers are reused: put the zeros back
                e.reshape(len(e), -1)[ones] = 0.0
        self.sensitivities = S

    def _unit_tangents(self, start, stop, block):
        """[(param, e, where its ones are)]: for each parameter overlapping columns
        start..stop-1, the tangents e_p of those columns as an array (stop - start,
        *param.shape) holding a single 1 in each row of the parameter's own columns (zero rows
        elsewhere). The zeros are written once: each parameter keeps a buffer of ``block`` rows."""
        units = []
        for p, a, b in self.columns:
            lo, hi = max(a, start), min(b, stop)
            if lo >= hi:
                continue
            buffer = self._buffers.get(id(p))
            if buffer is None or buffer.shape[0] != block:
                buffer = self._buffers[id(p)] = np.zeros((block, p.size), dtype=p.dtype)
            columns = np.arange(lo, hi)
            ones = (columns - start, columns - a)
            buffer[ones] = 1.0
            units.append((p, buffer[:stop - start].reshape((stop - start,) + p.shape), ones))
        return units

    def _default_chunk(self, parts):
        """Columns per forward pass: as many as keep a block's arrays (its unit tangents,
        columns x P, and the step's tangents, a few dozen of columns x |s|) within the size of
        S itself, but from 64 (fewer, and Python's cost per pass shows) to 128 (more, and the
        arrays fall out of the processor's cache; measured on an Elman RNN and an LSTM)."""
        P, s = self.size, sum(part.size for part in parts)
        return min(P, max(64, min(128, P * s // (P + 32 * s))))

    def _check(self, order):
        """The first step fixes the columns (the parameters found in the state's graph); every
        step checks that its forward pass only meets rules that take a batch of tangents."""
        for node in order:
            if node.primitive is not None and node.primitive.name not in BATCHED_JVP_RULES:
                raise ValueError(
                    f"RTRL: the model's step computes its state with {node.primitive.name!r}, "
                    "whose JVP rule does not take a batch of tangents (a leading axis, one "
                    "tangent per parameter entry); RTRL supports steps built from "
                    f"{', '.join(sorted(BATCHED_JVP_RULES))}")
        reached = {node for node in order if node.primitive is None}
        if self.columns is None:
            columns, start = [], 0
            for p in self.params:
                if p.node in reached:
                    columns.append((p, start, start + p.size))
                    start += p.size
            self.columns = columns
            return
        known = {p.node for p, _, _ in self.columns}
        new = [p for p in self.params if p.node in reached and p.node not in known]
        if new:
            names = ", ".join(p.name or f"a parameter of shape {p.shape}" for p in new)
            raise ValueError(f"RTRL: at step {self.t} the state depends on {names}, which it "
                             "did not depend on at the first step; the sensitivities have one "
                             "column per parameter entry, fixed at the first step")
