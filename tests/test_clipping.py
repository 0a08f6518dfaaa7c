"""Gradient clipping (clip_grad_norm, clip_grad_value) against NumPy, min-char-rnn's clip +
Adagrad reproduced bit for bit, and what rescaling the loss (sum vs mean) does to each optimizer.
"""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import microgradrnn as mg
import microgradrnn.optim as optim
from microgradrnn.testing.strategies import small_shapes

FLOATS = st.floats(-3, 3, allow_subnormal=False)


def arrays(shape):
    return hnp.arrays(np.float64, shape, elements=FLOATS)


# -- clipping ------------------------------------------------------------------------------------

def grad_lists():
    return st.lists(small_shapes(max_dims=2).flatmap(arrays), min_size=1, max_size=3)


def with_grads(grads):
    """Parameters holding ``grads``, plus one without a gradient (clipping must skip it)."""
    params = [mg.Parameter(np.zeros(g.shape)) for g in grads]
    for p, g in zip(params, grads):
        p.grad = g
    return params + [mg.Parameter(np.zeros(2))]


@pytest.mark.parametrize("factor", [0.3, 3.0])
@given(grads=grad_lists(), norm_type=st.sampled_from([1.0, 2.0, 3.0, math.inf]))
def test_clip_grad_norm_matches_numpy(factor, grads, norm_type):
    """The returned norm is the p-norm of all gradients concatenated; with max_norm below it
    (factor 0.3) every gradient is scaled by max_norm / (norm + 1e-6), with max_norm above it
    (factor 3) nothing changes. The old gradient arrays are never written into."""
    flat = np.abs(np.concatenate([g.ravel() for g in grads]))
    norm = flat.max() if norm_type == math.inf else (flat ** norm_type).sum() ** (1 / norm_type)
    max_norm = factor * norm
    copies = [g.copy() for g in grads]
    params = with_grads(grads)
    total = optim.clip_grad_norm(params, max_norm, norm_type)
    assert isinstance(total, float) and math.isclose(total, norm, rel_tol=1e-12, abs_tol=1e-300)
    assert params[-1].grad is None
    scale = max_norm / (norm + 1e-6)
    for p, g, g0 in zip(params, grads, copies):
        assert np.array_equal(g, g0)
        expected = g0 * scale if scale < 1 else g0
        np.testing.assert_allclose(p.grad, expected, rtol=1e-12, atol=1e-300)
    if factor < 1 and norm > 0:
        clipped = np.abs(np.concatenate([p.grad.ravel() for p in params[:-1]]))
        after = clipped.max() if norm_type == math.inf else \
            (clipped ** norm_type).sum() ** (1 / norm_type)
        assert after <= max_norm * (1 + 1e-12)


@given(grads=grad_lists(), clip_value=st.floats(0, 3))
def test_clip_grad_value_matches_numpy_clip(grads, clip_value):
    copies = [g.copy() for g in grads]
    params = with_grads(grads)
    optim.clip_grad_value(params, clip_value)
    for p, g, g0 in zip(params, grads, copies):
        assert np.array_equal(g, g0)                     # rebound, not written into
        assert np.array_equal(p.grad, np.clip(g0, -clip_value, clip_value))
    assert params[-1].grad is None


def test_clipping_refuses_bad_thresholds():
    params = with_grads([np.ones(2)])
    with pytest.raises(ValueError, match="max_norm must be a number >= 0"):
        optim.clip_grad_norm(params, -1.0)
    with pytest.raises(ValueError, match="norm_type must be a number > 0"):
        optim.clip_grad_norm(params, 1.0, norm_type=0)
    with pytest.raises(ValueError, match="clip_value must be a number >= 0"):
        optim.clip_grad_value(params, float("nan"))
    params[0].grad = np.array([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="norm of the gradients is inf"):
        optim.clip_grad_norm(params, 1.0, error_if_nonfinite=True)


# -- min-char-rnn and scale -----------------------------------------------------------------------

def test_adagrad_with_value_clipping_reproduces_min_char_rnn_bit_for_bit():
    """Karpathy's min-char-rnn.py update, run verbatim on NumPy copies, against
    clip_grad_value(5) + Adagrad(lr=0.1, eps=1e-8, eps_inside_sqrt=True): equal arrays."""
    rng = np.random.default_rng(8)
    shapes = [(6, 5), (6, 6), (5, 6), (6, 1), (5, 1)]      # Wxh, Whh, Why, bh, by
    arrays_np = [rng.normal(size=s) * 0.01 for s in shapes]
    mems = [np.zeros_like(a) for a in arrays_np]
    params = [mg.Parameter(a) for a in arrays_np]
    opt = optim.Adagrad(params, lr=1e-1, eps=1e-8, eps_inside_sqrt=True)
    learning_rate = 1e-1
    for _ in range(10):
        grads = [rng.normal(size=s) * 4 for s in shapes]   # some entries beyond +-5
        dparams = [g.copy() for g in grads]
        for dparam in dparams:                             # min-char-rnn, as written there
            np.clip(dparam, -5, 5, out=dparam)
        for param, dparam, mem in zip(arrays_np, dparams, mems):
            mem += dparam * dparam
            param += -learning_rate * dparam / np.sqrt(mem + 1e-8)
        for p, g in zip(params, grads):
            p.grad = g
        optim.clip_grad_value(params, 5)
        opt.step()
    for p, a, mem, state in zip(params, arrays_np, mems, opt.state):
        assert np.array_equal(p.value, a) and np.array_equal(state["sum"], mem)


def sequence_loss(W, xs, reduction):
    terms = [((W @ x).tanh() ** 2).sum() for x in xs]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total / len(xs) if reduction == "mean" else total


def trained(make_opt, reduction, steps=3, T=5):
    rng = np.random.default_rng(9)
    W = mg.Parameter(rng.normal(size=(3, 3)))
    xs = [rng.normal(size=3) for _ in range(T)]
    opt = make_opt([W])
    for _ in range(steps):
        opt.zero_grad()
        sequence_loss(W, xs, reduction).backward()
        opt.step()
    return W.value


def test_sgd_on_the_mean_with_lr_times_T_is_sgd_on_the_sum():
    """SGD is linear in the gradient: lr*T on the mean over T steps = lr on the sum."""
    T, lr = 5, 0.01
    on_sum = trained(lambda ps: optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True), "sum", T=T)
    on_mean = trained(lambda ps: optim.SGD(ps, lr=lr * T, momentum=0.9, nesterov=True), "mean",
                      T=T)
    np.testing.assert_allclose(on_mean, on_sum, rtol=1e-12)


@pytest.mark.parametrize("cls", [optim.Adagrad, optim.RMSprop, optim.Adam])
def test_adaptive_optimizers_take_the_same_steps_on_the_mean_and_on_the_sum(cls):
    """With eps = 0 they divide out the gradient's scale: the same lr gives the same steps on
    the mean and on the sum, so lr*T on the mean would be T times too large."""
    on_sum = trained(lambda ps: cls(ps, lr=0.01, eps=0.0), "sum")
    on_mean = trained(lambda ps: cls(ps, lr=0.01, eps=0.0), "mean")
    np.testing.assert_allclose(on_mean, on_sum, rtol=1e-12)
    larger = trained(lambda ps: cls(ps, lr=0.05, eps=0.0), "mean")
    assert not np.allclose(larger, on_sum, rtol=1e-6)
