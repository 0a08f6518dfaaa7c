"""The one way every generator in ``microgradrnn.tasks`` gets its randomness.

A generator takes either ``seed=`` (an int, or None for fresh entropy) or ``rng=`` (a
``numpy.random.Generator`` that the caller owns and that advances as data is drawn), never both,
and never touches NumPy's global random state.
"""
import numpy as np


def make_rng(seed=None, rng=None):
    """Return the ``numpy.random.Generator`` to draw from: ``rng`` itself, or a new one seeded
    with ``seed``."""
    if rng is not None:
        if seed is not None:
            raise ValueError("give seed= or rng=, not both")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
        return rng
    return np.random.default_rng(seed)


def check_size(name, value, minimum):
    """Raise a ValueError unless ``value`` is an int of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
