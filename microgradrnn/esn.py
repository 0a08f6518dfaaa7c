"""Echo state networks: a fixed random recurrent reservoir and a linear readout fitted in
closed form - the other way to train an RNN, with no backpropagation through time at all.

An echo state network (Jaeger 2001, "The 'echo state' approach to analysing and training
recurrent neural networks", GMD Report 148) drives a large random recurrent network, the
*reservoir*, with the input and, optionally, with its own output fed back; only the readout is
learnt. In the ``x @ W`` convention of this library (row vectors), with leaky-integrator units
(Jaeger, Lukosevicius, Popovici & Siewert 2007, "Optimization and applications of echo state
networks with leaky-integrator neurons", Neural Networks 20(3)):

    x(n) = (1 - a) x(n-1) + a tanh(u(n) W_in + x(n-1) W + y(n-1) W_fb + b)
    z(n) = [1, u(n), x(n)]                          (the extended state)
    y(n) = z(n) W_out

``W``, ``W_in``, ``W_fb`` and ``b`` are drawn once and never change; during training the
output fed back is the teacher's, ``y(n-1) = d(n-1)`` (teacher forcing). Then the targets are a
linear function of the collected states, and the readout is one regularised least-squares
problem (Tikhonov / ridge regression; Lukosevicius 2012, "A practical guide to applying echo
state networks", in Neural Networks: Tricks of the Trade):

    W_out = argmin_W ||Z W - D||^2 + ridge ||W||^2 = (Z^T Z + ridge I)^-1 Z^T D,

over the steps after a washout, where the state still remembers the arbitrary start.

Here the reservoir's weights are constant arrays and the readout a
:class:`~microgradrnn.tensor.Parameter`, so :meth:`EchoStateNetwork.unroll` builds an ordinary
graph in which the gradient of a loss reaches the readout and nothing else: there is no path
back through time to learn along. That is the contrast with BPTT, and ``mg.draw`` shows it.
Gradient descent on :meth:`EchoStateNetwork.ridge_loss` finds the same readout as
:meth:`EchoStateNetwork.fit`, only slower.
"""
from __future__ import annotations

import warnings

import numpy as np

from . import diagnostics, ops
from .autodiff import scope
from .nn.module import Module
from .ops._core import shape_of, value_of
from .tensor import Parameter, Tensor

__all__ = ["EchoStateNetwork", "sparse_reservoir", "ridge_regression", "nrmse"]


def sparse_reservoir(size, connectivity, rho, rng):
    """The reservoir recipe of Jaeger's tutorial (2002, "A tutorial on training recurrent
    neural networks, covering BPPT, RTRL, EKF and the 'echo state network' approach", GMD
    Report 159): a sparse random ``W0`` (each entry nonzero with probability
    ``connectivity``, then uniform in [-1, 1]), normalised to unit spectral radius,
    ``W1 = W0 / rho(W0)``, then scaled, ``W = rho W1`` (so W has spectral radius rho).

    A very sparse small ``W0`` can be nilpotent (every eigenvalue 0, so no scale reaches
    ``rho``); such a draw is replaced by the next one from ``rng``.
    """
    for _ in range(100):
        W0 = rng.uniform(-1.0, 1.0, (size, size)) * (rng.random((size, size)) < connectivity)
        if rho == 0:
            return np.zeros((size, size))
        if diagnostics.spectral_radius(W0) > 1e-8:
            return diagnostics.scale_to_spectral_radius(W0, rho)
    raise ValueError(f"sparse_reservoir: 100 draws of a {size}-unit reservoir with "
                     f"connectivity {connectivity} all had spectral radius 0; raise the "
                     "connectivity")


def ridge_regression(Z, D, ridge=0.0, rcond=None):
    """``W = argmin ||Z W - D||^2 + ridge ||W||^2``; for ``ridge = 0`` the minimum-norm least
    squares solution ``pinv(Z) D`` (Jaeger's tutorial: ``W_out = (M^+ T)^T``).

    Why not the normal equations ``(Z^T Z + ridge I) W = Z^T D``: forming ``Z^T Z`` squares
    the condition number, and reservoir states are strongly collinear (``kappa(Z)`` of 1e6 to
    1e10 is common: 2e9 for the Mackey-Glass benchmark), so in float64 they lose twice the
    ``log10 kappa(Z)`` digits that a stable factorisation of ``Z`` itself loses - all 16 of
    them, at 1e8. And why not a full SVD of ``Z`` (T x F): it also forms the T x F factor
    ``U``, which costs several times more than we need. So, in two stable steps:

    1. a Householder QR of ``[Z D]`` keeping only its triangle (Golub & Van Loan,
       "Matrix Computations", on least squares by QR): ``Z = Q R`` and ``c = Q^T D``, the
       top-right block of the triangle, without ever forming Q;
    2. the SVD of the small F x F triangle, ``R = U diag(s) V^T``, so that Z = (Q U) diag(s)
       V^T and the solution is ``W = V diag(s / (s**2 + ridge)) U^T c``: each singular
       direction of the least-squares solution is shrunk by its filter factor
       ``s**2 / (s**2 + ridge)`` (Hansen, "Rank-Deficient and Discrete Ill-Posed Problems",
       on Tikhonov regularisation). For ``ridge = 0`` the factor is
       ``1/s`` above ``rcond * s_max`` and 0 below (the pseudo-inverse; ``rcond`` defaults to
       ``eps * max(T, F)``, NumPy's ``lstsq`` cutoff).
    """
    Z, D = np.asarray(Z, dtype=np.float64), np.asarray(D, dtype=np.float64)
    T, F = Z.shape
    if ridge < 0:
        raise ValueError(f"ridge_regression: ridge must be >= 0, got {ridge}")
    triangle = np.linalg.qr(np.hstack([Z, D]), mode="r")       # (min(T, F + K), F + K)
    # R (F x F) and c (F x K); with fewer steps than features (T < F) the rows past T are 0.
    R, c = np.zeros((F, F)), np.zeros((F, D.shape[1]))
    rows = min(F, len(triangle))
    R[:rows], c[:rows] = triangle[:rows, :F], triangle[:rows, F:]
    U, s, Vt = np.linalg.svd(R)
    if ridge > 0:
        factor = s / (s * s + ridge)
    else:
        cutoff = (np.finfo(np.float64).eps * max(T, F) if rcond is None else rcond) * s.max()
        factor = np.divide(1.0, s, out=np.zeros_like(s), where=s > cutoff)
    return Vt.T @ (factor[:, None] * (U.T @ c))


def nrmse(prediction, target, variance=None):
    """``sqrt(mean((prediction - target)**2) / variance)``: the root mean squared error in
    units of the signal's standard deviation (``variance``: the target's, by default), so
    that predicting the mean scores 1. Jaeger's NRMSE_84 is this over the errors at step 84
    of many free runs, with the variance of the Mackey-Glass signal."""
    prediction, target = np.asarray(prediction, float), np.asarray(target, float)
    variance = np.var(target) if variance is None else variance
    return float(np.sqrt(np.mean((prediction - target) ** 2) / variance))


class EchoStateNetwork(Module):
    """``EchoStateNetwork(n_inputs, n_outputs, reservoir=100, *, spectral_radius=0.9, ...)``.

    * ``reservoir``: the number of units N; ``spectral_radius``: rho(W) (the recipe of
      :func:`sparse_reservoir`); ``connectivity``: the fraction of nonzero entries of W;
    * ``input_scaling``: ``W_in`` is uniform in [-s, s]; ``bias``: ``b`` is uniform in
      [-bias, bias] (a constant input, as Jaeger feeds one);
    * ``leak_rate``: ``a`` in (0, 1] (1: the plain tanh reservoir); small ``a`` slows the
      dynamics to match a slow signal;
    * ``feedback``: feed the output back through ``W_fb`` (uniform in [-s, s] with
      ``s = feedback_scaling``) - needed to generate a signal with no input;
    * ``washout``: steps of each fit whose states are discarded; ``ridge``: the regulariser
      (0: the pseudo-inverse, as the tutorial); ``readout_inputs``: put ``u`` in ``z``;
    * ``seed`` or ``rng``: the randomness of W, W_in, W_fb, b.

    The measured ``spectral_radius`` and ``largest_singular_value`` of W are attributes.
    The echo state property - the state forgets where it started and becomes a function of
    the input history - holds for every input when ``largest_singular_value < 1``, as every
    step is then a contraction (tanh is 1-Lipschitz); for ``spectral_radius > 1`` the zero
    state of a tanh reservoir with zero input is unstable, and the property fails (Jaeger
    2001, Proposition 3). So ``spectral_radius >= 1`` is warned about. In between (rho < 1 <
    sigma_max, the usual case) it holds in practice, as measured in the tests.
    The network keeps the state it reached (``state``):
    :meth:`generate` and :meth:`predict` continue from where :meth:`fit` stopped.
    """

    def __init__(self, n_inputs, n_outputs, reservoir=100, *, spectral_radius=0.9,
                 input_scaling=1.0, leak_rate=1.0, connectivity=0.1, bias=0.0, feedback=False,
                 feedback_scaling=1.0, washout=100, ridge=1e-8, readout_inputs=True, seed=None,
                 rng=None):
        if not 0 < leak_rate <= 1:
            raise ValueError(f"EchoStateNetwork: leak_rate must be in (0, 1], got {leak_rate}")
        if not 0 < connectivity <= 1:
            raise ValueError("EchoStateNetwork: connectivity must be in (0, 1], got "
                             f"{connectivity}")
        if ridge < 0 or washout < 0:
            raise ValueError(f"EchoStateNetwork: ridge and washout must be >= 0, got {ridge}, "
                             f"{washout}")
        rng = np.random.default_rng(seed) if rng is None else rng
        requested, N = spectral_radius, reservoir
        self.n_inputs, self.n_outputs, self.size = n_inputs, n_outputs, N
        self.leak_rate, self.washout, self.ridge = leak_rate, washout, ridge
        self.feedback, self.readout_inputs = feedback, readout_inputs
        # The fixed part: plain read-only arrays, constants to the engine (never Parameters).
        self.W = _frozen(sparse_reservoir(N, connectivity, spectral_radius, rng))
        self.W_in = _frozen(rng.uniform(-input_scaling, input_scaling, (n_inputs, N)))
        self.W_fb = _frozen(rng.uniform(-feedback_scaling, feedback_scaling, (n_outputs, N))
                            if feedback else np.zeros((n_outputs, N)))
        self.b = _frozen(rng.uniform(-bias, bias, N) if bias else np.zeros(N))
        self.spectral_radius = diagnostics.spectral_radius(self.W)
        self.largest_singular_value = diagnostics.largest_singular_value(self.W)
        if max(requested, self.spectral_radius) >= 1:
            warnings.warn(f"EchoStateNetwork: spectral radius {self.spectral_radius:.4g} >= 1: "
                          "the echo state property is not guaranteed (for tanh units the zero "
                          "state with zero input is not stable; Jaeger 2001)", stacklevel=2)
        features = 1 + (n_inputs if readout_inputs else 0) + N
        self.W_out = Parameter(np.zeros((features, n_outputs)))   # the only thing learnt
        self.reset()

    # -- one step, on arrays or on Tensors ---------------------------------------------------

    def step(self, x, u, y_back):
        """x(n) from x(n-1), u(n) and the output fed back y(n-1), each with a row per
        sequence (a batch of one in :meth:`collect_states`; any number of rows works).

        Written with operations that exist on arrays and Tensors alike, so the same line runs
        the fast NumPy harvest and the recorded, drawable unroll."""
        a = self.leak_rate
        pre = x @ self.W + self.b
        if self.n_inputs:
            pre = pre + u @ self.W_in
        if self.feedback:
            pre = pre + y_back @ self.W_fb
        new = ops.tanh(pre)
        return new if a == 1 else (1 - a) * x + a * new

    def extended(self, x, u):
        """z(n) = [1, u(n), x(n)] (without u when ``readout_inputs`` is False): the readout's
        input, one row per sequence. The constant 1 gives the readout its bias."""
        ones = np.ones((shape_of(x)[0], 1))
        parts = [ones] + ([u] if self.readout_inputs and self.n_inputs else []) + [x]
        return ops.concatenate(parts, axis=1)

    # -- state ---------------------------------------------------------------------------------

    def reset(self):
        """Back to the zero state (x = 0, and 0 as the last output fed back)."""
        self.state = (np.zeros((1, self.size)), np.zeros((1, self.n_outputs)))

    def collect_states(self, inputs, teacher=None):
        """Run the reservoir over ``inputs`` (T, n_inputs) from the current state and return
        the extended states Z, shape (T, F). With feedback, ``teacher`` (T, n_outputs) is fed
        back (teacher forcing: step n sees d(n-1)); without it, the network's own output is.
        The network keeps the state it reaches."""
        inputs = self._sequence(inputs, self.n_inputs, "inputs")
        if teacher is not None:
            teacher = self._sequence(teacher, self.n_outputs, "teacher", len(inputs))
        W_out = self.W_out.value
        # Z's rows are z(n) = [1, u(n), x(n)], the layout of `extended`, filled in place:
        # the columns of 1 and u are known before the loop, and x(n) is written as it comes.
        Z = np.empty((len(inputs), W_out.shape[0]))
        Z[:, 0] = 1.0
        Z[:, 1:Z.shape[1] - self.size] = inputs if self.readout_inputs else inputs[:, :0]
        x, y = self.state
        for n in range(len(inputs)):
            x = self.step(x, inputs[n:n + 1], y)
            Z[n, -self.size:] = x[0]
            y = teacher[n:n + 1] if teacher is not None else Z[n:n + 1] @ W_out
        self.state = (x, y)
        return Z

    # -- the closed form -----------------------------------------------------------------------

    def fit(self, inputs, targets):
        """Fit the readout: from the zero state, collect the states over ``inputs`` (feeding the
        targets back, when there is feedback), drop the first ``washout`` steps, and solve the
        ridge regression of the targets on the states (:func:`ridge_regression`). ``inputs``
        may be None when the network has no inputs. Returns self."""
        targets = self._sequence(targets, self.n_outputs, "targets")
        if inputs is None:
            inputs = np.zeros((len(targets), 0))
        if len(targets) <= self.washout:
            raise ValueError(f"fit: {len(targets)} steps leave nothing after the washout of "
                             f"{self.washout}")
        self.reset()
        Z = self.collect_states(inputs, targets if self.feedback else None)
        W = ridge_regression(Z[self.washout:], targets[self.washout:], self.ridge)
        self.W_out.value = W
        return self

    def predict(self, inputs):
        """The outputs (T, n_outputs) for ``inputs``, continuing from the current state; with
        feedback the network's own outputs are fed back."""
        Z = self.collect_states(inputs)
        return Z @ self.W_out.value

    def generate(self, n_steps, inputs=None):
        """Run free for ``n_steps`` from the current state, feeding each output back as the
        next step's feedback: the pattern generator (needs ``feedback=True``)."""
        if not self.feedback:
            raise ValueError("generate: the network has no output feedback, so without input "
                             "it only decays; build it with feedback=True")
        if inputs is None:
            if self.n_inputs:
                raise ValueError(f"generate: the network has {self.n_inputs} inputs; pass them")
            inputs = np.zeros((n_steps, 0))
        return self.predict(inputs)

    # -- the same network as a graph -----------------------------------------------------------

    def forward(self, inputs, teacher=None):
        """:meth:`unroll`: ``esn(inputs)`` records the network as a graph."""
        return self.unroll(inputs, teacher)

    def unroll(self, inputs, teacher=None):
        """The network unrolled from the zero state as recorded Tensors: a list of T outputs
        ``y(n) = z(n) W_out``, each a (1, n_outputs) row, step n's operations tagged
        ``scope(t=n, module="esn")``. Only ``W_out`` requires grad (and ``inputs``, if you
        pass a Tensor that does), so a loss sends its gradient straight to the readout at every
        step; with ``teacher`` fed back (training) no gradient runs through time at all. The
        stored state is left alone."""
        if inputs is None and (self.n_inputs or teacher is None):
            raise ValueError("unroll: pass the inputs (or, for a network without inputs, the "
                             "teacher to feed back)")
        if inputs is not None and not isinstance(inputs, Tensor):
            inputs = self._sequence(inputs, self.n_inputs, "inputs")
        if teacher is not None:
            teacher = self._sequence(teacher, self.n_outputs, "teacher")
        T = len(teacher) if inputs is None else len(inputs)
        x, y = np.zeros((1, self.size)), np.zeros((1, self.n_outputs))
        outputs = []
        for n in range(T):
            with scope(t=n, module="esn"):
                u = np.zeros((1, 0)) if inputs is None else inputs[n:n + 1]
                x = self.step(x, u, y)
                out = self.extended(x, u) @ self.W_out
            outputs.append(out)
            y = teacher[n:n + 1] if teacher is not None else out
        return outputs

    def ridge_loss(self, inputs, targets):
        """``sum_{n >= washout} ||y(n) - d(n)||^2 + ridge ||W_out||^2`` on the unrolled graph:
        the objective whose minimiser :meth:`fit` computes in closed form (the same states,
        the same washout, teacher forcing when there is feedback)."""
        targets = self._sequence(targets, self.n_outputs, "targets")
        outputs = self.unroll(inputs, targets if self.feedback else None)
        loss = self.ridge * (self.W_out * self.W_out).sum()
        for n in range(self.washout, len(outputs)):
            with scope(t=n, module="esn"):
                error = outputs[n] - targets[n:n + 1]
                loss = loss + (error * error).sum()
        return loss

    # -- helpers -------------------------------------------------------------------------------

    def _sequence(self, data, width, name, length=None):
        """A (T, width) float array from (T,) or (T, width) data (a 1-D sequence is one
        channel), or a clear error."""
        array = np.asarray(value_of(data), dtype=np.float64)
        if array.ndim == 1 and width == 1:
            array = array[:, None]
        if array.ndim != 2 or array.shape[1] != width:
            raise ValueError(f"EchoStateNetwork: {name} must have shape (T, {width}), got "
                             f"{array.shape}; for a task's (T, batch, D) arrays pass one "
                             "sequence, e.g. inputs[:, 0]")
        if length is not None and len(array) != length:
            raise ValueError(f"EchoStateNetwork: {name} has {len(array)} steps, the inputs "
                             f"{length}")
        return array

    def __repr__(self):
        return (f"EchoStateNetwork({self.n_inputs} -> {self.size} units -> {self.n_outputs}, "
                f"spectral radius {self.spectral_radius:.4g}, largest singular value "
                f"{self.largest_singular_value:.4g}, leak rate {self.leak_rate:g}, "
                f"{'feedback, ' if self.feedback else ''}ridge {self.ridge:g}, "
                f"washout {self.washout})")


def _frozen(array):
    """The array, read-only: the reservoir never changes after it is drawn."""
    array = np.asarray(array, dtype=np.float64)
    array.flags.writeable = False
    return array
