"""Recurrent cells: one time step each, written as a handful of primitive operations so that
the unrolled graph shows every one of them.

The ``x @ W`` convention: weights are (inputs, outputs). Gates are stacked along the last axis
in PyTorch's order (LSTM: i, f, g, o; GRU: r, z, n), so PyTorch's ``weight_ih`` is our
``W_ih.T``; :meth:`load_torch_weights` does the conversion. Where PyTorch has two biases that
are only ever added (RNN, LSTM) we keep their sum, ``b``.

``x W + b`` is written ``affine(x, W, b)``, and ``x W_xh + b + h W_hh`` is
``affine(h, W_hh, affine(x, W_xh, b))``: an affine node computes a product plus a term (BLAS's
gemm), so a step records one node per product and no separate additions (see
:func:`microgradrnn.ops.affine`). Nor is there an ``ndarray @ Tensor``, which reaches us only
through NumPy's ufunc override protocol and costs more than the product itself at small sizes
(the input is often a raw NumPy array).
"""
from __future__ import annotations

import numpy as np

from ..ops import affine, tanh
from ..tensor import Parameter, tensor
from .layers import uniform_init
from .module import Module

__all__ = ["RNNCell", "LSTMCell", "GRUCell"]


class _Cell(Module):
    """What every cell offers: ``cell(x, state) -> new state``, ``initial_state(batch)``,
    ``output(state)`` (the hidden vector h), and loading PyTorch-layout weights."""

    gates = 1

    def __init__(self, input_size, hidden_size, seed, rng, dtype):
        self.input_size, self.hidden_size = input_size, hidden_size
        rng = np.random.default_rng(seed) if rng is None else rng
        width = self.gates * hidden_size
        self._rng, self._dtype, self._width = rng, dtype, width

    def _weight(self, rows):
        return Parameter(uniform_init(self._rng, self.hidden_size, (rows, self._width)),
                         dtype=self._dtype)

    def _bias(self):
        return Parameter(uniform_init(self._rng, self.hidden_size, (self._width,)),
                         dtype=self._dtype)

    def initial_state(self, batch):
        return tensor(np.zeros((batch, self.hidden_size)), dtype=self._dtype)

    def output(self, state):
        return state

    def _load_torch_weights(self, W_in, W_hh, weight_ih, weight_hh):
        """Our (in, gates*H) weights from PyTorch's (gates*H, in) ones: the transposes."""
        rows = self._width
        W_in.value = self._check_torch("weight_ih", weight_ih, (rows, self.input_size)).T.copy()
        W_hh.value = self._check_torch("weight_hh", weight_hh, (rows, self.hidden_size)).T.copy()

    def _check_torch(self, name, array, shape):
        array = np.asarray(array, dtype=self._dtype)
        if array.shape != shape:
            raise ValueError(f"{type(self).__name__}.load_torch_weights: {name} has shape "
                             f"{array.shape}; PyTorch's layout for this cell is {shape}")
        return array


class RNNCell(_Cell):
    """Elman: h' = tanh(x W_xh + h W_hh + b)."""

    def __init__(self, input_size, hidden_size, *, seed=None, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, seed, rng, dtype)
        self.W_xh = self._weight(input_size)
        self.W_hh = self._weight(hidden_size)
        self.b = self._bias()

    def forward(self, x, h):
        return tanh(affine(h, self.W_hh, affine(x, self.W_xh, self.b)))

    def load_torch_weights(self, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        """From ``torch.nn.RNNCell`` arrays: W_xh = weight_ih.T, W_hh = weight_hh.T,
        b = bias_ih + bias_hh."""
        self._load_torch_weights(self.W_xh, self.W_hh, weight_ih, weight_hh)
        self.b.value = _bias_sum(self, bias_ih, bias_hh, (self._width,))


class LSTMCell(_Cell):
    """Long short-term memory, PyTorch's equations (gates stacked i, f, g, o)::

        i, f, o = sigmoid(x W_i. + h W_h. + b.)      g = tanh(x W_ig + h W_hg + b_g)
        c' = f * c + i * g                            h' = o * tanh(c')

    The state is the pair (h, c).
    """

    gates = 4

    def __init__(self, input_size, hidden_size, *, seed=None, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, seed, rng, dtype)
        self.W_ih = self._weight(input_size)
        self.W_hh = self._weight(hidden_size)
        self.b = self._bias()

    def forward(self, x, state):
        h, c = state
        H = self.hidden_size
        gates = affine(h, self.W_hh, affine(x, self.W_ih, self.b))
        i = gates[..., 0 * H:1 * H].sigmoid()
        f = gates[..., 1 * H:2 * H].sigmoid()
        g = gates[..., 2 * H:3 * H].tanh()
        o = gates[..., 3 * H:4 * H].sigmoid()
        c = f * c + i * g
        return o * c.tanh(), c

    def initial_state(self, batch):
        return super().initial_state(batch), super().initial_state(batch)

    def output(self, state):
        return state[0]

    def load_torch_weights(self, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        """From ``torch.nn.LSTMCell`` arrays (same gate order): W_ih = weight_ih.T,
        W_hh = weight_hh.T, b = bias_ih + bias_hh."""
        self._load_torch_weights(self.W_ih, self.W_hh, weight_ih, weight_hh)
        self.b.value = _bias_sum(self, bias_ih, bias_hh, (self._width,))


class GRUCell(_Cell):
    """Gated recurrent unit, PyTorch's equations (gates stacked r, z, n)::

        r = sigmoid(x W_ir + b_ir + h W_hr + b_hr)     z = sigmoid(x W_iz + b_iz + h W_hz + b_hz)
        n = tanh(x W_in + b_in + r * (h W_hn + b_hn))   h' = (1 - z) * n + z * h

    The hidden bias b_hn sits inside r * (...), so the two biases are kept apart.
    """

    gates = 3

    def __init__(self, input_size, hidden_size, *, seed=None, rng=None, dtype=np.float64):
        super().__init__(input_size, hidden_size, seed, rng, dtype)
        self.W_ih = self._weight(input_size)
        self.W_hh = self._weight(hidden_size)
        self.b_ih = self._bias()
        self.b_hh = self._bias()

    def forward(self, x, h):
        H = self.hidden_size
        gi = affine(x, self.W_ih, self.b_ih)
        gh = affine(h, self.W_hh, self.b_hh)
        r = (gi[..., 0 * H:1 * H] + gh[..., 0 * H:1 * H]).sigmoid()
        z = (gi[..., 1 * H:2 * H] + gh[..., 1 * H:2 * H]).sigmoid()
        n = (gi[..., 2 * H:3 * H] + r * gh[..., 2 * H:3 * H]).tanh()
        return (1.0 - z) * n + z * h

    def load_torch_weights(self, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
        """From ``torch.nn.GRUCell`` arrays (same gate order): W_ih = weight_ih.T,
        W_hh = weight_hh.T, b_ih = bias_ih, b_hh = bias_hh."""
        self._load_torch_weights(self.W_ih, self.W_hh, weight_ih, weight_hh)
        zeros, shape = np.zeros(self._width), (self._width,)
        self.b_ih.value = self._check_torch("bias_ih", zeros if bias_ih is None else bias_ih, shape)
        self.b_hh.value = self._check_torch("bias_hh", zeros if bias_hh is None else bias_hh, shape)


def _bias_sum(cell, bias_ih, bias_hh, shape):
    total = np.zeros(shape, dtype=cell._dtype)
    for name, bias in (("bias_ih", bias_ih), ("bias_hh", bias_hh)):
        if bias is not None:
            total = total + cell._check_torch(name, bias, shape)
    return total
