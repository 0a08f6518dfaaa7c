"""Modules, cells and the RNN unroller, against hand-written NumPy written from the equations
(PyTorch's, for the cells), and an independent hand-written BPTT."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn.nn import GRUCell, LSTMCell, RNN, RNNCell, RNNModel
from microgradrnn.testing.strategies import rnn_configs

from references import min_char_rnn_gradient


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# -- cells, one step, against PyTorch's equations written in NumPy -----------------------------

def torch_layout(rng, cell_kind, D, H):
    """Random weights in PyTorch's layout: weight_ih (G*H, D), weight_hh (G*H, H), two biases."""
    gates = {"rnn": 1, "lstm": 4, "gru": 3}[cell_kind]
    return (rng.normal(size=(gates * H, D)), rng.normal(size=(gates * H, H)),
            rng.normal(size=gates * H), rng.normal(size=gates * H))


def torch_rnn_step(x, h, w_ih, w_hh, b_ih, b_hh):
    return np.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def torch_lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh
    i, f, g, o = np.split(gates, 4, axis=-1)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def torch_gru_step(x, h, w_ih, w_hh, b_ih, b_hh):
    gi, gh = x @ w_ih.T + b_ih, h @ w_hh.T + b_hh
    (i_r, i_z, i_n), (h_r, h_z, h_n) = np.split(gi, 3, axis=-1), np.split(gh, 3, axis=-1)
    r, z = sigmoid(i_r + h_r), sigmoid(i_z + h_z)
    n = np.tanh(i_n + r * h_n)
    return (1 - z) * n + z * h


@given(rnn_configs(), st.integers(0, 2**32 - 1))
def test_each_cell_step_matches_pytorchs_equations(config, seed):
    rng = np.random.default_rng(seed)
    D, H, B = config.input_size, config.hidden_size, config.batch
    x, h, c = rng.normal(size=(B, D)), rng.normal(size=(B, H)), rng.normal(size=(B, H))
    for kind, cell_type in (("rnn", RNNCell), ("lstm", LSTMCell), ("gru", GRUCell)):
        weights = torch_layout(rng, kind, D, H)
        cell = cell_type(D, H, seed=0)
        cell.load_torch_weights(*weights)
        if kind == "lstm":
            h_new, c_new = cell(x, (mg.tensor(h), mg.tensor(c)))
            want_h, want_c = torch_lstm_step(x, h, c, *weights)
            np.testing.assert_allclose(c_new.value, want_c, rtol=1e-12, atol=1e-12)
        else:
            h_new = cell(x, mg.tensor(h))
            want_h = (torch_rnn_step if kind == "rnn" else torch_gru_step)(x, h, *weights)
        np.testing.assert_allclose(h_new.value, want_h, rtol=1e-12, atol=1e-12)


def test_the_torch_loader_refuses_wrong_shapes():
    cell = LSTMCell(3, 4, seed=0)
    with pytest.raises(ValueError, match=r"weight_hh has shape \(4, 4\).*\(16, 4\)"):
        cell.load_torch_weights(np.zeros((16, 3)), np.zeros((4, 4)))


def test_cells_agree_with_pytorch_itself_when_it_is_installed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, h = rng.normal(size=(2, 3)), rng.normal(size=(2, 4))
    for ours, theirs in ((RNNCell, torch.nn.RNNCell), (GRUCell, torch.nn.GRUCell)):
        reference = theirs(3, 4).double()
        cell = ours(3, 4)
        cell.load_torch_weights(*(p.detach().numpy() for p in reference.parameters()))
        want = reference(torch.tensor(x), torch.tensor(h)).detach().numpy()
        np.testing.assert_allclose(cell(x, mg.tensor(h)).value, want, rtol=1e-12)
    c = rng.normal(size=(2, 4))
    reference = torch.nn.LSTMCell(3, 4).double()
    cell = LSTMCell(3, 4)
    cell.load_torch_weights(*(p.detach().numpy() for p in reference.parameters()))
    want_h, want_c = (a.detach().numpy() for a in
                      reference(torch.tensor(x), (torch.tensor(h), torch.tensor(c))))
    got_h, got_c = cell(x, (mg.tensor(h), mg.tensor(c)))
    np.testing.assert_allclose(got_h.value, want_h, rtol=1e-12)
    np.testing.assert_allclose(got_c.value, want_c, rtol=1e-12)


@pytest.mark.parametrize("cell_type", [RNNCell, LSTMCell, GRUCell])
def test_gradcheck_on_each_cell_unrolled(cell_type):
    rng = np.random.default_rng(1)
    cell = cell_type(2, 3, seed=2)
    xs = rng.normal(size=(3, 2, 2))
    names = [name for name, _ in cell.named_parameters()]

    def unrolled(*weights):
        for name, w in zip(names, weights):
            object.__setattr__(cell, name, w)  # the traced weights, in place of the leaves
        hs, _ = RNN(cell)(xs)
        return sum((h * h).sum() for h in hs)

    values = [p.value for p in cell.parameters()]
    try:
        assert mg.gradcheck(unrolled, values)
        assert mg.jvpcheck(unrolled, values)
    finally:
        for name, v in zip(names, values):
            object.__setattr__(cell, name, mg.Parameter(v, name=name))


# -- the unroller ------------------------------------------------------------------------------

def test_every_op_of_step_t_is_tagged_and_stacked_rnns_stay_apart():
    class Stacked(mg.nn.Module):
        def __init__(self):
            self.lower = RNN(RNNCell(2, 3, seed=0))
            self.upper = RNN(GRUCell(3, 3, seed=1))

    model = Stacked()
    hs, _ = model.lower(np.ones((4, 1, 2)))
    tops, _ = model.upper(hs)
    order = mg.graph.backward_order([sum(h.sum() for h in tops).node])
    tags = {(n.tags["module"], n.tags["t"]) for n in order if n.tags}
    assert tags == {(m, t) for m in ("lower", "upper") for t in range(4)}
    matmuls_of_w = [n for n in order if model.upper.cell.W_hh.node in n.parents]
    assert sorted(n.tags["t"] for n in matmuls_of_w) == [0, 1, 2, 3]  # one consumer per step


def test_a_whole_sequence_and_step_by_step_record_the_same_tags_and_values():
    """RNNModel's forward (one scope for the loop, moved at each step) and its step (one
    scope per call, how truncated BPTT streams) give every node the same tags."""
    rng = np.random.default_rng(4)
    xs = rng.normal(size=(3, 2, 4))
    model = RNNModel(RNNCell(4, 5, seed=1), mg.nn.Linear(5, 4, seed=2))
    outputs, _ = model(xs, t0=7)
    state, stepped = model.initial_state(2), []
    for t, x in enumerate(xs):
        output, state = model.step(x, state, 7 + t)
        stepped.append(output)

    def tags(outputs):  # in creation order
        order = mg.graph.forward_order([y.node for y in outputs])
        return [(n.primitive.name, dict(n.tags)) for n in order if n.primitive]

    assert tags(outputs) == tags(stepped)
    assert tags(outputs)[-1] == ("affine", {"t": 9, "module": "rnn"})
    assert all(np.array_equal(a.value, b.value) for a, b in zip(outputs, stepped))


def test_a_list_of_inputs_and_one_array_give_the_same_unroll():
    rng = np.random.default_rng(2)
    xs = rng.normal(size=(5, 2, 3))
    rnn = RNN(LSTMCell(3, 4, seed=3))
    a, (h_a, c_a) = rnn(xs)
    b, (h_b, c_b) = rnn([x for x in xs])
    np.testing.assert_array_equal(h_a.value, h_b.value)
    assert all(np.array_equal(x.value, y.value) for x, y in zip(a, b))


@pytest.mark.parametrize("cell_type", [RNNCell, LSTMCell, GRUCell])
def test_a_mask_runs_sequences_of_different_lengths_in_one_batch(cell_type):
    rng = np.random.default_rng(3)
    lengths = [5, 2, 4]
    xs = rng.normal(size=(5, 3, 2))
    mask = np.arange(5)[:, None] < np.array(lengths)[None, :]
    rnn = RNN(cell_type(2, 3, seed=4))
    _, state = rnn(xs, mask=mask)
    for b, length in enumerate(lengths):
        _, alone = rnn(xs[:length, b:b + 1])
        final = state[0] if isinstance(state, tuple) else state
        single = alone[0] if isinstance(alone, tuple) else alone
        np.testing.assert_allclose(final.value[b], single.value[0], rtol=1e-13)


# -- an independent hand-written BPTT ----------------------------------------------------------

def numpy_bptt(xs, h0, W_xh, W_hh, b, readout, weights):
    """Loss = sum_t weights[t] * sum(readout * h_t) for h_t = tanh(x_t W_xh + h_{t-1} W_hh + b),
    and its gradient by hand: dh_t = weights[t] readout + da_{t+1} W_hh^T, da_t = dh_t (1 - h_t^2)."""
    hs = [h0]
    for x in xs:
        hs.append(np.tanh(x @ W_xh + hs[-1] @ W_hh + b))
    loss = sum(w * np.sum(readout * h) for w, h in zip(weights, hs[1:]))
    dW_xh, dW_hh, db, dh0 = 0 * W_xh, 0 * W_hh, 0 * b, None
    carry = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        dh = weights[t] * readout + carry
        da = dh * (1 - hs[t + 1] ** 2)
        dW_xh = dW_xh + xs[t].T @ da
        dW_hh = dW_hh + hs[t].T @ da
        db = db + da.sum(axis=0)
        carry = da @ W_hh.T
    dh0 = carry
    return loss, (dW_xh, dW_hh, db, dh0)


@given(rnn_configs(max_T=6), st.integers(0, 2**32 - 1), st.booleans())
def test_the_engine_agrees_with_a_hand_written_bptt(config, seed, zero_h0):
    rng = np.random.default_rng(seed)
    T, B, D, H = config
    xs = rng.normal(size=(T, B, D))
    h0 = np.zeros((B, H)) if zero_h0 else rng.normal(size=(B, H))
    weights = rng.integers(0, 2, size=T).astype(float)  # a loss mask over the steps
    weights[-1] = 1.0
    readout = rng.normal(size=(B, H))
    cell = RNNCell(D, H, seed=seed % 1000)
    h0_t = mg.tensor(h0, requires_grad=True)
    hs, _ = RNN(cell)(xs, h0=h0_t)
    loss = sum(w * (readout * h).sum() for w, h in zip(weights, hs))
    loss.backward()
    want_loss, wants = numpy_bptt(xs, h0, cell.W_xh.value, cell.W_hh.value, cell.b.value,
                                  readout, weights)
    np.testing.assert_allclose(loss.item(), want_loss, rtol=1e-10)
    for got, want in zip((cell.W_xh.grad, cell.W_hh.grad, cell.b.grad, h0_t.grad), wants):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_the_min_char_rnn_configuration_agrees_with_its_hand_written_gradient():
    rng = np.random.default_rng(4)
    V, H, T = 20, 100, 25
    ids = rng.integers(0, V, size=T + 1)
    model = RNNModel(RNNCell(V, H, seed=5), mg.nn.Linear(H, V, seed=6))
    eye = np.eye(V)
    outputs, _ = model([eye[[i]] for i in ids[:-1]])
    loss = sum(mg.functional.cross_entropy(o, ids[t + 1:t + 2], reduction="sum")
               for t, o in enumerate(outputs))
    loss.backward()
    cell, head = model.rnn.cell, model.head
    want_loss, (dWxh, dWhh, dWhy, dbh, dby) = min_char_rnn_gradient(
        ids[:-1], ids[1:], np.zeros((H, 1)), cell.W_xh.value.T, cell.W_hh.value.T,
        head.W.value.T, cell.b.value[:, None], head.b.value[:, None], V)
    np.testing.assert_allclose(loss.item(), want_loss, rtol=1e-10)
    for got, want in ((cell.W_xh.grad, dWxh.T), (cell.W_hh.grad, dWhh.T), (head.W.grad, dWhy.T),
                      (cell.b.grad, dbh[:, 0]), (head.b.grad, dby[:, 0])):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


# -- modules, state, files -----------------------------------------------------------------------

class Tiny(mg.nn.Module):
    def __init__(self):
        self.rnn = RNN(GRUCell(2, 3, seed=0))
        self.head = mg.nn.Linear(3, 2, seed=1)


def test_changing_the_input_array_after_the_forward_pass_changes_no_gradient():
    """The RNN copies a writable input sequence once (each step's slice is then a read-only
    view the graph keeps): writing into the caller's array afterwards changes nothing."""
    rng = np.random.default_rng(1)
    model = RNNModel(RNNCell(3, 4, seed=0), mg.nn.Linear(4, 2, seed=1))
    xs = rng.normal(size=(5, 2, 3))

    def gradient(inputs, spoil=False):
        model.zero_grad()
        outputs, _ = model(inputs)
        loss = mg.stack(outputs).sum()
        if spoil:
            inputs[...] = 0.0
        loss.backward()
        return [p.grad.copy() for p in model.parameters()]

    want = gradient(xs.copy())
    for got, expected in zip(gradient(xs, spoil=True), want):
        np.testing.assert_array_equal(got, expected)


def test_parameters_are_named_by_path_in_a_stable_order():
    model = Tiny()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["rnn.cell.W_ih", "rnn.cell.W_hh", "rnn.cell.b_ih", "rnn.cell.b_hh",
                     "head.W", "head.b"]
    assert [p.name for p in model.parameters()] == names
    assert names == [name for name, _ in Tiny().named_parameters()]


def test_a_shared_parameter_is_listed_once_and_zero_grad_clears_all():
    model = Tiny()
    model.tied = model.head.W
    assert len(model.parameters()) == 6
    (model.head.W.sum() + model.rnn.cell.b_ih.sum()).backward()
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_save_then_load_is_bit_exact(tmp_path):
    model, other = Tiny(), Tiny()
    for p in other.parameters():
        p.value = p.value + 1.0
    mg.save(model, tmp_path / "model.npz", step=np.array(7))
    back = mg.load(other, tmp_path / "model.npz")
    assert int(back["step"]) == 7
    for (name, a), (_, b) in zip(model.named_parameters(), other.named_parameters()):
        assert np.array_equal(a.value, b.value), name


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("head.b"), r"missing \['head.b'\]"),
    (lambda s: s.update({"head.c": np.zeros(2)}), r"unexpected \['head.c'\]"),
    (lambda s: s.update({"head.W": np.zeros((2, 3))}), r"head.W: shape \(2, 3\)"),
    (lambda s: s.update({"head.W": s["head.W"].astype(np.float32)}), "head.W: dtype float32"),
])
def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(change, message):
    model = Tiny()
    before = model.state_dict()
    state = Tiny().state_dict()
    for p in state:
        state[p] = state[p] + 5.0
    change(state)
    with pytest.raises(ValueError, match=message):
        model.load_state_dict(state)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())


def test_files_with_pickles_or_that_are_not_npz_are_refused(tmp_path):
    model = Tiny()
    before = model.state_dict()
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{"head.W": np.array([object()], dtype=object)})
    with pytest.raises(ValueError, match="pickled objects"):
        mg.load(model, pickled)
    text = tmp_path / "notes.npz"
    text.write_text("not an archive")
    with pytest.raises(ValueError, match="not an .npz file|pickled"):
        mg.load(model, text)
    with pytest.raises(FileNotFoundError):
        mg.load(model, tmp_path / "missing.npz")
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())
