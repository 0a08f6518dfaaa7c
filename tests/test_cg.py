"""Linear conjugate gradient as HF runs it (microgradrnn.optim.cg).

References: ``np.linalg.solve`` on explicit matrices, phi = 1/2 x^T A x - b^T x computed
directly, and hand-worked sequences for Martens' stopping rule and the saved iterations.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from microgradrnn.optim.cg import (conjugate_gradient, martens_should_stop,
                                   saved_iterations)


def spd(n, low, high, seed):
    """A random symmetric positive definite matrix with eigenvalues log-spaced over
    [low, high] (condition number high / low)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return (Q * np.geomspace(low, high, n)) @ Q.T, rng.standard_normal(n)


def test_solves_a_random_spd_system_with_spread_eigenvalues_to_tight_tolerance():
    A, b = spd(200, 1.0, 5000.0, seed=0)
    result = conjugate_gradient(lambda v: A @ v, b, epsilon=None, rtol=1e-12,
                                max_iterations=2000)
    exact = np.linalg.solve(A, b)
    assert result.reason == "residual"
    assert np.linalg.norm(result.x - exact) <= 1e-9 * np.linalg.norm(exact)


def test_a_diagonal_preconditioner_solves_the_same_system_in_fewer_iterations():
    A, b = spd(100, 1.0, 10.0, seed=1)
    scales = np.geomspace(1.0, 1e3, 100)
    A = A * np.outer(scales, scales)          # badly scaled rows and columns
    kwargs = dict(epsilon=None, rtol=1e-10, max_iterations=5000)
    plain = conjugate_gradient(lambda v: A @ v, b, **kwargs)
    preconditioned = conjugate_gradient(lambda v: A @ v, b, M=np.diag(A).copy(), **kwargs)
    exact = np.linalg.solve(A, b)
    for result in (plain, preconditioned):
        assert np.linalg.norm(result.x - exact) <= 1e-6 * np.linalg.norm(exact)
    assert preconditioned.iterations < plain.iterations / 3


@given(st.integers(2, 12), st.integers(0, 2**32 - 1), st.booleans())
def test_phi_is_the_quadratic_at_every_iterate_and_never_increases(n, seed, warm):
    A, b = spd(n, 0.5, 50.0, seed)
    x0 = np.random.default_rng(seed + 1).standard_normal(n) if warm else None
    result = conjugate_gradient(lambda v: A @ v, b, x0, epsilon=None, max_iterations=n)
    for i, x in result.iterates:
        assert result.phi[i] == pytest.approx(0.5 * x @ A @ x - b @ x, rel=1e-9, abs=1e-12)
    assert all(later <= earlier + 1e-12 * abs(earlier)
               for earlier, later in zip(result.phi, result.phi[1:]))


def test_warm_start_from_the_solution_needs_no_work():
    A, b = spd(20, 1.0, 10.0, seed=2)
    exact = np.linalg.solve(A, b)
    result = conjugate_gradient(lambda v: A @ v, b, exact, rtol=1e-8)
    assert result.iterations <= 1
    np.testing.assert_allclose(result.x, exact, rtol=1e-8)


def test_the_saved_iterations_are_ceil_of_5_times_1_3_to_the_j():
    assert saved_iterations(250)[:8] == [5, 7, 9, 11, 15, 19, 25, 32]
    assert saved_iterations(250)[-1] <= 250 < saved_iterations(10_000)[len(saved_iterations(250))]


def test_cg_keeps_the_saved_iterates_and_the_last():
    A, b = spd(60, 1.0, 1e4, seed=3)
    result = conjugate_gradient(lambda v: A @ v, b, epsilon=None, max_iterations=23)
    assert [i for i, _ in result.iterates] == [5, 7, 9, 11, 15, 19, 23]
    assert result.iterates[-1][1] is result.x and result.reason == "max_iterations"


def test_martens_rule_stops_when_the_last_k_steps_gained_less_than_k_epsilon():
    # phi_j = -1 + 0.5^j: (phi_i - phi_{i-10}) / phi_i = (0.5^(i-10) - 0.5^i) / (1 - 0.5^i),
    # which first falls below 10 * 5e-4 = 0.005 at i = 18 (0.0039; at i = 17 it is 0.0078).
    phi = [-1 + 0.5 ** j for j in range(40)]
    assert [i for i in range(1, 40) if martens_should_stop(phi, i)][0] == 18


def test_martens_rule_needs_a_negative_phi_and_more_than_k_iterations():
    assert not martens_should_stop([1.0] * 30, 25)               # phi_i > 0: never
    assert not martens_should_stop([-1.0] * 30, 10)              # i = k: not yet
    assert martens_should_stop([-1.0] * 30, 11)                  # no progress at all


def test_martens_gap_grows_as_a_tenth_of_i():
    # At i = 150 the gap is k = ceil(15) = 15 and the threshold 15 * 5e-4 = 0.0075. phi drops
    # by d only over the last ten steps, with d / (1 + d) = 0.006: the rule (k = 15) stops;
    # a fixed gap of 10 (threshold 0.005) would not.
    d = 0.006 / (1 - 0.006)
    phi = [-1.0] * 141 + [-1.0 - d * (j - 140) / 10 for j in range(141, 151)]
    assert martens_should_stop(phi, 150)
    assert not martens_should_stop(phi, 150, epsilon=5e-4 * 10 / 15)


def test_cg_stops_on_non_positive_curvature_before_stepping_along_it():
    A = np.diag([1.0, -2.0])
    result = conjugate_gradient(lambda v: A @ v, np.array([1.0, 1.0]))
    assert result.reason == "negative_curvature" and result.iterations == 0
    np.testing.assert_array_equal(result.x, np.zeros(2))
    # after one good step along e_1 the next direction has p^T A p < 0: CG keeps step one
    A = np.diag([1.0, -1.0])
    result = conjugate_gradient(lambda v: A @ v, np.array([1.0, 0.1]))
    assert result.reason == "negative_curvature" and result.iterations <= 1
