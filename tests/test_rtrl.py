"""Real-time recurrent learning: a hand-derived sensitivity, the gradient of full BPTT (the
same gradient, taken the other way through time), the sensitivities against explicit
Jacobians, each JVP rule RTRL relies on against the same rule one tangent at a time, and
online learning that learns."""
import weakref

import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from references import GradientSpy, ScalarLinear
from microgradrnn.autodiff import forward_pass
from microgradrnn.graph import forward_order
from microgradrnn.nn import GRUCell, LSTMCell, RNNCell, RNNModel
from microgradrnn.rtrl import BATCHED_JVP_RULES, RTRL
from microgradrnn.testing.strategies import rnn_configs
from microgradrnn.training import RTRL_MAX_SENSITIVITIES, train_task

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def _mse(output, target):
    return mg.functional.mse(output, target, reduction="sum")


def _model(kind, D, H, V, seed):
    return RNNModel(CELLS[kind](D, H, seed=seed), mg.nn.Linear(H, V, seed=seed + 1))


# -- a hand-derived case -----------------------------------------------------------------------

def test_the_scalar_linear_rnn_by_hand():
    model = ScalarLinear()
    learner = RTRL(model, lambda output, target: output * target)
    for t, expected in enumerate([0.9, 0.36, 0.108]):
        learner.step(None, 1.0 if t == 2 else None)  # the loss is x_3 alone
        np.testing.assert_allclose(learner.sensitivity(model.w), expected, rtol=1e-15)
    np.testing.assert_allclose(model.w.grad, 0.108, rtol=1e-15)
    np.testing.assert_allclose(learner.state.item(), 0.9 * 0.2 ** 3, rtol=1e-15)
    learner.reset()
    assert learner.state.item() == 0.9 and learner.sensitivities is None  # S_0 = 0


# -- the gradient of full BPTT -----------------------------------------------------------------

@given(st.sampled_from(sorted(CELLS)), rnn_configs(max_T=6), st.integers(1, 3),
       st.sampled_from([None, 1, 5]), st.integers(0, 2**32 - 1))
def test_the_gradient_at_the_end_of_a_sequence_is_full_bptt_s(kind, config, V, chunk, seed):
    rng = np.random.default_rng(seed)
    T, B, D, H = config
    model = _model(kind, D, H, V, seed % 997)
    xs, ys = rng.normal(size=(T, B, D)), rng.normal(size=(T, B, V))
    chosen = rng.integers(0, 2, size=T).astype(bool)  # losses at a random subset of the steps
    chosen[rng.integers(0, T)] = True
    learner = RTRL(model, _mse, batch=B, chunk=chunk)
    losses = [learner.step(xs[t], ys[t] if chosen[t] else None) for t in range(T)]
    rtrl = [p.grad for p in model.parameters()]
    outputs, _ = model(xs)  # the reference: reverse mode through the unrolled sequence
    loss = sum(_mse(outputs[t], ys[t]) for t in range(T) if chosen[t])
    np.testing.assert_allclose(sum(l for l in losses if l is not None), loss.item(), rtol=1e-12)
    for got, want in zip(rtrl, mg.grad(loss, model.parameters())):
        np.testing.assert_allclose(got, want.value, rtol=1e-10, atol=1e-12)


class StateOnly:
    """A cell as a model without a readout: the output is the new state itself."""

    def __init__(self, cell):
        self.cell = cell

    def parameters(self):
        return self.cell.parameters()

    def initial_state(self, batch):
        return self.cell.initial_state(batch)

    def step(self, x, state, t):
        state = self.cell(x, state)
        return state, state


def test_the_sensitivities_are_the_jacobians_of_the_final_state():
    """S_T = ds_T/dθ, entry by entry, against the Jacobian of the unrolled map θ -> s_T taken
    by reverse mode (one backward pass per state entry)."""
    rng = np.random.default_rng(0)
    T, B, D, H = 4, 2, 2, 3
    xs = rng.normal(size=(T, B, D))
    for kind in sorted(CELLS):
        cell = CELLS[kind](D, H, seed=1)
        learner = RTRL(StateOnly(cell), None, batch=B)
        for x in xs:
            learner.step(x)
        for name, param in cell.named_parameters():
            def final_state(p, name=name):
                original = getattr(cell, name)
                object.__setattr__(cell, name, p)
                try:
                    _, state = mg.nn.RNN(cell)(xs)
                finally:
                    object.__setattr__(cell, name, original)
                parts = state if isinstance(state, tuple) else (state,)
                return mg.concatenate([s.reshape(-1) for s in parts])
            jac = mg.jacobian(final_state, param.value).value   # (|s|, *param.shape)
            got = learner.sensitivity(param)                    # param.shape + state shape
            parts = got if isinstance(got, tuple) else (got,)
            flat = np.concatenate([s.reshape(param.size, -1) for s in parts], axis=1)
            np.testing.assert_allclose(flat, jac.reshape(len(jac), -1).T, rtol=1e-10,
                                       atol=1e-13, err_msg=f"{kind} {name}")


def test_an_embedding_model_through_batched_getitem():
    rng = np.random.default_rng(1)
    T, B, V, E, H = 5, 3, 7, 4, 3
    model = RNNModel(GRUCell(E, H, seed=2), mg.nn.Linear(H, V, seed=3),
                     embedding=mg.nn.Embedding(V, E, seed=4))
    ids, targets = rng.integers(0, V, size=(T, B)), rng.integers(0, V, size=(T, B))
    learner = RTRL(model, mg.functional.cross_entropy, batch=B)
    for t in range(T):
        learner.step(ids[t], targets[t])
    rtrl = [p.grad for p in model.parameters()]
    outputs, _ = model(ids)
    loss = sum(mg.functional.cross_entropy(o, y) for o, y in zip(outputs, targets))
    for got, want in zip(rtrl, mg.grad(loss, model.parameters())):
        np.testing.assert_allclose(got, want.value, rtol=1e-10, atol=1e-13)
    assert learner.size == sum(p.size for p in model.parameters()) - H * V - V  # not the head


def test_each_step_s_graph_is_dropped():
    model = _model("lstm", 2, 3, 2, 5)
    learner = RTRL(model, _mse)
    graphs = []
    step = model.step

    def watched(x, state, t):
        output, new = step(x, state, t)
        graphs.append(weakref.ref(output.node))
        return output, new

    object.__setattr__(model, "step", watched)
    for t in range(3):
        learner.step(np.ones((1, 2)), np.zeros((1, 2)))
        assert graphs[-1]() is None  # nothing of step t outlives it: memory does not grow with T
    assert all(s.node is None for s in learner.state)
    assert [S.shape for S in learner.sensitivities] == [(learner.size, 1, 3)] * 2


# -- the JVP rules RTRL runs on a batch of tangents ---------------------------------------------

def _positive(rng, shape):
    return rng.uniform(0.5, 2.0, size=shape)


# One case per rule (and for getitem, per kind of index): inputs, and the function of them.
JVP_CASES = {
    "add (broadcast_to)": ([(3, 4), (4,)], lambda x, y: x + y),
    "sub": ([(2, 3, 4), (3, 1)], lambda x, y: x - y),
    "mul": ([(3, 4), (3, 4)], lambda x, y: x * y),
    "div": ([(3, 4), (1, 4)], lambda x, y: x / y),
    "pow": ([(3, 4), (3, 4)], lambda x, y: x ** y),
    "exp, log": ([(3, 4)], lambda x: mg.log(x).exp()),
    "tanh, sigmoid": ([(2, 5)], lambda x: x.tanh() * x.sigmoid()),
    "maximum, minimum": ([(3, 4), (3, 4)], lambda x, y: mg.maximum(x, y) + mg.minimum(x, y)),
    "where": ([(3, 4), (4,)], lambda x, y: mg.where(np.arange(12).reshape(3, 4) % 3 == 0, x, y)),
    "matmul": ([(2, 3), (3, 4)], lambda x, y: x @ y),
    "matmul, batched": ([(5, 2, 3), (3, 4)], lambda x, y: x @ y),
    "affine": ([(2, 3), (3, 4), (4,)], lambda x, W, b: mg.affine(x, W, b)),
    "affine, a (B, p) term": ([(2, 3), (3, 4), (2, 4)], lambda x, W, c: mg.affine(x, W, c)),
    "getitem (..., slice)": ([(2, 8)], lambda x: x[..., 2:5]),
    "getitem ids": ([(5, 3)], lambda x: x[np.array([4, 0, 4])]),
    "getitem separated": ([(4, 3, 5)], lambda x: x[np.array([0, 3]), :, np.array([1, 4])]),
}


@pytest.mark.parametrize("case", sorted(JVP_CASES))
@given(columns=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_a_batch_of_tangents_is_each_tangent_alone(case, columns, seed):
    """Forward mode with tangents carrying a leading axis of ``columns`` equals the stack of
    the forward passes of each tangent alone, through every node of the case."""
    rng = np.random.default_rng(seed)
    shapes, f = JVP_CASES[case]
    xs = [mg.tensor(_positive(rng, s), requires_grad=True) for s in shapes]
    out = f(*xs)
    order = forward_order([out.node])
    assert {n.primitive.name for n in order if n.primitive} <= BATCHED_JVP_RULES
    tangents = [rng.normal(size=(columns,) + s) for s in shapes]
    batched = forward_pass(order, {x.node: t for x, t in zip(xs, tangents)})[out.node]
    alone = np.stack([forward_pass(order, {x.node: t[c] for x, t in zip(xs, tangents)})[out.node]
                      for c in range(columns)])
    assert batched.shape == (columns,) + out.shape
    np.testing.assert_allclose(batched, alone, rtol=1e-14, atol=1e-15)


def test_every_rule_declared_batch_safe_is_checked():
    names = set()
    for shapes, f in JVP_CASES.values():
        out = f(*[mg.tensor(np.ones(s), requires_grad=True) for s in shapes])
        names |= {n.primitive.name for n in forward_order([out.node]) if n.primitive}
    assert names >= BATCHED_JVP_RULES


def test_a_step_with_a_rule_that_names_axes_is_refused():
    class Summing(mg.nn.Module):
        def __init__(self):
            self.W = mg.Parameter(np.eye(2) * 0.5)

        def initial_state(self, batch):
            return mg.tensor(np.ones((batch, 2)))

        def step(self, x, state, t):
            state = (state @ self.W).sum(axis=1, keepdims=True) * state
            return state, state

    with pytest.raises(ValueError, match="'sum', whose JVP rule does not take a batch"):
        RTRL(Summing(), _mse).step(None)


# -- learning ---------------------------------------------------------------------------------

def test_an_update_every_k_steps_gets_the_gradient_of_those_k_losses():
    rng = np.random.default_rng(6)
    T, k = 6, 3
    xs, ys = rng.normal(size=(T, 1, 2)), rng.normal(size=(T, 1, 2))
    model = _model("gru", 2, 3, 2, 7)
    spy = GradientSpy(model.parameters())
    learner = RTRL(model, _mse, spy, update_every=k)
    for t in range(T):
        learner.step(xs[t], ys[t])
    assert learner.updates == 2 and all(p.grad is None for p in model.parameters())
    outputs, _ = model(xs)  # the weights never moved: the exact gradients of each window
    for window, seen in zip((range(0, k), range(k, T)), spy.seen):
        loss = sum(_mse(outputs[t], ys[t]) for t in window)
        for got, want in zip(seen, mg.grad(loss, model.parameters())):
            np.testing.assert_allclose(got, want.value, rtol=1e-10, atol=1e-13)


def test_online_rtrl_trains_a_model():
    model = _model("rnn", 2, 4, 2, 10)
    optimizer = mg.optim.SGD(model.parameters(), lr=0.05)
    learner = RTRL(model, _mse, optimizer)  # an update at every step (Williams & Zipser)
    signal = np.sin(np.arange(500) / 3.0)
    losses = [learner.step(np.array([[signal[t], 0.0]]), np.array([[signal[t + 1], 0.0]]))
              for t in range(499)]
    assert learner.updates == 499
    assert np.mean(losses[-50:]) < 0.2 * np.mean(losses[:50])


@pytest.mark.parametrize("task, cell", [("adding", "rnn"), ("sine", "lstm"),
                                        ("temporal_order", "gru")])
def test_train_task_with_rtrl_makes_full_bptt_s_updates(task, cell):
    runs = {bptt: train_task(task, cell=cell, hidden_size=5, T=10, batch_size=4, iterations=4,
                             bptt=bptt, progress=False, eval_every=0)
            for bptt in ("full", "rtrl")}
    full, rtrl = ([loss for _, loss, _ in history] for _, history in runs.values())
    np.testing.assert_allclose(rtrl, full, rtol=1e-10)
    for p, q in zip(runs["full"][0].parameters(), runs["rtrl"][0].parameters()):
        np.testing.assert_allclose(q.value, p.value, rtol=1e-9, atol=1e-12)


def test_too_large_a_model_is_refused_with_its_sizes():
    P = 2 * 64 + 64 * 64 + 64  # the adding task's RNN cell with 64 hidden units
    assert P * 32 * 64 > RTRL_MAX_SENSITIVITIES
    with pytest.raises(ValueError, match=f"P x B x \\|s\\| = {P:,} x 32 x 64"):
        train_task("adding", hidden_size=64, batch_size=32, bptt="rtrl", progress=False)


def test_bad_arguments_are_refused():
    model = _model("rnn", 2, 3, 2, 0)
    with pytest.raises(ValueError, match="update_every"):
        RTRL(model, _mse, update_every=0)
    with pytest.raises(ValueError, match="chunk"):
        RTRL(model, _mse, chunk=0)
