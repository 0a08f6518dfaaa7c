"""Hessian-free optimization: Martens (2010), "Deep learning via Hessian-free optimization",
ICML; Martens & Sutskever (2011), "Learning recurrent neural networks with Hessian-free
optimization", ICML.

One update at parameters theta, with gradient g and a curvature matrix C (the Gauss-Newton
matrix G = J^T H_L J, or the exact Hessian)::

    q(d) = f(theta) + g^T d + 1/2 d^T C d                      the local quadratic model
    (C + lambda I + lambda mu G_S) d = -g                        solved by CG (cg.py)
    d <- an earlier CG iterate, while f(theta + d) keeps improving   (CG backtracking)
    rho = (f(theta + d) - f(theta)) / (q(d) - q(0))              q without any damping
    lambda <- 3/2 lambda if rho < 1/4;  2/3 lambda if rho > 3/4   (Levenberg-Marquardt)
    theta <- theta + a d,  a the first of 1, 0.8, 0.8^2, ... (60 tries) with
             f(theta + a d) <= f(theta) + 1e-2 a g^T d   (Armijo), or a = 0

``G_S`` is the structural damping of Martens & Sutskever (2011), section 3.2: the Gauss-Newton
matrix of a penalty on the change of the hidden states s of the B sequences, so that a step is
also damped in proportion to how much it would move the hidden states — the directions along
which an RNN's loss is far from quadratic. M&S leave the distance D open (theano-hf takes the
cross-entropy of logistic units); for tanh units we take the squared error
``D(s) = 1/(2B) ||s - s(theta)||^2``, whose Gauss-Newton matrix is ``J_s^T J_s / B``.

The constants are those of the authors' released code (Martens' ``nnet_train`` and
``conjgrad_1``; theano-hf, Boulanger-Lewandowski, for mu): mu = 0.03, the 3/2 and 2/3
factors, the CG warm start 0.95 x the last CG solution, Armijo's c = 1e-2, rate 0.8 and at most
60 tries, and CG's own (cg.py).

The gradient is taken on a large batch and the curvature on a smaller one, fixed for the whole
CG run; the reduction ratio and the CG backtracking use the curvature batch, the line search
the gradient batch, as in Martens' code. Curvature products at fixed theta reuse one recorded
forward pass (:func:`microgradrnn.gauss_newton`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..autodiff import no_grad
from ..functional import cross_entropy
from ..ops import logsumexp, stack
from ..ops import sum as reduce_sum
from ..ops._core import value_of
from ..tensor import tensor
from ..transforms import gauss_newton, grad, hvp
from .base import Optimizer, flag, real
from .cg import EPSILON, MAX_ITERATIONS, conjugate_gradient

__all__ = ["HessianFree", "HFProblem", "HFStep", "flatten", "unflatten", "squared_error",
           "softmax_cross_entropy", "sigmoid_cross_entropy", "backtrack", "reduction_ratio",
           "levenberg_marquardt", "armijo", "Curvature"]

BOOST, DROP = 3 / 2, 2 / 3            # Levenberg-Marquardt factors on lambda
RHO_LOW, RHO_HIGH = 1 / 4, 3 / 4
ARMIJO_C = 1e-2                       # sufficient decrease, as a fraction of g^T d
LINE_SEARCH_RATE = 0.8
LINE_SEARCH_TRIES = 60
SOLVED = 1e-12                        # ||r|| <= 1e-12 ||g||: the system is solved exactly
PRECONDITIONER_EXPONENT = 3 / 4       # Martens (2010), section 4.7: (diag + lambda)^(3/4)


# -- flat vectors -------------------------------------------------------------------------------

def flatten(arrays):
    """One flat float64 vector from a list of arrays (or Tensors), in order."""
    return np.concatenate([np.ravel(np.asarray(value_of(a), dtype=np.float64))
                           for a in arrays])


def unflatten(vector, like):
    """The flat ``vector`` cut into new arrays shaped like each of ``like`` (arrays, Tensors)."""
    out, start = [], 0
    for a in like:
        shape = np.shape(value_of(a))
        size = math.prod(shape)
        out.append(np.array(vector[start:start + size]).reshape(shape))
        start += size
    if start != len(vector):
        raise ValueError(f"unflatten: the vector has {len(vector)} entries; the shapes need "
                         f"{start}")
    return out


# -- matching losses: convex in the output z, so G = J^T H_L J is positive semi-definite ------

def squared_error(z, targets):
    """1/(2B) sum (z - y)^2 over a batch of B rows: the matching loss of a linear output
    (H_L = I / B)."""
    d = z - np.asarray(targets, dtype=np.float64)
    return reduce_sum(d * d) * (0.5 / z.shape[0])


def softmax_cross_entropy(z, targets):
    """The mean over rows of -log softmax(z)[target]: the matching loss of a softmax output
    (H_L = (diag(p) - p p^T) / B per row)."""
    return cross_entropy(z, targets)


def sigmoid_cross_entropy(z, targets):
    """1/B sum [log(1 + e^z) - y z] (log(1 + e^z) as a stable logsumexp over [0, z]): the
    matching loss of logistic outputs (H_L = diag(s (1 - s)) / B, s = sigmoid(z))."""
    softplus = logsumexp(stack([np.zeros(z.shape), z]), axis=0)
    y = np.asarray(targets, dtype=np.float64)
    return reduce_sum(softplus - y * z) * (1.0 / z.shape[0])


# -- the pieces of one update, as pure functions (each tested alone) ----------------------------

def backtrack(iterates, f):
    """Martens (2010), section 4.6: from the last saved CG iterate, step back to the previous
    saved one while that lowers the objective ``f``; return ``(i, x_i, f(x_i))``.

    ``iterates``: ``[(i, x_i), ...]`` in increasing i. Only the values needed are computed:
    the walk stops at the first earlier iterate that is no better.
    """
    j = len(iterates) - 1
    i, x = iterates[j]
    best = f(x)
    while j > 0:
        previous = f(iterates[j - 1][1])
        if not previous < best:
            break
        j -= 1
        i, x = iterates[j]
        best = previous
    return i, x, best


def reduction_ratio(actual, predicted):
    """rho = actual / predicted reduction, ``(f(theta + d) - f(theta)) / (q(d) - q(0))``; -inf
    when the model predicts no decrease or the objective is not finite (then lambda grows)."""
    if not (predicted < 0 and math.isfinite(actual)):
        return -math.inf
    return actual / predicted


def levenberg_marquardt(damping, rho):
    """Martens (2010), section 4.1: ``3/2 lambda`` when rho < 1/4 (the quadratic model was
    trusted too far), ``2/3 lambda`` when rho > 3/4 (it predicts well), else unchanged."""
    if rho < RHO_LOW:
        return damping * BOOST
    if rho > RHO_HIGH:
        return damping * DROP
    return damping


def armijo(f, f0, slope, c=ARMIJO_C, rate=LINE_SEARCH_RATE, tries=LINE_SEARCH_TRIES):
    """Backtracking line search on the step: the first ``a`` of 1, 0.8, 0.8^2, ... (at most 60
    tries) with ``f(a) <= f0 + c a slope`` (``slope = g^T d``); ``(0, f0)`` when none passes.
    Returns ``(a, f(a))``."""
    a = 1.0
    for _ in range(tries):
        value = f(a)
        if value <= f0 + c * a * slope:
            return a, value
        a *= rate
    return 0.0, f0


# -- the optimizer ------------------------------------------------------------------------------

@dataclass(frozen=True)
class HFProblem:
    """What a :class:`HessianFree` closure returns for one update (a plain 4-tuple works too).

    * ``model_fn(params, batch)``: the network's output z (a Tensor; pre-activations, the input
      of the matching loss) for a list of parameter Tensors in the optimizer's order; for
      structural damping, the pair ``(z, hidden)`` with ``hidden`` the hidden states, a
      (T, B, H) Tensor or a list of T (B, H) Tensors.
    * ``loss_fn(z, batch)``: a scalar Tensor, a loss convex in z (a matching loss: linear +
      squared error, softmax + cross-entropy, sigmoid + cross-entropy), a mean over the batch.
    * ``gradient_batch``, ``curvature_batch``: whatever ``model_fn`` and ``loss_fn`` take; the
      curvature batch (default: the gradient batch) is usually a smaller sample.
    """
    model_fn: Callable
    loss_fn: Callable
    gradient_batch: Any
    curvature_batch: Any = None


@dataclass(frozen=True)
class HFStep:
    """What one update did (for a progress bar or a log)."""
    loss: float            # f(theta) on the gradient batch, before the update
    new_loss: float        # f on the gradient batch after the update
    damping: float         # the lambda this update used
    rho: float             # reduction ratio (on the curvature batch)
    predicted: float       # q(d) - q(0) without damping, rho's denominator
    cg_iterations: int
    cg_reason: str
    backtracked_to: int    # the CG iteration whose iterate was taken
    rate: float            # the line search's step length (0: no step)


class HessianFree(Optimizer):
    """``HessianFree(params, damping=1.0, structural_damping=0.03, max_cg_iterations=250,
    cg_epsilon=5e-4, warm_start=0.95, preconditioner=False, line_search=True,
    backtracking=True, curvature="gauss_newton")``; ``step(closure) -> HFStep``.

    ``closure()`` is called once per update and returns an :class:`HFProblem` (new batches
    for this update). The algorithm and its constants are in the module docstring. Options:

    * ``damping``: the initial lambda (then adapted, and saved with the state);
    * ``structural_damping``: mu (Martens & Sutskever 2011 use 0.03); used when ``model_fn``
      returns hidden states, 0 turns it off;
    * ``curvature``: ``"gauss_newton"`` (positive semi-definite; the method of the papers) or
      ``"hessian"`` (exact, may be indefinite: CG then stops at the first direction of
      non-positive curvature);
    * ``preconditioner``: ``diag(g_c^2 + lambda)^(3/4)``, with g_c the gradient on the
      curvature batch — theano-hf's variant of Martens' (2010, section 4.7) sum of squared
      per-example gradients; Martens notes it seldom helps RNNs.

    ``state_dict()`` holds lambda (as the ``damping`` hyperparameter) and the last CG solution
    of every parameter (``state.{i}.previous``), which is all a resumed run needs. The
    parameters' values are rebound, never changed in place.
    """

    def __init__(self, params, damping=1.0, structural_damping=0.03,
                 max_cg_iterations=MAX_ITERATIONS, cg_epsilon=EPSILON, warm_start=0.95,
                 preconditioner=False, line_search=True, backtracking=True,
                 curvature="gauss_newton"):
        if curvature not in ("gauss_newton", "hessian"):
            raise ValueError(f"HessianFree: curvature must be 'gauss_newton' or 'hessian', got "
                             f"{curvature!r}")
        self.curvature = curvature
        super().__init__(params, damping=damping, structural_damping=structural_damping,
                         max_cg_iterations=max_cg_iterations, cg_epsilon=cg_epsilon,
                         warm_start=warm_start, preconditioner=preconditioner,
                         line_search=line_search, backtracking=backtracking)

    @classmethod
    def check_hyperparameters(cls, h):
        h = super().check_hyperparameters(h)
        for name in ("damping", "structural_damping", "cg_epsilon"):
            h[name] = real("HessianFree", name, h[name])
        h["warm_start"] = real("HessianFree", "warm_start", h["warm_start"], high=1.0)
        n = h["max_cg_iterations"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"HessianFree: max_cg_iterations must be an integer >= 1, got {n!r}")
        for name in ("preconditioner", "line_search", "backtracking"):
            h[name] = flag("HessianFree", name, h[name])
        return h

    def state_names(self, h):
        return ("previous",)

    def update(self, theta, g, state, t):
        raise TypeError("HessianFree updates all parameters together: call step(closure)")

    # -- one update ------------------------------------------------------------------------------

    def step(self, closure):
        """One HF update (see the module docstring); returns an :class:`HFStep`."""
        problem = _problem(closure())
        h = self.hyperparameters
        damping = h["damping"]
        theta = [p.value for p in self.params]
        grad_batch, curv_batch = problem.gradient_batch, problem.curvature_batch
        loss, g = _loss_and_gradient(problem, theta, grad_batch)

        products = Curvature(problem, theta, curv_batch, self.curvature,
                             damping * h["structural_damping"])
        M = None
        if h["preconditioner"]:
            _, g_c = _loss_and_gradient(problem, theta, curv_batch)
            M = (g_c * g_c + damping) ** PRECONDITIONER_EXPONENT
        x0 = None
        if self.state[0]:   # Martens' warm start: a decayed copy of the previous solution
            x0 = h["warm_start"] * flatten([s["previous"] for s in self.state])
        cg = conjugate_gradient(lambda v: products.damped(v) + damping * v, -g, x0, M=M,
                                max_iterations=h["max_cg_iterations"],
                                epsilon=h["cg_epsilon"], rtol=SOLVED)

        def f_curvature(d):
            return _loss(problem, theta, curv_batch, d)
        f0 = f_curvature(None)
        if h["backtracking"]:
            chosen, d, f_d = backtrack(cg.iterates, f_curvature)
        else:
            chosen, d = cg.iterates[-1]
            f_d = f_curvature(d)
        predicted = float(g @ d) + 0.5 * float(d @ products.plain(d))   # q(d) - q(0), undamped
        rho = reduction_ratio(f_d - f0, predicted)

        if h["line_search"]:
            rate, new_loss = armijo(lambda a: _loss(problem, theta, grad_batch, a * d), loss,
                                    float(g @ d))
        else:
            rate, new_loss = 1.0, _loss(problem, theta, grad_batch, d)
        for p, t, step in zip(self.params, theta, unflatten(rate * d, theta)):
            p.value = t + step
        for state, previous in zip(self.state, unflatten(cg.x, theta)):
            state["previous"] = previous
            state["step"] = state.get("step", 0) + 1
        h["damping"] = levenberg_marquardt(damping, rho)
        self.step_count += 1
        return HFStep(loss=loss, new_loss=new_loss, damping=damping, rho=rho,
                      predicted=predicted, cg_iterations=cg.iterations, cg_reason=cg.reason,
                      backtracked_to=chosen, rate=rate)


# -- evaluating the closure's functions ---------------------------------------------------------

def _problem(result):
    if isinstance(result, HFProblem):
        problem = result
    elif isinstance(result, tuple) and len(result) in (3, 4):
        problem = HFProblem(*result)
    else:
        raise TypeError("HessianFree.step: the closure must return an HFProblem(model_fn, "
                        "loss_fn, gradient_batch, curvature_batch) or such a tuple, got "
                        f"{type(result).__name__}")
    if problem.curvature_batch is None:
        problem = HFProblem(problem.model_fn, problem.loss_fn, problem.gradient_batch,
                            problem.gradient_batch)
    return problem


def _outputs(problem, params, batch):
    """(z, hidden states as one Tensor or None) of the closure's model."""
    out = problem.model_fn(list(params), batch)
    if not isinstance(out, tuple):
        return out, None
    z, hidden = out
    if isinstance(hidden, (list, tuple)):
        hidden = stack(list(hidden))
    return z, hidden


def _loss(problem, theta, batch, d=None):
    """f(theta + d) on ``batch`` (d flat, or None for d = 0), as a float, recording nothing."""
    values = theta if d is None else [t + s for t, s in zip(theta, unflatten(d, theta))]
    with no_grad():
        z, _ = _outputs(problem, [tensor(v) for v in values], batch)
        return float(value_of(problem.loss_fn(z, batch)))


def _loss_and_gradient(problem, theta, batch):
    leaves = [tensor(t, requires_grad=True) for t in theta]
    z, _ = _outputs(problem, leaves, batch)
    loss = problem.loss_fn(z, batch)
    grads = grad(loss, leaves, allow_unused=True)
    return loss.item(), flatten([np.zeros_like(t) if g is None else g
                                 for g, t in zip(grads, theta)])


class Curvature:
    """``Curvature(problem, theta, batch, kind="gauss_newton", weight=0.0)``: products with the
    curvature at fixed ``theta`` (a list of arrays) on ``batch``, on flat vectors.

    ``damped(v)``: ``C v + lambda mu G_S v`` (CG adds ``lambda v``); ``plain(v)``: ``C v``,
    for the undamped quadratic of the reduction ratio. With the Gauss-Newton matrix and
    structural damping, ``damped`` is *one* Gauss-Newton product of the model with the two
    outputs ``(z, s)`` under the loss ``L(z) + lambda mu D(s)``: its loss Hessian is
    block-diagonal, so ``G = J_z^T H_L J_z + lambda mu J_s^T H_D J_s`` costs one tangent and
    one reverse sweep, as without damping.
    """

    def __init__(self, problem, theta, batch, kind="gauss_newton", weight=0.0):
        self.problem, self.theta, self.batch, self.weight = problem, theta, batch, weight
        self.hidden = None        # s(theta), when the model returns hidden states
        self._plain = None
        if kind == "gauss_newton":
            G = gauss_newton(self._joined_model, self._joined_loss, theta)
            self.damped = self._flat(G)
            if self.hidden is None:
                self._plain = self.damped
        else:
            H = self._flat(lambda v: hvp(self._f, theta, v))
            self._plain = H
            if weight:
                self._probe()
            if self.hidden is not None:
                S = self._flat(gauss_newton(lambda *ps: _outputs(problem, ps, batch)[1],
                                            self._penalty, theta))
                self.damped = lambda v: H(v) + S(v)
            else:
                self.damped = H

    def plain(self, v):
        if self._plain is None:   # built only now: one more forward pass, once per update
            self._plain = self._flat(gauss_newton(
                lambda *ps: _outputs(self.problem, ps, self.batch)[0],
                lambda z: self.problem.loss_fn(z, self.batch), self.theta))
        return self._plain(v)

    def _flat(self, product):
        return lambda v: flatten(product(tuple(unflatten(v, self.theta))))

    def _f(self, *params):
        z, _ = _outputs(self.problem, params, self.batch)
        return self.problem.loss_fn(z, self.batch)

    def _probe(self):
        with no_grad():
            _, s = _outputs(self.problem, [tensor(t) for t in self.theta], self.batch)
        self.hidden = None if s is None else np.array(value_of(s))

    def _penalty(self, s):
        """lambda mu D(s), D(s) = 1/(2B) ||s - s(theta)||^2 (B: s's second-to-last axis)."""
        d = s - self.hidden
        return reduce_sum(d * d) * (self.weight / (2 * self.hidden.shape[-2]))

    def _joined_model(self, *params):
        """z, or the pair (z, s) when the hidden states are damped (and then s(theta) is kept
        as the constant the penalty measures from)."""
        z, s = _outputs(self.problem, params, self.batch)
        if s is None or not self.weight:
            return z
        self.hidden = np.array(value_of(s))
        return z, s

    def _joined_loss(self, z, s=None):
        loss = self.problem.loss_fn(z, self.batch)
        return loss if s is None else loss + self._penalty(s)
