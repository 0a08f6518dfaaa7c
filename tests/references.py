"""Independent references for the tests, written by hand from published equations (not from
the engine), and a spy that records what an optimizer is handed."""
import numpy as np


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
