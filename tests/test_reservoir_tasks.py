"""The reservoir-computing signals (microgradrnn.tasks.reservoir), each against its published
definition recomputed here from what the generator returned: the Euler recursion of the
Mackey-Glass equation, the NARMA-10 recursion, 1/2 sin(n/4), and u(n - k)."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

from microgradrnn.tasks import (RESERVOIR_TASKS, delay_line, mackey_glass, mackey_glass_series,
                                narma10, sine_generator)

seeds = st.integers(0, 2**32 - 1)


@given(seed=seeds, batch=st.integers(1, 3))
def test_mackey_glass_steps_follow_the_euler_recursion(seed, batch):
    """With subsample=1 and no discard every Euler value is returned, so each one must be
    x + delta (0.2 x_lag / (1 + x_lag**10) - 0.1 x) of the ones before it (lag = tau / delta)."""
    delta, tau = 0.1, 17.0
    lag = 170
    x = mackey_glass_series(600, batch, subsample=1, discard=0, seed=seed)
    now, delayed = x[lag:-1], x[:-lag - 1]
    expected = now + delta * (0.2 * delayed / (1 + delayed ** 10) - 0.1 * now)
    np.testing.assert_allclose(x[lag + 1:], expected, rtol=1e-14)
    assert tau / delta == lag


@given(seeds)
def test_mackey_glass_keeps_every_tenth_euler_value(seed):
    fine = mackey_glass_series(1000, subsample=1, discard=0, seed=seed)
    coarse = mackey_glass_series(100, subsample=10, discard=0, seed=seed)
    np.testing.assert_array_equal(coarse, fine[9::10])


def test_mackey_glass_is_seeded_chaotic_and_stays_on_its_attractor():
    a = mackey_glass_series(2000, 2, seed=0)
    assert np.array_equal(a, mackey_glass_series(2000, 2, seed=0))
    assert 0.3 < a.min() and a.max() < 1.45                  # the tau = 17 attractor
    assert 0.03 < a.var() < 0.08
    # Nearby starts separate (chaos): two histories 1e-9 apart end far apart.
    b = mackey_glass_series(2000, 1, perturbation=1e-9, seed=1)
    c = mackey_glass_series(2000, 1, perturbation=1e-9, seed=2)
    assert np.abs(b[:50] - c[:50]).max() < 1e-5 < np.abs(b[-200:] - c[-200:]).max()


@given(seeds, st.integers(1, 40), st.integers(1, 3))
def test_mackey_glass_task_is_next_value_prediction(seed, T, batch):
    inputs, targets = mackey_glass(T, batch, seed=seed, discard=100)
    assert inputs.shape == targets.shape == (T, batch, 1)
    series = mackey_glass_series(T + 1, batch, seed=seed, discard=100)
    np.testing.assert_array_equal(inputs[:, :, 0], series[:-1])
    np.testing.assert_array_equal(targets[:, :, 0], series[1:])


@given(seeds, st.integers(1, 200), st.integers(1, 4))
def test_narma10_follows_its_recursion(seed, T, batch):
    """y(n+1) = 0.3 y(n) + 0.05 y(n) sum_{i=0}^{9} y(n-i) + 1.5 u(n-9) u(n) + 0.1, recomputed
    one sequence at a time with Python lists (y = u = 0 before the start)."""
    inputs, targets = narma10(T, batch, seed=seed)
    assert inputs.shape == targets.shape == (T, batch, 1)
    for b in range(batch):
        u = list(inputs[:, b, 0])
        assert all(0 <= v <= 0.5 for v in u)
        y = [0.0]                                          # y[n] = y(n)
        for n in range(T):
            past = sum(y[max(0, n - 9):n + 1])
            u_lag = u[n - 9] if n >= 9 else 0.0
            y.append(0.3 * y[n] + 0.05 * y[n] * past + 1.5 * u_lag * u[n] + 0.1)
        np.testing.assert_allclose(targets[:, b, 0], y[1:], rtol=1e-12)


def test_narma10_never_returns_a_diverged_sequence():
    _, targets = narma10(2000, 50, seed=0)
    assert np.isfinite(targets).all() and np.abs(targets).max() <= 10


@given(st.integers(1, 100), st.integers(1, 3))
def test_sine_generator_is_the_tutorials_wave(T, batch):
    inputs, targets = sine_generator(T, batch)
    assert inputs.shape == (T, batch, 0)
    n = np.arange(1, T + 1)
    for b in range(batch):
        np.testing.assert_allclose(targets[:, b, 0], 0.5 * np.sin(n / 4), rtol=1e-15)


@given(seeds)
def test_sine_generator_with_random_phases(seed):
    """Each row is 1/2 sin(n/4 + phi_b), whatever phi_b: it obeys the sine's recurrence
    s(n+1) = 2 cos(1/4) s(n) - s(n-1), and (s(n), (s(n+1) - s(n) cos(1/4)) / sin(1/4)) lies on
    the circle of radius 1/2; the rows have different phases."""
    _, targets = sine_generator(30, 4, random_phase=True, seed=seed)
    s = targets[:, :, 0]
    np.testing.assert_allclose(s[2:], 2 * np.cos(0.25) * s[1:-1] - s[:-2], atol=1e-14)
    cosine_part = (s[1:] - s[:-1] * np.cos(0.25)) / np.sin(0.25)
    np.testing.assert_allclose(s[:-1] ** 2 + cosine_part ** 2, 0.25, rtol=1e-12)
    assert len(np.unique(np.round(s[0], 12))) == 4
    with pytest.raises(ValueError, match="random_phase"):
        sine_generator(10, seed=0)


@given(seeds, st.integers(1, 60), st.lists(st.integers(0, 20), min_size=1, max_size=3))
def test_delay_line_targets_are_the_delayed_inputs(seed, T, delays):
    inputs, targets = delay_line(T, 2, delays=delays, seed=seed)
    assert inputs.shape == (T, 2, 1) and targets.shape == (T, 2, len(delays))
    u = inputs[:, :, 0]
    assert np.all((-0.5 <= u) & (u <= 0.5))
    for j, k in enumerate(delays):
        expected = np.array([u[n - k] if n >= k else np.zeros(2) for n in range(T)])
        np.testing.assert_array_equal(targets[:, :, j], expected)


@pytest.mark.parametrize("name", sorted(RESERVOIR_TASKS))
def test_every_reservoir_task_is_seeded_and_time_major(name):
    make = RESERVOIR_TASKS[name]
    options = {"random_phase": True} if name == "sine" else {}
    a = make(30, 2, seed=5, **options)
    b = make(30, 2, seed=5, **options)
    for x, y in zip(a, b):
        assert x.dtype == np.float64 and x.shape[:2] == (30, 2)
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="T must be at least"):
        make(0, 2, seed=5, **options)
