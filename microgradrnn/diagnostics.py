"""Vanishing and exploding gradients, measured with the engine.

An Elman RNN in the ``x @ W`` convention (row vectors) computes
``h_t = tanh(a_t)``, ``a_t = x_t W_xh + h_{t-1} W_hh + b``. Its one-step Jacobian, with
``J[i, j] = d h_t[i] / d h_{t-1}[j]``, is

    J_t = dh_t/dh_{t-1} = diag(1 - h_t**2) W_hh^T,

and a loss at the last step reaches h_t through the product (the chain rule over T - t steps)

    dh_T/dh_t = J_T J_{T-1} ... J_{t+1},        dL/dh_t = (dh_T/dh_t)^T dL/dh_T.

Since |tanh'| <= gamma = 1, ||J_k||_2 <= s = the largest singular value of W_hh, so
``||dh_T/dh_t||_2 <= s**(T - t)``: s < 1 is *sufficient* for the gradient to vanish
geometrically in the lag T - t, and s > 1 is *necessary* for it to explode (Pascanu, Mikolov &
Bengio 2013, "On the difficulty of training recurrent neural networks", Sec. 2 and 3; Bengio,
Simard & Frasconi 1994, "Learning long-term dependencies with gradient descent is difficult").
Without the tanh (a linear RNN) the product is ``(W_hh^T)**(T - t)``, which grows like
``rho**(T - t)`` for a spectral radius rho > 1 and shrinks like it for rho < 1.

Provided: :func:`spectral_radius`, :func:`largest_singular_value`,
:func:`scale_to_spectral_radius`; :func:`hidden_gradient_norms` (``||dL/dh_t||``),
:func:`jacobian_products` (``dh_T/dh_t``) and :func:`jacobian_norms`, all computed by
backpropagating through the unrolled graph; :class:`LinearRNNCell`, :func:`build_cell`,
:func:`vanishing_table`, :func:`format_table` and :func:`plot_vanishing`.
"""
from __future__ import annotations

import numpy as np

from .autodiff import enable_grad
from .nn import RNN, GRUCell, LSTMCell, RNNCell
from .ops._core import value_of
from .tensor import tensor
from .transforms import grad

__all__ = ["spectral_radius", "largest_singular_value", "scale_to_spectral_radius",
           "hidden_gradient_norms", "jacobian_products", "jacobian_norms", "LinearRNNCell",
           "build_cell", "vanishing_table", "format_table", "plot_vanishing"]


# -- matrices ------------------------------------------------------------------------------------

def _matrix(W, op, square=True):
    W = np.asarray(value_of(W))
    if W.ndim != 2 or (square and W.shape[0] != W.shape[1]):
        raise ValueError(f"{op}: expected a {'square ' if square else ''}matrix, "
                         f"got shape {W.shape}")
    return W


def spectral_radius(W):
    """rho(W) = max |lambda_i(W)|, the largest eigenvalue modulus of a square matrix
    (an array or a Tensor). It governs the growth of ||W^k|| ~ rho^k (Gelfand's formula)."""
    return float(np.max(np.abs(np.linalg.eigvals(_matrix(W, "spectral_radius")))))


def largest_singular_value(W):
    """sigma_max(W) = ||W||_2 = sqrt(lambda_max(W^T W)); rho(W) <= sigma_max(W)."""
    return float(np.linalg.norm(_matrix(W, "largest_singular_value", square=False), 2))


def scale_to_spectral_radius(W, rho):
    """``W * rho / rho(W)``, a new array whose spectral radius is ``rho`` (eigenvectors kept).

    A matrix of spectral radius 0 (zero, or nilpotent with exactly zero computed eigenvalues)
    has no scale that reaches ``rho > 0``: that is a ValueError.
    """
    W = _matrix(W, "scale_to_spectral_radius")
    if not rho >= 0:
        raise ValueError(f"scale_to_spectral_radius: rho must be >= 0, got {rho}")
    current = spectral_radius(W)
    if current == 0:
        raise ValueError("scale_to_spectral_radius: W has spectral radius 0 (all its "
                         "eigenvalues are zero), so no multiple of it has radius "
                         f"{rho}; start from a matrix with a nonzero eigenvalue")
    return W * (rho / current)


# -- gradients through the unrolled graph --------------------------------------------------------

def _steps(xs):
    """The inputs as a list of constant (B, D) arrays; a (T, D) sequence is a batch of one."""
    xs = [np.asarray(value_of(x)) for x in value_of(xs)]
    if not xs:
        raise ValueError("diagnostics: the sequence is empty (T = 0)")
    return [x[None, :] if x.ndim == 1 else x for x in xs]


def _unroll(rnn, xs, h0):
    """Run ``rnn`` from a fresh leaf state: [h_0, h_1, ..., h_T], each a recorded Tensor.

    Every part of the initial state becomes a new leaf that requires grad, so h_0 is in the
    graph too; h_t is ``cell.output(state_t)`` (for an LSTM the h of (h, c): the derivatives
    are with respect to h_t with c_t held fixed, the partial derivatives through that node).
    """
    state = rnn.cell.initial_state(xs[0].shape[0]) if h0 is None else h0
    parts = state if isinstance(state, tuple) else (state,)
    parts = tuple(tensor(np.array(value_of(s)), requires_grad=True) for s in parts)
    state = parts if isinstance(state, tuple) else parts[0]
    with enable_grad():
        hs, _ = rnn(xs, state)
    return [rnn.cell.output(state), *hs]


def _values(grads, like):
    return [np.zeros(h.shape) if g is None else g.value for g, h in zip(grads, like)]


def hidden_gradient_norms(rnn, xs, h0=None, readout=None):
    """``||dL/dh_t||`` for t = 1..T (entry t - 1), for a loss at the last step only,
    ``L = sum(readout * h_T)`` (``readout``: ones by default, or an array of h_T's shape).

    Entry T - 1 is lag 0 (h_T itself, where dL/dh_T = readout); entry t - 1 is lag T - t, so
    ``norms[::-1]`` is indexed by lag. ``rnn`` is an :class:`~microgradrnn.nn.RNN` of any
    cell; ``xs`` a list of (B, D) inputs or a (T, B, D) array; ``h0`` the initial state
    (zeros when None). For a batch, the norm is taken over the whole (B, H) gradient.
    One backward pass: the cotangent that reaches each hidden state's node.
    """
    hs = _unroll(rnn, _steps(xs), h0)[1:]
    readout = np.ones(hs[-1].shape) if readout is None else np.asarray(value_of(readout))
    if readout.shape != hs[-1].shape:
        raise ValueError(f"hidden_gradient_norms: readout has shape {readout.shape}, h_T has "
                         f"shape {hs[-1].shape}")
    loss = (hs[-1] * readout).sum()
    grads = _values(grad(loss, hs, allow_unused=True), hs)
    return np.array([np.linalg.norm(g) for g in grads])


def jacobian_products(rnn, xs, h0=None):
    """The Jacobians ``dh_T/dh_t = J_T ... J_{t+1}`` for t = 0..T, as an array of shape
    (T + 1, H, H): entry t is the matrix with ``[i, j] = d h_T[i] / d h_t[j]`` (entry T is the
    identity, lag T - t = 0; entry 0 is h_0, lag T).

    For one sequence (a batch of one: (T, D) or (T, 1, D) inputs). Row i of every Jacobian
    at once is the vector-Jacobian product ``e_i^T dh_T/dh_t``: one backward pass from h_T
    seeded with the basis vector e_i, reading the cotangent at every h_t, so H passes in all.
    """
    xs = _steps(xs)
    if xs[0].shape[0] != 1:
        raise ValueError(f"jacobian_products: expects a batch of one sequence, got a batch of "
                         f"{xs[0].shape[0]}")
    hs = _unroll(rnn, xs, h0)
    H = hs[-1].shape[-1]
    jac = np.zeros((len(hs), H, H))
    for i in range(H):
        e_i = np.zeros((1, H))
        e_i[0, i] = 1.0
        rows = _values(grad(hs[-1], hs, grad_outputs=e_i, allow_unused=True), hs)
        for t, row in enumerate(rows):
            jac[t, i, :] = row[0]
    return jac


def jacobian_norms(rnn, xs, h0=None):
    """``||dh_T/dh_{T-k}||_2`` (largest singular value) indexed by the lag k = 0..T: the
    spectral norms of :func:`jacobian_products` in reverse order (entry 0 is 1)."""
    return np.linalg.norm(jacobian_products(rnn, xs, h0)[::-1], 2, axis=(1, 2))


# -- the experiment: gradient norm against lag, one curve per spectral radius --------------------

class LinearRNNCell(RNNCell):
    """The Elman cell without its tanh: h' = x W_xh + h W_hh + b. Its Jacobian is
    dh_t/dh_{t-1} = W_hh^T at every step, so dh_T/dh_t = (W_hh^T)^(T-t) exactly."""

    def forward(self, x, h):
        return x @ self.W_xh + h @ self.W_hh + self.b


_CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}


def build_cell(hidden_size=32, spectral_radius=1.0, cell="rnn", linear=False, input_size=None,
               seed=0):
    """A seeded cell whose recurrent weight has the given spectral radius.

    Each (H, H) gate block of W_hh (one for "rnn", four for "lstm", three for "gru") is a
    Gaussian matrix with entries N(0, 1/H) rescaled to ``spectral_radius``; the same ``seed``
    gives the same matrices before scaling, so cells of different radii differ only by that
    scale. For "rnn" (and ``linear=True``, a :class:`LinearRNNCell`) the bias is zero; the
    gated cells keep their default biases. ``input_size`` defaults to ``hidden_size``.
    """
    if cell not in _CELLS:
        raise ValueError(f"build_cell: cell must be one of {sorted(_CELLS)}, got {cell!r}")
    if linear and cell != "rnn":
        raise ValueError("build_cell: linear=True is the Elman cell without tanh; use "
                         "cell='rnn'")
    H = hidden_size
    kind = LinearRNNCell if linear else _CELLS[cell]
    built = kind(H if input_size is None else input_size, H, seed=seed)
    rng = np.random.default_rng(seed)
    blocks = [scale_to_spectral_radius(rng.standard_normal((H, H)) / np.sqrt(H),
                                       spectral_radius) for _ in range(built.gates)]
    built.W_hh.value = np.concatenate(blocks, axis=1)
    if cell == "rnn":
        built.b.value = np.zeros(H)
    return built


def vanishing_table(spectral_radii=(0.5, 0.9, 1.0, 1.1, 1.5), hidden_size=32, steps=50,
                    cell="rnn", linear=False, seed=0, input_scale=0.1):
    """{radius: ``||dL/dh_{T-k}||`` for the lags k = 0..T-1} (arrays of shape (steps,)).

    For each radius, :func:`build_cell` with that spectral radius (same seed, so the same
    matrix up to scale), run on one sequence of small inputs ``input_scale * N(0, 1)``
    (the same for every radius) from h_0 = 0, with the loss ``L = sum(h_T)``; the dynamics
    are then driven by W_hh. See :func:`hidden_gradient_norms`.
    """
    rng = np.random.default_rng(seed)
    xs = input_scale * rng.standard_normal((steps, 1, hidden_size))
    table = {}
    for rho in spectral_radii:
        rnn = RNN(build_cell(hidden_size, rho, cell=cell, linear=linear, seed=seed))
        table[float(rho)] = hidden_gradient_norms(rnn, xs)[::-1]
    return table


def format_table(table, lags=(0, 1, 2, 5, 10, 20, 49)):
    """A text table of a :func:`vanishing_table`: one row per lag, one column per spectral
    radius, the norms in scientific notation. Lags beyond the shortest row are left out."""
    radii = list(table)
    longest = min(len(norms) for norms in table.values())
    lags = [k for k in lags if 0 <= k < longest]
    width = 11
    lines = ["lag".rjust(5) + "".join(f"rho={rho:g}".rjust(width) for rho in radii)]
    for k in lags:
        lines.append(f"{k:5d}" + "".join(f"{table[rho][k]:.3e}".rjust(width) for rho in radii))
    return "\n".join(lines)


def plot_vanishing(table, path):
    """Write a PNG of gradient norm against lag (log y-axis), one curve per spectral radius,
    and return ``path``. Draws on a Figure of its own with the Agg canvas: no window, no
    pyplot state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for rho, norms in table.items():
        norms = np.asarray(norms, dtype=float)
        shown = np.where(norms > 0, norms, np.nan)  # a log axis cannot show 0
        ax.plot(np.arange(len(norms)), shown, label=f"spectral radius {rho:g}")
    ax.set_yscale("log")
    ax.set_xlabel("lag T - t (steps between h_t and the loss at step T)")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title("Gradient norm against lag")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    return path
