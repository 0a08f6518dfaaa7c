"""Initialisations from the papers, as functions that return new arrays.

:func:`sparse_init` is the "sparse initialization" of Martens (2010), "Deep learning via
Hessian-free optimization", section 5: every unit receives exactly 15 non-zero incoming
weights, drawn from N(0, 1), the rest are 0. Few, large weights give units that differ from
one another (a dense N(0, 1/fan_in) layer makes them nearly alike) without saturating them.
Martens & Sutskever (2011), section 5, initialise their RNNs this way and rescale the recurrent
matrix to a chosen spectral radius (how fast the hidden state forgets: > 1 keeps information
long, which the long-range problems need; Sutskever et al. (2013) use 1.1).
"""
from __future__ import annotations

import numpy as np

__all__ = ["sparse_init"]


def sparse_init(rng, shape, nonzero=15, scale=1.0, spectral_radius=None):
    """A new (fan_in, fan_out) array (the ``x @ W`` convention: column j holds unit j's
    incoming weights) whose every column has ``min(nonzero, fan_in)`` entries drawn from
    N(0, scale^2) at random rows, zeros elsewhere.

    ``spectral_radius``: for a square (recurrent) matrix, rescale it so that its largest
    eigenvalue modulus is exactly this.
    """
    fan_in, fan_out = shape
    W = np.zeros(shape)
    k = min(nonzero, fan_in)
    for j in range(fan_out):
        rows = rng.choice(fan_in, size=k, replace=False)
        W[rows, j] = scale * rng.standard_normal(k)
    if spectral_radius is not None:
        if fan_in != fan_out:
            raise ValueError(f"sparse_init: spectral_radius needs a square matrix, got {shape}")
        current = float(np.max(np.abs(np.linalg.eigvals(W))))
        if current == 0:
            raise ValueError("sparse_init: the sparse matrix drawn has spectral radius 0 "
                             "(nilpotent); draw again with another generator state")
        W = W * (spectral_radius / current)
    return W
