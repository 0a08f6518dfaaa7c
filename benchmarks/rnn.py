"""The benchmark RNN, written three ways: with microgradrnn, by hand in NumPy, and (optionally)
with HIPS autograd.

An Elman RNN over T steps of one-hot inputs (batch B, vocabulary V, hidden H):

    h_t      = tanh(x_t @ W_xh + h_{t-1} @ W_hh + b_h),   h_0 = 0
    logits_t = h_t @ W_hy + b_y
    loss     = mean over (t, b) of softmax cross-entropy(logits_t[b], target_t[b])

All three versions run the same algorithm with the same operations at the same granularity
(one input matmul, one recurrent matmul, one tanh and one output matmul per step; the T logits
stacked into (T, B, V) and one cross-entropy over them), so the ratio between them measures the
cost of the machinery, not a different algorithm.
"""
from __future__ import annotations

import numpy as np

PARAM_NAMES = ("W_xh", "W_hh", "b_h", "W_hy", "b_y")


class Problem:
    """Fixed random data and parameters for one benchmark run (float64)."""

    def __init__(self, V=64, H=128, B=32, T=50, seed=0):
        rng = np.random.default_rng(seed)
        self.V, self.H, self.B, self.T = V, H, B, T
        tokens = rng.integers(0, V, size=(T, B))
        self.xs = np.eye(V)[tokens]                          # (T, B, V) one-hot inputs
        self.targets = rng.integers(0, V, size=(T, B))       # (T, B) class indices
        self.h0 = np.zeros((B, H))
        self.params = (
            rng.normal(0.0, 1.0 / np.sqrt(V), (V, H)),        # W_xh
            rng.normal(0.0, 1.0 / np.sqrt(H), (H, H)),        # W_hh
            np.zeros(H),                                      # b_h
            rng.normal(0.0, 1.0 / np.sqrt(H), (H, V)),        # W_hy
            np.zeros(V),                                      # b_y
        )

    def random_direction(self, seed):
        """A random tangent, one array per parameter (unit scale)."""
        rng = np.random.default_rng(seed)
        return tuple(rng.normal(size=p.shape) for p in self.params)

    @property
    def n_params(self):
        return sum(p.size for p in self.params)


# -- microgradrnn ---------------------------------------------------------------------------------

def engine_functions(problem):
    """(model_fn, loss_fn, f): stacked logits (T, B, V) of the parameters, the mean cross-entropy
    of logits, and f = loss_fn o model_fn (scalar), written with microgradrnn operations."""
    import microgradrnn as mg

    xs, h0, targets, T = problem.xs, problem.h0, problem.targets, problem.T

    def model_fn(W_xh, W_hh, b_h, W_hy, b_y):
        h = h0
        logits = []
        for t in range(T):
            h = mg.tanh(xs[t] @ W_xh + h @ W_hh + b_h)
            logits.append(h @ W_hy + b_y)
        return mg.stack(logits)

    def loss_fn(logits):
        return mg.functional.cross_entropy(logits, targets)

    def f(*params):
        return loss_fn(model_fn(*params))

    return model_fn, loss_fn, f


# -- hand-written NumPy ---------------------------------------------------------------------------

def numpy_forward(problem, params):
    """Forward pass by hand: (loss, cache) where cache holds what the backward pass needs."""
    W_xh, W_hh, b_h, W_hy, b_y = params
    xs, T = problem.xs, problem.T
    hs = [problem.h0]
    logits = []
    for t in range(T):
        h = np.tanh(xs[t] @ W_xh + hs[-1] @ W_hh + b_h)
        hs.append(h)
        logits.append(h @ W_hy + b_y)
    logits = np.stack(logits)                                     # (T, B, V)
    shift = logits.max(axis=-1, keepdims=True)
    exps = np.exp(logits - shift)
    sums = exps.sum(axis=-1, keepdims=True)
    log_probs = logits - shift - np.log(sums)
    t_idx, b_idx = np.indices(problem.targets.shape)
    loss = -log_probs[t_idx, b_idx, problem.targets].mean()
    return loss, (hs, logits, exps / sums)


def numpy_loss_cotangent(problem, probs):
    """d(mean cross-entropy)/d(logits) = (softmax - one_hot) / (T B)."""
    d = probs.copy()
    t_idx, b_idx = np.indices(problem.targets.shape)
    d[t_idx, b_idx, problem.targets] -= 1.0
    d /= problem.targets.size
    return d


def numpy_backward(problem, params, hs, dlogits):
    """Backpropagation through time by hand: the cotangent ``dlogits`` (T, B, V) pulled back
    to the five parameters (J^T dlogits)."""
    W_xh, W_hh, b_h, W_hy, b_y = params
    xs = problem.xs
    dW_xh, dW_hh, db_h = np.zeros_like(W_xh), np.zeros_like(W_hh), np.zeros_like(b_h)
    dW_hy, db_y = np.zeros_like(W_hy), np.zeros_like(b_y)
    dh_next = np.zeros_like(problem.h0)
    for t in reversed(range(problem.T)):
        h = hs[t + 1]
        dl = dlogits[t]
        dW_hy += h.T @ dl
        db_y += dl.sum(axis=0)
        dh = dl @ W_hy.T + dh_next
        da = dh * (1.0 - h * h)
        dW_xh += xs[t].T @ da
        dW_hh += hs[t].T @ da
        db_h += da.sum(axis=0)
        dh_next = da @ W_hh.T
    return dW_xh, dW_hh, db_h, dW_hy, db_y


def numpy_grad(problem, params):
    """(loss, gradient): forward and backward of the whole RNN by hand."""
    loss, (hs, _, probs) = numpy_forward(problem, params)
    return loss, numpy_backward(problem, params, hs, numpy_loss_cotangent(problem, probs))


def numpy_logits(problem, params):
    return numpy_forward(problem, params)[1][1]


# -- HIPS autograd (optional) ---------------------------------------------------------------------

def autograd_functions(problem):
    """(f_flat, unflatten): the same loss as a function of one flat parameter vector, for
    ``autograd.grad`` and ``autograd.hessian_vector_product``. Raises ImportError without it."""
    import autograd.numpy as anp

    shapes = [p.shape for p in problem.params]
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0] + sizes)
    xs, h0, T = problem.xs, problem.h0, problem.T
    t_idx, b_idx = np.indices(problem.targets.shape)
    targets = problem.targets

    def unflatten(theta):
        return tuple(theta[offsets[i]:offsets[i + 1]].reshape(shapes[i]) for i in range(5))

    def f_flat(theta):
        W_xh, W_hh, b_h, W_hy, b_y = unflatten(theta)
        h = h0
        logits = []
        for t in range(T):
            h = anp.tanh(anp.dot(xs[t], W_xh) + anp.dot(h, W_hh) + b_h)
            logits.append(anp.dot(h, W_hy) + b_y)
        logits = anp.stack(logits)
        shift = anp.max(logits, axis=-1, keepdims=True)
        log_probs = logits - shift - anp.log(anp.sum(anp.exp(logits - shift), axis=-1,
                                                      keepdims=True))
        return -anp.mean(log_probs[t_idx, b_idx, targets])

    return f_flat, unflatten


def flatten(arrays):
    return np.concatenate([np.ravel(a) for a in arrays])
