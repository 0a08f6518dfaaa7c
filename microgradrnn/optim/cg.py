"""Linear conjugate gradient as Hessian-free optimization runs it (Martens 2010, section 4).

:func:`conjugate_gradient` minimises the quadratic

    phi(x) = 1/2 x^T A x - b^T x          (its minimiser solves A x = b)

for a symmetric positive definite ``A`` known only through products ``v -> A v``, optionally
preconditioned by a positive diagonal ``M`` (Shewchuk 1994, "An Introduction to the Conjugate
Gradient Method Without the Agonizing Pain", B3). What HF adds to the textbook loop:

* **Martens' stopping rule** (:func:`martens_should_stop`): stop when phi has stopped making
  progress *relative to its size*, rather than when the residual is small. HF wants a good
  step, not an accurate solve, and the residual of a Gauss-Newton system keeps a long tail of
  tiny-curvature directions that matter little to phi.
* **Saved iterates** (:func:`saved_iterations`): the iterates at i = ceil(5 * 1.3^j) and the
  last one are returned, so that HF can backtrack to an earlier, shorter one when the
  quadratic model was trusted too far (Martens 2010, section 4.6).
* **A curvature guard**: ``p^T A p <= 0`` means A is not positive definite along ``p`` (the
  exact Hessian, or no damping); CG stops there and returns what it has.

phi is tracked for free: with the residual ``r = b - A x``, ``phi(x) = -1/2 x^T (r + b)``.
The constants are those of Martens' released code (``conjgrad_1.m``): epsilon = 5e-4, gap
ratio 0.1, minimum gap 10, iterates saved from 5 on by factors of 1.3, at most 250 iterations.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CGResult", "conjugate_gradient", "martens_should_stop", "saved_iterations"]

EPSILON = 5e-4        # Martens' relative-progress tolerance
GAP_RATIO = 0.1       # progress is measured over the last k = max(10, ceil(0.1 i)) iterations
MIN_GAP = 10
SAVE_FIRST = 5        # iterates kept for backtracking: i = ceil(5 * 1.3^j), j = 0, 1, ...
SAVE_GROWTH = 1.3
MAX_ITERATIONS = 250


@dataclass
class CGResult:
    """What one CG run produced.

    ``x``: the last iterate; ``iterates``: the saved ``(i, x_i)``, increasing in i, always
    ending with the last iterate; ``phi``: ``phi(x_0), phi(x_1), ...``; ``iterations``: how
    many products with the search direction were taken; ``reason``: why CG stopped
    (``"martens"``, ``"residual"``, ``"max_iterations"``, ``"negative_curvature"``).
    """
    x: np.ndarray
    iterates: list = field(default_factory=list)
    phi: list = field(default_factory=list)
    iterations: int = 0
    reason: str = ""


def saved_iterations(max_iterations, first=SAVE_FIRST, growth=SAVE_GROWTH):
    """The iterations whose iterate HF keeps for backtracking: ``ceil(first * growth^j)`` for
    j = 0, 1, ... up to ``max_iterations`` (5, 7, 9, 11, 15, 19, 25, 32, ... for Martens'
    constants). The last iterate is kept as well, whatever its number."""
    kept, j = [], 0
    while True:
        i = math.ceil(first * growth ** j)
        if i > max_iterations:
            return kept
        kept.append(i)
        j += 1


def martens_should_stop(phi, i, epsilon=EPSILON):
    """Martens' rule at iteration ``i``, with ``phi[j] = phi(x_j)`` for j = 0..i::

        k = max(10, ceil(0.1 i));   stop when  i > k,  phi_i < 0  and
        (phi_i - phi_{i-k}) / phi_i < k * epsilon

    i.e. when the last k iterations reduced phi by less than a fraction k * epsilon of its
    current value (the gap k grows with i, so a long run must keep earning its keep)."""
    k = max(MIN_GAP, math.ceil(GAP_RATIO * i))
    return i > k and phi[i] < 0 and (phi[i] - phi[i - k]) / phi[i] < k * epsilon


def conjugate_gradient(A, b, x0=None, *, M=None, max_iterations=MAX_ITERATIONS,
                       epsilon=EPSILON, rtol=0.0, save=True):
    """Preconditioned CG on ``A x = b`` from ``x0`` (zeros when None).

    ``A``: a function ``v -> A v`` on flat arrays; ``M``: the diagonal of the preconditioner
    (an array of positive numbers; the search runs in the metric of ``diag(M)``), or None.
    Stops after ``max_iterations``, by Martens' rule (``epsilon``; None turns it off), when
    ``||r|| <= rtol ||b||``, or on non-positive curvature. ``save``: keep the iterates at
    :func:`saved_iterations` (for HF's backtracking); the last iterate is always kept.
    """
    b = np.asarray(b, dtype=np.float64)
    x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64)
    r = b - A(x) if x0 is not None and np.any(x) else b.copy()
    z = r if M is None else r / M
    p = z
    rz = float(r @ z)
    b_norm = float(np.linalg.norm(b))
    kept = set(saved_iterations(max_iterations)) if save else set()
    result = CGResult(x=x, phi=[-0.5 * float(x @ (r + b))])
    reason = "max_iterations"
    i = 0
    for i in range(1, max_iterations + 1):
        Ap = A(p)
        curvature = float(p @ Ap)
        if not curvature > 0:          # also catches NaN: never step along such a direction
            i -= 1
            reason = "negative_curvature"
            break
        alpha = rz / curvature
        x = x + alpha * p
        r = r - alpha * Ap
        result.phi.append(-0.5 * float(x @ (r + b)))
        if i in kept:
            result.iterates.append((i, x))
        if epsilon is not None and martens_should_stop(result.phi, i, epsilon):
            reason = "martens"
            break
        if float(np.linalg.norm(r)) <= rtol * b_norm:
            reason = "residual"
            break
        z = r if M is None else r / M
        rz_next = float(r @ z)
        p = z + (rz_next / rz) * p
        rz = rz_next
    if not result.iterates or result.iterates[-1][0] != i:
        result.iterates.append((i, x))
    result.x, result.iterations, result.reason = x, i, reason
    return result
