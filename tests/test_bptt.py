"""BPTT tools: per-step contributions against untied copies, truncated BPTT against its
definition, checkpointed unrolling against plain BPTT."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from references import GradientSpy, ScalarLinear
from microgradrnn.bptt import TruncatedBPTT, checkpointed_loss, contributions
from microgradrnn.nn import GRUCell, LSTMCell, RNN, RNNCell, RNNModel
from microgradrnn.testing.strategies import rnn_configs

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def _recurrent_weight(cell):
    return cell.W_hh


def _unroll_untied(cell, xs, name, copies):
    """The same unroll, with a separate leaf for ``name`` at each step (the untied model)."""
    original = getattr(cell, name)
    state = cell.initial_state(xs.shape[1])
    hs = []
    try:
        for t, x in enumerate(xs):
            object.__setattr__(cell, name, copies[t])
            state = cell(x, state)
            hs.append(cell.output(state))
    finally:
        object.__setattr__(cell, name, original)
    return hs


@given(st.sampled_from(sorted(CELLS)), rnn_configs(max_T=5), st.integers(0, 2**32 - 1))
def test_each_row_is_the_gradient_of_an_untied_copy(kind, config, seed):
    rng = np.random.default_rng(seed)
    T, B, D, H = config
    cell = CELLS[kind](D, H, seed=seed % 997)
    xs = rng.normal(size=(T, B, D))
    mask = rng.integers(0, 2, size=T).astype(float)   # the loss at a random subset of steps
    mask[rng.integers(0, T)] = 1.0
    readout = rng.normal(size=(B, H))
    for name in ("W_hh", "W_xh" if kind == "rnn" else "W_ih"):
        param = getattr(cell, name)
        hs, _ = RNN(cell)(xs)
        loss = sum(m * (readout * h).sum() for m, h in zip(mask, hs))
        split = contributions(loss, param)
        (total,) = mg.grad(loss, [param])
        np.testing.assert_allclose(split.steps.sum(0) + split.rest, total.value,
                                   rtol=1e-12, atol=1e-13)
        copies = [mg.Parameter(param.value) for _ in range(T)]
        untied = sum(m * (readout * h).sum()
                     for m, h in zip(mask, _unroll_untied(cell, xs, name, copies)))
        untied.backward()
        for t in range(T):
            np.testing.assert_allclose(split.steps[t], copies[t].grad, rtol=1e-12, atol=1e-13)
        assert np.all(split.rest == 0)


def test_untagged_consumers_go_to_rest():
    rng = np.random.default_rng(0)
    model = RNNModel(RNNCell(2, 3, seed=1), mg.nn.Linear(3, 2, seed=2))
    hs, _ = model.rnn(rng.normal(size=(4, 1, 2)))
    W = model.rnn.cell.W_hh
    head_outside = mg.nn.Linear(3, 1, seed=3)
    loss = head_outside(hs[-1]).sum() + 0.1 * (W * W).sum()  # a regulariser on W
    split = contributions(loss, W)
    np.testing.assert_allclose(split.rest, 0.2 * W.value, rtol=1e-14)
    loss.backward()
    np.testing.assert_allclose(split.steps.sum(0) + split.rest, W.grad, rtol=1e-12)


def test_a_parameter_sliced_inside_each_step_and_one_sliced_outside_the_loop():
    rng = np.random.default_rng(1)
    big = mg.Parameter(rng.normal(size=(3, 6)) * 0.5, name="big")
    xs = rng.normal(size=(4, 2, 3))

    def unroll(weight_at):
        h = mg.tensor(np.full((2, 3), 0.5))  # not zero, so that step 0 sends something
        for t in range(4):
            with mg.scope(t=t):
                h = (xs[t] + h @ weight_at(t)).tanh()
        return h.sum()

    inside = unroll(lambda t: big[:, 1:4])           # a slice node at every step (tagged t)
    once = big.reshape(6, 3).T[:, ::2]                # reshape, transpose, slice: outside
    outside = unroll(lambda t: once)
    for loss in (inside, outside):
        split = contributions(loss, big)
        (total,) = mg.grad(loss, [big])
        np.testing.assert_allclose(split.steps.sum(0) + split.rest, total.value, rtol=1e-12)
        assert np.all(split.rest == 0) and np.all(np.any(split.steps != 0, axis=(1, 2)))
    # The slice-inside split, against untied copies of the whole parameter.
    copies = [mg.Parameter(big.value) for _ in range(4)]
    unroll(lambda t: copies[t][:, 1:4]).backward()
    rows = contributions(inside, big).steps
    for t in range(4):
        np.testing.assert_allclose(rows[t], copies[t].grad, rtol=1e-12)


def test_an_operation_outside_the_loop_that_is_not_a_view_is_refused():
    W = mg.Parameter(np.eye(2) * 0.5, name="W")
    doubled = W * 2.0
    h = mg.tensor(np.ones((1, 2)))
    for t in range(3):
        with mg.scope(t=t):
            h = (h @ doubled).tanh()
    with pytest.raises(ValueError, match="outside any scope"):
        contributions(h.sum(), W)


@pytest.mark.parametrize("steps", ["all", "last", [True, False, True, True, False, False, True]])
def test_sgd_on_the_mean_with_n_times_the_rate_makes_the_sum_s_update(steps):
    rng = np.random.default_rng(2)
    T, lr = 7, 0.05
    xs, ys = rng.normal(size=(T, 2, 3)), rng.normal(size=(T, 2, 4))
    n = T if steps == "all" else 1 if steps == "last" else sum(steps)  # steps in the loss
    updates = []
    for reduction, rate in (("sum", lr), ("mean", lr * n)):
        cell = RNNCell(3, 4, seed=8)
        hs, _ = RNN(cell)(xs)
        loss = mg.bptt.sequence_loss(hs, ys, _mse, steps=steps, reduction=reduction)
        loss.backward()
        optimizer = mg.optim.SGD(cell.parameters(), lr=rate)
        optimizer.step()
        updates.append([p.value for p in cell.parameters()])
    for a, b in zip(*updates):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_sequence_loss_picks_the_steps_it_is_told():
    outputs = [mg.tensor([float(t)], requires_grad=True) for t in range(4)]
    ones = np.ones((4, 1))
    assert mg.bptt.sequence_loss(outputs, ones, lambda o, y: o.sum()).item() == 6.0
    assert mg.bptt.sequence_loss(outputs, ones, lambda o, y: o.sum(), steps="last").item() == 3.0
    masked = mg.bptt.sequence_loss(outputs, ones, lambda o, y: o.sum(),
                                   steps=[True, False, True, False], reduction="mean")
    assert masked.item() == 1.0
    with pytest.raises(ValueError, match="one entry per step"):
        mg.bptt.sequence_loss(outputs, ones, lambda o, y: o.sum(), steps=[True])


# -- truncated BPTT ----------------------------------------------------------------------------

def _last_step_loss(T):
    return lambda output, target: output * target


@pytest.mark.parametrize("k2, expected", [(1, 0.036), (2, 0.072), (3, 0.108), (10, 0.108)])
def test_the_scalar_linear_rnn_truncated_1_2_3_steps_back(k2, expected):
    model = ScalarLinear()
    spy = GradientSpy(model.parameters())
    trainer = TruncatedBPTT(model, _last_step_loss(3), spy, k1=1, k2=k2)
    for t in range(3):  # the loss is x_3: weight 1 at the third step only
        trainer.step(None, 1.0 if t == 2 else 0.0)
    np.testing.assert_allclose(spy.seen[-1][0], expected, rtol=1e-14)
    (full,) = mg.grad(model.w * (model.w * (model.w * 0.9)), [model.w])
    np.testing.assert_allclose(full.value, 0.108, rtol=1e-14)


def _stream_model(kind, seed):
    return RNNModel(CELLS[kind](2, 3, seed=seed), mg.nn.Linear(3, 2, seed=seed + 1))


def _mse(output, target):
    return mg.functional.mse(output, target, reduction="sum")


@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("k1, k2", [(3, 3), (2, 5), (1, 4)])
def test_a_truncated_gradient_is_the_sum_of_the_window_s_contributions(kind, k1, k2):
    """Statement: at an update after step n, the truncated gradient equals
    sum_{t = n-k2+1}^{n} steps[t] of contributions(L, W) for the full BPTT of the same loss
    L = sum of the losses at steps n-k1+1..n, taken from the same carried state."""
    rng = np.random.default_rng(3)
    T = 12
    xs, ys = rng.normal(size=(T, 1, 2)), rng.normal(size=(T, 1, 2))
    model = _stream_model(kind, 4)
    params = model.parameters()
    spy = GradientSpy(params)
    trainer = TruncatedBPTT(model, _mse, spy, k1=k1, k2=k2)
    for t in range(T):
        trainer.step(xs[t], ys[t])
    assert trainer.updates == T // k1
    outputs, _ = model(xs)  # the full BPTT of the last update's loss (parameters never moved)
    n = (T // k1) * k1
    loss = sum(_mse(outputs[t], ys[t]) for t in range(n - k1, n))
    for p, truncated in zip(params, spy.seen[-1]):
        split = contributions(loss, p, steps=T)
        window = split.steps[max(0, n - k2):n].sum(0)
        np.testing.assert_allclose(truncated, window, rtol=1e-11, atol=1e-13)


def test_a_window_as_long_as_the_sequence_is_full_bptt():
    rng = np.random.default_rng(5)
    T = 6
    xs, ys = rng.normal(size=(T, 1, 2)), rng.normal(size=(T, 1, 2))
    model = _stream_model("lstm", 6)
    spy = GradientSpy(model.parameters())
    trainer = TruncatedBPTT(model, _mse, spy, k1=T, k2=T)
    for t in range(T):
        trainer.step(xs[t], ys[t])
    outputs, _ = model(xs)
    full = mg.grad(sum(_mse(o, y) for o, y in zip(outputs, ys)), model.parameters())
    for truncated, g in zip(spy.seen[0], full):
        np.testing.assert_array_equal(truncated, g.value)


def test_time_tags_are_absolute_and_the_state_is_cut_between_chunks():
    model = _stream_model("rnn", 7)
    trainer = TruncatedBPTT(model, _mse, GradientSpy(model.parameters()), k1=3)
    rng = np.random.default_rng(8)
    for t in range(7):
        loss = trainer.step(rng.normal(size=(1, 2)), rng.normal(size=(1, 2)))
        assert isinstance(loss, float)
    with mg.record_edge_grads(only=[model.rnn.cell.W_hh]) as record:
        trainer._chunk_loss.backward()  # the open chunk: step 6 only
        tags = sorted(e.consumer.tags["t"] for e in record.edges)
    assert tags == [6] and trainer.t == 7 and trainer.updates == 2


def test_truncated_bptt_trains_a_model():
    model = _stream_model("gru", 10)
    optimizer = mg.optim.SGD(model.parameters(), lr=0.05)
    trainer = TruncatedBPTT(model, _mse, optimizer, k1=5)
    signal = np.sin(np.arange(400) / 3.0)
    losses = [trainer.step(np.array([[signal[t], 0.0]]), np.array([[signal[t + 1], 0.0]]))
              for t in range(399)]
    assert np.mean(losses[-50:]) < 0.2 * np.mean(losses[:50])


def test_k1_larger_than_k2_is_refused():
    with pytest.raises(ValueError, match="1 <= k1 <= k2"):
        TruncatedBPTT(_stream_model("rnn", 0), _mse, None, k1=5, k2=3)


# -- checkpointing -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("segment", [None, 1, 4, 7])
def test_checkpointed_unrolling_gives_plain_bptt_s_loss_and_gradients(kind, segment):
    rng = np.random.default_rng(11)
    T = 7
    xs, targets = rng.normal(size=(T, 2, 2)), rng.integers(0, 2, size=(T, 2))
    model = _stream_model(kind, 12)

    def loss_fn(output, target):
        return mg.functional.cross_entropy(output, target)

    outputs, _ = model(xs)
    plain = sum(loss_fn(o, y) for o, y in zip(outputs, targets))
    checkpointed = checkpointed_loss(model, xs, targets, loss_fn, segment=segment)
    np.testing.assert_allclose(checkpointed.item(), plain.item(), rtol=1e-14)
    for a, b in zip(mg.grad(plain, model.parameters()),
                    mg.grad(checkpointed, model.parameters())):
        np.testing.assert_allclose(b.value, a.value, rtol=1e-12, atol=1e-14)


def test_checkpoint_with_closed_over_parameters():
    cell = RNNCell(2, 2, seed=13)
    h0 = mg.tensor(np.ones((1, 2)), requires_grad=True)
    run = lambda h: cell(np.ones((1, 2)), cell(np.ones((1, 2)), h))  # noqa: E731
    with pytest.raises(RuntimeError, match="params="):
        mg.checkpoint(run, h0).sum().backward()
    mg.checkpoint(run, h0, params=cell.parameters()).sum().backward()
    saved = [p.grad for p in cell.parameters()]
    cell.zero_grad()
    run(h0).sum().backward()
    for a, p in zip(saved, cell.parameters()):
        np.testing.assert_allclose(a, p.grad, rtol=1e-13)


def test_each_checkpointed_segment_is_recomputed_once_in_the_backward_pass():
    runs = []
    cell = RNNCell(2, 3, seed=14)

    def segment(h):
        runs.append(1)
        return cell(np.ones((1, 2)), h)

    h0 = mg.tensor(np.ones((1, 3)), requires_grad=True)
    out = mg.checkpoint(segment, h0, params=cell.parameters())  # 4 inputs: h and 3 weights
    assert len(runs) == 1
    out.sum().backward()
    assert len(runs) == 2  # the forward run and one recomputation for all four cotangents
