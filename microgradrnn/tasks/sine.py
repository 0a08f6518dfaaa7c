"""Sine waves for next-value prediction: the gentlest sequence task, a smoke test before the
pathological problems (a conventional exercise, e.g. PyTorch's time-sequence-prediction
example, rather than a benchmark from one paper).
"""
import numpy as np

from ._random import check_size, make_rng


def sine_waves(T, batch, *, n_components=1, min_period=8.0, max_period=64.0, seed=None,
               rng=None):
    """Sums of sinusoids with seeded frequencies and phases; predict the next value.

    Each sequence ``b`` is ``s_b(t) = (1/K) * sum_k sin(omega_kb * t + phi_kb)`` for
    ``t = 0 .. T``, with ``K = n_components``, each angular frequency ``omega_kb`` uniform in
    ``[2 pi / max_period, 2 pi / min_period]`` and each phase ``phi_kb`` uniform in
    ``[0, 2 pi)``, so ``|s| <= 1``. ``inputs[t, b, 0] = s_b(t)`` and
    ``targets[t, b, 0] = s_b(t + 1)``, both float64 of shape ``(T, batch, 1)``.

    A single sinusoid obeys ``s(t + 1) = 2 cos(omega) s(t) - s(t - 1)``, so a linear recurrence
    predicts it exactly once it has seen two values; a sum of K needs 2K. A sequence is
    correct when every judged step is within 0.04 of the target; judge after a warm-up, e.g.
    ``is_correct(outputs[8:], targets[8:])``, since the first value alone cannot tell which
    way the wave is going.
    """
    rng = make_rng(seed, rng)
    check_size("T", T, 1)
    check_size("batch", batch, 1)
    check_size("n_components", n_components, 1)
    if not 0 < min_period <= max_period:
        raise ValueError(f"need 0 < min_period <= max_period, got {min_period}, {max_period}")
    omega = rng.uniform(2 * np.pi / max_period, 2 * np.pi / min_period,
                        size=(n_components, batch))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n_components, batch))
    t = np.arange(T + 1, dtype=np.float64)[:, None, None]
    signal = np.sin(omega * t + phase).mean(axis=1)            # (T + 1, batch)
    return signal[:-1, :, None], signal[1:, :, None]
