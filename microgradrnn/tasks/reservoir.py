"""The benchmark signals of reservoir computing: Mackey-Glass, NARMA-10, the tutorial's sine
generator and the delay line.

Each generator follows the convention of :mod:`microgradrnn.tasks`,
``f(T, batch, *, seed=None, rng=None, **options) -> (inputs, targets)``, time-major, float64,
``inputs`` of shape ``(T, batch, D)`` and ``targets`` of shape ``(T, batch, K)``: one target
per step. An echo state network takes one sequence at a time, ``inputs[:, b]``.

* :func:`mackey_glass` - next-step prediction of the chaotic Mackey-Glass series
  (:func:`mackey_glass_series` gives the series itself);
* :func:`narma10` - the tenth-order nonlinear autoregressive moving average system;
* :func:`sine_generator` - ``d(n) = 1/2 sin(n/4)`` with no input (``D = 0``): a pattern
  generator, learnt with output feedback;
* :func:`delay_line` - recall the input of ``k`` steps ago (short-term memory).
"""
from __future__ import annotations

import numpy as np

from ._random import check_size, make_rng

__all__ = ["mackey_glass_series", "mackey_glass", "narma10", "sine_generator", "delay_line",
           "RESERVOIR_TASKS"]


def mackey_glass_series(n, batch=1, *, tau=17.0, delta=0.1, subsample=10, x0=1.2,
                        perturbation=0.1, discard=1000, seed=None, rng=None):
    """Samples of the Mackey-Glass delay differential equation, shape ``(n, batch)``.

    ``dx/dt = 0.2 x(t - tau) / (1 + x(t - tau)**10) - 0.1 x(t)`` (Mackey & Glass 1977,
    "Oscillation and chaos in physiological control systems", Science 197), chaotic for
    ``tau = 17``. As in Jaeger (2001), "The 'echo state' approach to analysing and training
    recurrent neural networks", GMD Report 148, it is integrated with Euler steps of
    ``delta = 1/10``,

        x(t + delta) = x(t) + delta (0.2 x(t - tau) / (1 + x(t - tau)**10) - 0.1 x(t)),

    and every ``subsample = 10``-th value is kept, so one sample is one time unit. Each
    sequence starts from its own seeded history: ``x = x0 + U(-perturbation, perturbation)``,
    drawn independently at each of the ``tau / delta + 1`` Euler points of ``[-tau, 0]``; the
    first ``discard`` samples (the transient onto the attractor) are dropped. The series stays in
    about [0.4, 1.4]; Jaeger squashes it with ``tanh(x - 1)`` before feeding it to a reservoir.
    """
    rng = make_rng(seed, rng)
    check_size("n", n, 1)
    check_size("batch", batch, 1)
    check_size("subsample", subsample, 1)
    check_size("discard", discard, 0)
    lag = int(round(tau / delta))
    if lag < 1 or not np.isclose(lag * delta, tau):
        raise ValueError(f"mackey_glass_series: tau / delta must be a positive whole number of "
                         f"Euler steps, got tau={tau}, delta={delta}")
    # A ring buffer of the last `lag` values: at Euler step k, history[k % lag] holds
    # x(t - tau), the value of step k - lag; it is read, then replaced by x(t), which step
    # k + lag will read from the same slot.
    start = x0 + rng.uniform(-perturbation, perturbation, size=(lag + 1, batch))
    history, x = start[:-1].copy(), start[-1].copy()
    out = np.empty((n, batch))
    for k in range((discard + n) * subsample):
        i = k % lag
        delayed = history[i]
        new = x + delta * (0.2 * delayed / (1.0 + delayed ** 10) - 0.1 * x)
        history[i] = x
        x = new
        sample, phase = divmod(k + 1, subsample)      # x is now the value of Euler step k + 1
        if phase == 0 and sample > discard:
            out[sample - discard - 1] = x
    return out


def mackey_glass(T, batch, *, tau=17.0, seed=None, rng=None, **options):
    """One-step-ahead prediction of the Mackey-Glass series (:func:`mackey_glass_series`):
    ``inputs[t, b, 0] = x_b(t)`` and ``targets[t, b, 0] = x_b(t + 1)``, shape ``(T, batch, 1)``.

    The benchmark of Jaeger (2001) and Jaeger & Haas (2004), "Harnessing nonlinearity:
    predicting chaotic systems and saving energy in wireless communication", Science 304,
    runs the network free after training on the series (a generator with output feedback,
    judged by NRMSE_84, the error 84 steps into the free run); the next-step pairs here serve
    one-step predictors and the BPTT comparison. ``options`` go to
    :func:`mackey_glass_series`.
    """
    check_size("T", T, 1)
    series = mackey_glass_series(T + 1, batch, tau=tau, seed=seed, rng=rng, **options)
    return series[:-1, :, None], series[1:, :, None]


def narma10(T, batch, *, seed=None, rng=None):
    """The tenth-order NARMA system of Atiya & Parlos (2000), "New results on recurrent network
    training", IEEE Trans. Neural Networks 11(3), as used for ESNs by Jaeger (2003), "Adaptive
    nonlinear system identification with echo state networks", NIPS 15:

        y(n + 1) = 0.3 y(n) + 0.05 y(n) sum_{i=0}^{9} y(n - i) + 1.5 u(n - 9) u(n) + 0.1,

    with ``u(n)`` i.i.d. uniform in [0, 0.5] and ``y = u = 0`` before step 0. Identify the
    system from its input: ``inputs[n, b, 0] = u(n)`` and ``targets[n, b, 0] = y(n + 1)``,
    shape ``(T, batch, 1)``: the target at step n depends on the inputs up to step n only,
    ten steps back. A few input sequences make this system diverge; such a sequence (|y| > 10,
    which no bounded run reaches: a typical y stays below 1) is drawn again, from the same
    generator, so the result stays a function of the seed.
    """
    rng = make_rng(seed, rng)
    check_size("T", T, 1)
    check_size("batch", batch, 1)
    u = rng.uniform(0.0, 0.5, size=(T, batch))
    y = _narma10_outputs(u)
    bad = ~np.isfinite(y).all(axis=0) | (np.abs(y) > 10).any(axis=0)
    while bad.any():
        u[:, bad] = rng.uniform(0.0, 0.5, size=(T, int(bad.sum())))
        y[:, bad] = _narma10_outputs(u[:, bad])
        bad = ~np.isfinite(y).all(axis=0) | (np.abs(y) > 10).any(axis=0)
    return u[:, :, None], y[:, :, None]


def _narma10_outputs(u):
    """y(n + 1) for n = 0 .. T-1 (row n), by the recursion of :func:`narma10`."""
    T, batch = u.shape
    y = np.zeros((T + 1, batch))            # y[n] is y(n); y(0) = 0
    with np.errstate(over="ignore", invalid="ignore"):
        for n in range(T):
            window = y[max(0, n - 9):n + 1].sum(axis=0)       # y(n-9) .. y(n); zeros before 0
            u_lag = u[n - 9] if n >= 9 else 0.0
            y[n + 1] = 0.3 * y[n] + 0.05 * y[n] * window + 1.5 * u_lag * u[n] + 0.1
    return y[1:]


def sine_generator(T, batch=1, *, random_phase=False, seed=None, rng=None):
    """The pattern of the sine-generator example in Jaeger (2002), "A tutorial on training
    recurrent neural networks, covering BPPT, RTRL, EKF and the 'echo state network' approach",
    GMD Report 159: ``d(n) = 1/2 sin(n / 4)`` for ``n = 1 .. T``, with no input.

    ``inputs`` has shape ``(T, batch, 0)`` (there is nothing to feed in: the network must
    produce the wave from its own output fed back) and ``targets[n - 1, b, 0] = d(n)``. The
    tutorial's signal is deterministic; with ``random_phase=True`` each sequence gets its own
    seeded phase, ``1/2 sin(n / 4 + phi_b)``, ``phi_b`` uniform in [0, 2 pi).
    """
    check_size("T", T, 1)
    check_size("batch", batch, 1)
    phase = np.zeros(batch)
    if random_phase:
        phase = make_rng(seed, rng).uniform(0.0, 2 * np.pi, size=batch)
    elif seed is not None or rng is not None:
        raise ValueError("sine_generator: the tutorial's wave has no randomness; seed= or rng= "
                         "only matter with random_phase=True")
    n = np.arange(1, T + 1, dtype=np.float64)[:, None]
    return np.zeros((T, batch, 0)), (0.5 * np.sin(n / 4.0 + phase))[:, :, None]


def delay_line(T, batch, *, delays=5, low=-0.5, high=0.5, seed=None, rng=None):
    """Recall the input of ``k`` steps ago: the short-term-memory task of Jaeger (2002),
    "Short term memory in echo state networks", GMD Report 152.

    ``inputs[n, b, 0] = u(n)``, i.i.d. uniform in ``[low, high]``; for each delay ``k`` in
    ``delays`` (an int or a sequence of them), ``targets[n, b, j] = u(n - k_j)``, and 0 for
    ``n < k_j`` (the zeros the network starts from), so targets have shape
    ``(T, batch, len(delays))``. Jaeger's memory capacity of a network is the sum over k of the
    squared correlation between its output for delay k and ``u(n - k)``.
    """
    rng = make_rng(seed, rng)
    check_size("T", T, 1)
    check_size("batch", batch, 1)
    delays = (delays,) if np.ndim(delays) == 0 else tuple(delays)
    if not delays:
        raise ValueError("delay_line: give at least one delay")
    for k in delays:
        check_size("delay", k, 0)
    if not low < high:
        raise ValueError(f"delay_line: need low < high, got {low}, {high}")
    u = rng.uniform(low, high, size=(T, batch))
    targets = np.zeros((T, batch, len(delays)))
    for j, k in enumerate(delays):
        if k < T:
            targets[k:, :, j] = u[:T - k]
    return u[:, :, None], targets


RESERVOIR_TASKS = {
    "mackey-glass": mackey_glass,
    "narma10": narma10,
    "sine": sine_generator,
    "delay-line": delay_line,
}
