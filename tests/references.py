"""Independent references for the tests, written by hand from published equations (not from
the engine), a spy that records what an optimizer is handed, and the scalar linear RNN worked by hand."""
import numpy as np

import microgradrnn as mg


class GradientSpy:
    """An optimizer that records the gradients it is given and never moves the parameters."""

    def __init__(self, params):
        self.params, self.seen = list(params), []

    def step(self):
        self.seen.append([np.array(p.grad) for p in self.params])

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def min_char_rnn_gradient(inputs, targets, hprev, Wxh, Whh, Why, bh, by, vocab):
    """min-char-rnn's loss function (column-vector form), written from its equations."""
    xs, hs, ps, loss = {}, {-1: hprev}, {}, 0.0
    for t in range(len(inputs)):
        xs[t] = np.zeros((vocab, 1))
        xs[t][inputs[t]] = 1
        hs[t] = np.tanh(Wxh @ xs[t] + Whh @ hs[t - 1] + bh)
        ys = Why @ hs[t] + by
        ps[t] = np.exp(ys - ys.max()) / np.sum(np.exp(ys - ys.max()))
        loss += -np.log(ps[t][targets[t], 0])
    grads = [np.zeros_like(a) for a in (Wxh, Whh, Why, bh, by)]
    dWxh, dWhh, dWhy, dbh, dby = grads
    dhnext = np.zeros_like(hprev)
    for t in reversed(range(len(inputs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1
        dWhy += dy @ hs[t].T
        dby += dy
        dh = Why.T @ dy + dhnext
        dhraw = (1 - hs[t] ** 2) * dh
        dbh += dhraw
        dWxh += dhraw @ xs[t].T
        dWhh += dhraw @ hs[t - 1].T
        dhnext = Whh.T @ dhraw
    return loss, grads


class ScalarLinear(mg.nn.Module):
    """x_t = w x_(t-1), x_0 = 0.9, w = 0.2 (the example of the RNN/BPTT issue):
    dx_t/dw = t w^(t-1) x_0 (0.9, 0.36, 0.108), the gradient of x_3 truncated to 1, 2, 3 steps
    back is 0.036, 0.072, 0.108. A model with ``step`` and ``initial_state``, as RNNModel."""

    def __init__(self):
        self.w = mg.Parameter(0.2, name="w")

    def initial_state(self, batch):
        return mg.tensor(0.9)

    def step(self, x, state, t):
        with mg.scope(t=t):
            state = self.w * state
        return state, state
