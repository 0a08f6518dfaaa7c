"""The primitives and the operations built from them.

``_core`` holds the registry machinery; the primitives are grouped by kind. Every name here
accepts Tensors, NumPy arrays and Python scalars: on raw arrays it is plain NumPy, with a
Tensor among its inputs it returns a Tensor.
"""
from ._core import AnomalyError, Declined, Primitive, apply, defprimitive, value_of
from .broadcasting import broadcast_to
from .elementwise import (abs, add, clip, div, exp, log, maximum, minimum, mul, neg, pow, relu,
                          sigmoid, sqrt, sub, tanh, where)
from .linalg import affine, matmul
from .softmax import softmax, softmax_cross_entropy
from .reduce import logsumexp, max, mean, min, sum
from .shape import (concatenate, expand_dims, getitem, reshape, scatter_add, split, squeeze, stack,
                    swapaxes, transpose)

__all__ = ["AnomalyError", "Primitive", "Declined", "apply", "defprimitive",
           "value_of",
           "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "tanh", "sigmoid", "relu",
           "abs", "sqrt", "maximum", "minimum", "where", "clip",
           "sum", "mean", "max", "min", "logsumexp",
           "reshape", "transpose", "swapaxes", "broadcast_to", "expand_dims", "squeeze",
           "getitem", "scatter_add", "concatenate", "stack", "split", "matmul", "affine",
           "softmax", "softmax_cross_entropy"]
