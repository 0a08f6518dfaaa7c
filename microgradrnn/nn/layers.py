"""``Linear`` and ``Embedding``: the layers around a recurrent cell."""
from __future__ import annotations

import numpy as np

from ..ops import affine, matmul
from ..tensor import Parameter
from .module import Module

__all__ = ["Linear", "Embedding", "uniform_init"]


def uniform_init(rng, fan, shape):
    """U(-1/sqrt(fan), 1/sqrt(fan)): PyTorch's default for linear and recurrent layers."""
    bound = 1.0 / np.sqrt(fan)
    return rng.uniform(-bound, bound, size=shape)


class Linear(Module):
    """y = x W + b, with W of shape (in_features, out_features) (the ``x @ W`` convention)."""

    def __init__(self, in_features, out_features, bias=True, *, seed=None, rng=None,
                 dtype=np.float64):
        rng = np.random.default_rng(seed) if rng is None else rng
        self.W = Parameter(uniform_init(rng, in_features, (in_features, out_features)),
                           dtype=dtype)
        self.b = (Parameter(uniform_init(rng, in_features, (out_features,)), dtype=dtype)
                  if bias else None)

    def forward(self, x):
        # affine: one node for x W + b (see cells.py); matmul(x, W), not x @ W, because x may
        # be a raw array, and ndarray @ Tensor goes through NumPy's ufunc override protocol
        return matmul(x, self.W) if self.b is None else affine(x, self.W, self.b)


class Embedding(Module):
    """Rows of W picked by integer ids: ``W[ids]`` (the same as one_hot(ids) @ W, without
    the multiplications); repeated ids add their gradients."""

    def __init__(self, num_embeddings, embedding_dim, *, seed=None, rng=None,
                 dtype=np.float64):
        rng = np.random.default_rng(seed) if rng is None else rng
        self.W = Parameter(rng.standard_normal((num_embeddings, embedding_dim)), dtype=dtype)

    def forward(self, ids):
        ids = np.asarray(ids)
        if ids.dtype.kind not in "iu":
            raise TypeError(f"Embedding: ids must be integers, got dtype {ids.dtype}")
        return self.W[ids]
