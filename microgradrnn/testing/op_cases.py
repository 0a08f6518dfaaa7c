"""``OP_CASES``: the one table of operations that drives every per-op property test.

Per operation: the microgradrnn call, an independent NumPy reference, a strategy for its inputs
inside a domain where finite differences are valid (away from the kinks of relu, abs and clip and
from the ties of max, min, maximum and minimum), and whether second derivatives exist there.
Built on the strategies of :mod:`microgradrnn.testing.strategies`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import microgradrnn as mg
from microgradrnn import functional as F

from .strategies import (broadcastable_shapes, distinct_arrays, float_arrays, lattice_arrays,
                         nonzero_arrays, positive_arrays, reduction_axes, small_shapes)

__all__ = ["Call", "OpCase", "OP_CASES"]


# -- the op table ---------------------------------------------------------------------------------

class Call(NamedTuple):
    """One drawn application of an op: its differentiable inputs (float64 arrays) and its static
    parameters (axes, shapes, indices, conditions, targets...) as keyword arguments."""
    arrays: tuple
    params: dict


@dataclass(frozen=True)
class OpCase:
    """One row of :data:`OP_CASES`.

    ``op(*tensors, **params)``: the microgradrnn call (a Tensor, or a tuple of Tensors);
    ``reference(*arrays, **params)``: the same function written independently with NumPy;
    ``inputs``: a strategy for a :class:`Call`; ``domain``: where the inputs lie, and why;
    ``twice_differentiable``: whether second derivatives exist on that domain (gradgradcheck).
    """
    name: str
    op: Callable
    reference: Callable
    inputs: st.SearchStrategy
    domain: str = "entries in [-2, 2]"
    twice_differentiable: bool = True

    def bind(self, params):
        """The op as a function of its Tensors alone (what gradcheck and jvpcheck take)."""
        return lambda *xs: self.op(*xs, **params)


def _calls(*arrays, **params):
    """Calls from a strategy per array and a strategy per parameter."""
    return st.builds(Call, st.tuples(*arrays), st.fixed_dictionaries(params))


@st.composite
def _elementwise_calls(draw, *makers, condition=False):
    """Arrays of mutually broadcastable shapes, array i drawn by ``makers[i](shape)``; with
    ``condition``, also a boolean ``condition`` parameter that broadcasts with them."""
    shapes = draw(broadcastable_shapes(len(makers) + condition)).input_shapes
    arrays = tuple(draw(make(shape)) for make, shape in zip(makers, shapes))
    params = {"condition": draw(hnp.arrays(np.bool_, shapes[-1]))} if condition else {}
    return Call(arrays, params)


@st.composite
def _reduction_calls(draw, make=float_arrays):
    x = draw(make(small_shapes()))
    return Call((x,), {"axis": draw(reduction_axes(x.ndim)), "keepdims": draw(st.booleans())})


@st.composite
def _axis_calls(draw, make=float_arrays):
    """One array of at least one axis and an int ``axis`` (softmax, log_softmax)."""
    x = draw(make(small_shapes(min_dims=1)))
    return Call((x,), {"axis": draw(st.integers(-x.ndim, x.ndim - 1))})


def _prime_factors(n):
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def _reshape_calls(draw):
    """A target shape of the same size: the prime factors of the size, shuffled and grouped
    into axes (empty groups are length-1 axes), one of them sometimes given as -1."""
    x = draw(float_arrays())
    factors = draw(st.permutations(_prime_factors(x.size)))
    cuts = sorted(draw(st.lists(st.integers(0, len(factors)), max_size=3)))
    shape = [math.prod(factors[a:b]) for a, b in zip([0] + cuts, cuts + [len(factors)])]
    if draw(st.booleans()):
        shape[draw(st.integers(0, len(shape) - 1))] = -1
    return Call((x,), {"shape": tuple(shape)})


@st.composite
def _transpose_calls(draw):
    x = draw(float_arrays())
    n = x.ndim
    axes = draw(st.one_of(st.none(), st.permutations(range(n)), st.permutations(range(-n, 0))))
    return Call((x,), {"axes": None if axes is None else tuple(axes)})


@st.composite
def _swapaxes_calls(draw):
    x = draw(float_arrays(small_shapes(min_dims=1)))
    axis = st.integers(-x.ndim, x.ndim - 1)
    return Call((x,), {"axis1": draw(axis), "axis2": draw(axis)})


@st.composite
def _broadcast_to_calls(draw):
    """A target shape ``x`` broadcasts to: new leading axes, and any length for x's 1-axes."""
    x = draw(float_arrays(small_shapes(max_dims=2, max_side=3)))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    tail = tuple(draw(st.integers(1, 3)) if n == 1 else n for n in x.shape)
    return Call((x,), {"shape": lead + tail})


@st.composite
def _expand_dims_calls(draw):
    x = draw(float_arrays())
    k = draw(st.integers(1, 2))
    axis = draw(st.one_of(st.integers(-x.ndim - 1, x.ndim),
                          hnp.valid_tuple_axes(x.ndim + k, min_size=k, max_size=k)))
    return Call((x,), {"axis": axis})


@st.composite
def _squeeze_calls(draw):
    x = draw(float_arrays(small_shapes(max_side=2)))  # sides of 1 and 2: many length-1 axes
    ones = [i for i, n in enumerate(x.shape) if n == 1]
    names = ones + [i - x.ndim for i in ones]  # each length-1 axis, positive and negative
    subset = st.lists(st.sampled_from(names), unique_by=lambda a: a % x.ndim).map(tuple)
    return Call((x,), {"axis": draw(st.none() | subset) if ones else None})


@st.composite
def _repeated_integer_index(draw, shape):
    """An integer-array index into ``shape``: along axis 0 or axis 1 (after a slice) with at
    least one entry picked twice, or one integer array per axis (``integer_array_indices``)."""
    kind = draw(st.sampled_from(["axis 0", "axis 1", "every axis"]))
    if kind == "every axis":
        return draw(hnp.integer_array_indices(
            shape, result_shape=small_shapes(min_dims=1, max_dims=2)))
    axis = 1 if kind == "axis 1" and len(shape) > 1 else 0
    n = shape[axis]
    picks = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=5))
    picks = np.array(picks + [picks[0]])  # the first entry is picked twice
    return (slice(None), picks) if axis else picks


@st.composite
def _mask_index(draw, shape):
    """A boolean mask over the leading k axes of ``shape``, or over axis 1 after a slice."""
    if len(shape) > 1 and draw(st.booleans()):
        return (slice(None), draw(hnp.arrays(np.bool_, shape[1:2])))
    k = draw(st.integers(1, len(shape)))
    return draw(hnp.arrays(np.bool_, shape[:k]))


@st.composite
def _getitem_calls(draw, index):
    x = draw(float_arrays(small_shapes(min_dims=1)))
    return Call((x,), {"index": draw(index(x.shape))})


_basic_index = partial(hnp.basic_indices, allow_newaxis=True)


@st.composite
def _scatter_add_calls(draw):
    shape = draw(small_shapes(min_dims=1, max_dims=2))
    index = draw(st.one_of(_repeated_integer_index(shape), _basic_index(shape),
                           _mask_index(shape)))
    values = draw(float_arrays(np.shape(np.empty(shape)[index])))
    return Call((values,), {"index": index, "shape": shape})


@st.composite
def _concatenate_calls(draw):
    base = draw(small_shapes(min_dims=1, max_side=3))
    axis = draw(st.integers(-len(base), len(base) - 1))
    a = axis % len(base)
    sizes = draw(st.lists(st.integers(1, 3), min_size=1, max_size=3))
    arrays = tuple(draw(float_arrays(base[:a] + (n,) + base[a + 1:])) for n in sizes)
    return Call(arrays, {"axis": axis})


@st.composite
def _stack_calls(draw):
    shape = draw(small_shapes(max_side=3))
    k = draw(st.integers(1, 3))
    arrays = tuple(draw(float_arrays(shape)) for _ in range(k))
    return Call(arrays, {"axis": draw(st.integers(-len(shape) - 1, len(shape)))})


@st.composite
def _split_calls(draw):
    """Equal sections (a divisor of the axis length) or sorted cut points (repeats allowed,
    which make empty pieces)."""
    x = draw(float_arrays(small_shapes(min_dims=1, max_side=6)))
    axis = draw(st.integers(-x.ndim, x.ndim - 1))
    n = x.shape[axis]
    sections = st.sampled_from([d for d in range(1, n + 1) if n % d == 0])
    cuts = st.lists(st.integers(0, n), max_size=3).map(sorted)
    return Call((x,), {"indices_or_sections": draw(sections | cuts), "axis": axis})


def _matmul_calls(signature, min_dims=0, max_dims=0):
    """Operand shapes from a gufunc signature; batch (loop) dims broadcast together."""
    shapes = hnp.mutually_broadcastable_shapes(signature=signature, min_dims=min_dims,
                                               max_dims=max_dims, max_side=3)
    return shapes.flatmap(lambda s: _calls(*(float_arrays(shape) for shape in s.input_shapes)))


@st.composite
def _affine_calls(draw, term):
    """x (m, n), W (n, p), and c a bias (p,) or, with ``term``, a full (m, p) term: the fused
    primitive's own cases (others fall back to matmul and add, which have their own rows)."""
    m, n, p = (draw(st.integers(1, 4)) for _ in range(3))
    return Call((draw(float_arrays((m, n))), draw(float_arrays((n, p))),
                 draw(float_arrays((m, p) if term else (p,)))), {})


@st.composite
def _cross_entropy_calls(draw, probabilities):
    shape = draw(small_shapes(min_dims=1))  # the last axis holds the classes
    logits = draw(float_arrays(shape, low=-3.0, high=3.0))
    if probabilities:
        weights = draw(positive_arrays(shape, low=0.05, high=1.0))
        targets = weights / weights.sum(axis=-1, keepdims=True)
    else:
        targets = draw(hnp.arrays(np.int64, shape[:-1], elements=st.integers(0, shape[-1] - 1)))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return Call((logits,), {"targets": targets, "reduction": reduction})


@st.composite
def _mse_calls(draw):
    shape = draw(small_shapes())
    arrays = (draw(float_arrays(shape)), draw(float_arrays(shape)))
    return Call(arrays, {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))})


# Independent NumPy references (naive formulas are exact enough on the bounded domains).

def _log_softmax_reference(x, axis=-1):
    return x - np.log(np.sum(np.exp(x), axis=axis, keepdims=True))


def _softmax_reference(x, axis=-1):
    e = np.exp(x)
    return e / np.sum(e, axis=axis, keepdims=True)


_REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda losses: losses}


def _cross_entropy_reference(logits, targets, reduction):
    log_p = _log_softmax_reference(logits)
    if targets.dtype.kind == "i":
        losses = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    else:
        losses = -np.sum(targets * log_p, axis=-1)
    return _REDUCE[reduction](losses)


def _scatter_add_reference(values, index, shape):
    """Zeros of ``shape``, then each value added at the flat position its index picks."""
    out = np.zeros(math.prod(shape))
    positions = np.asarray(np.arange(out.size).reshape(shape)[index])
    for position, value in zip(positions.ravel(), np.ravel(values)):
        out[position] += value
    return out.reshape(shape)


def _matmul_reference(x, y):
    """np.matmul's rules written as einsum: a 1-D operand is a vector, batch axes broadcast."""
    spec = {(1, 1): "j,j->", (1, 2): "j,...jk->...k", (2, 1): "...ij,j->...i"}
    return np.einsum(spec.get((min(x.ndim, 2), min(y.ndim, 2)), "...ij,...jk->...ik"), x, y)


def _clip_reference(x, low=None, high=None):
    return np.clip(x, low, high)


_reals = partial(float_arrays, low=-3.0, high=3.0)
_away_from_zero = partial(nonzero_arrays, min_magnitude=0.1, max_magnitude=3.0)
_on_integers = partial(lattice_arrays, offset=0.0)      # within 0.2 of an integer
_between_integers = partial(lattice_arrays, offset=0.5)  # at least 0.3 from every integer

_NO_TIES = "two lattices at least 0.1 apart: never tied, so finite differences see one branch"

OP_CASES = (
    # elementwise, binary (NumPy broadcasting)
    OpCase("add", mg.add, np.add, _elementwise_calls(float_arrays, float_arrays)),
    OpCase("sub", mg.sub, np.subtract, _elementwise_calls(float_arrays, float_arrays)),
    OpCase("mul", mg.mul, np.multiply, _elementwise_calls(float_arrays, float_arrays)),
    OpCase("div", mg.div, np.divide, _elementwise_calls(float_arrays, nonzero_arrays),
           domain="denominator 0.5 <= |y| <= 3"),
    OpCase("pow_tensor_exponent", mg.pow, np.power,
           _elementwise_calls(partial(positive_arrays, high=2.0), float_arrays),
           domain="base in [0.5, 2] (log x in d/dy), exponent in [-2, 2]"),
    OpCase("pow_constant_exponent", lambda x, exponent: mg.pow(x, exponent),
           lambda x, exponent: np.power(x, exponent),
           _calls(positive_arrays(), exponent=st.floats(-2.0, 3.0)), domain="base in [0.5, 3]"),
    OpCase("pow_integer_exponent", lambda x, exponent: x ** exponent,
           lambda x, exponent: np.power(x, exponent),
           _calls(_reals(), exponent=st.sampled_from([1.0, 2.0, 3.0])),
           domain="any sign of base, integer-valued exponent"),
    OpCase("maximum", mg.maximum, np.maximum, _elementwise_calls(_on_integers, _between_integers),
           domain=_NO_TIES),
    OpCase("minimum", mg.minimum, np.minimum, _elementwise_calls(_between_integers, _on_integers),
           domain=_NO_TIES),
    OpCase("where", lambda x, y, condition: mg.where(condition, x, y),
           lambda x, y, condition: np.where(condition, x, y),
           _elementwise_calls(float_arrays, float_arrays, condition=True)),
    # elementwise, unary
    OpCase("neg", mg.neg, np.negative, _calls(float_arrays())),
    OpCase("exp", mg.exp, np.exp, _calls(_reals())),
    OpCase("log", mg.log, np.log, _calls(positive_arrays(low=0.3)), domain="x in [0.3, 3]"),
    OpCase("sqrt", mg.sqrt, np.sqrt, _calls(positive_arrays(low=0.3)), domain="x in [0.3, 3]"),
    OpCase("tanh", mg.tanh, np.tanh, _calls(float_arrays(low=-4.0, high=4.0))),
    OpCase("sigmoid", mg.sigmoid, lambda x: 1 / (1 + np.exp(-x)),
           _calls(float_arrays(low=-6.0, high=6.0))),
    OpCase("relu", mg.relu, lambda x: x * (x > 0), _calls(_away_from_zero()),
           domain="|x| >= 0.1: away from the kink at 0"),
    OpCase("abs", mg.abs, np.abs, _calls(_away_from_zero()),
           domain="|x| >= 0.1: away from the kink at 0"),
    OpCase("clip", lambda x, low, high: mg.clip(x, low, high), _clip_reference,
           _calls(_between_integers(), low=st.sampled_from([None, -2.0, -1.0, 0.0]),
                  high=st.sampled_from([1.0, 2.0])),
           domain="x at least 0.3 from the integer bounds"),
    OpCase("clip_tensor_bounds", mg.clip, _clip_reference,
           _elementwise_calls(_between_integers,
                              partial(lattice_arrays, low=-1, high=-1),
                              partial(lattice_arrays, low=1, high=1)),
           domain="x at least 0.1 from the bounds (low near -1, high near 1)"),
    # reductions
    OpCase("sum", mg.sum, np.sum, _reduction_calls()),
    OpCase("mean", mg.mean, np.mean, _reduction_calls()),
    OpCase("max", mg.max, np.max, _reduction_calls(distinct_arrays),
           domain="entries pairwise >= 0.5 apart: a single maximum"),
    OpCase("min", mg.min, np.min, _reduction_calls(distinct_arrays),
           domain="entries pairwise >= 0.5 apart: a single minimum"),
    OpCase("logsumexp", mg.logsumexp,
           lambda x, axis, keepdims: np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims)),
           _reduction_calls(_reals)),
    # moving entries
    OpCase("reshape", mg.reshape, np.reshape, _reshape_calls()),
    OpCase("transpose", mg.transpose, np.transpose, _transpose_calls()),
    OpCase("swapaxes", mg.swapaxes, np.swapaxes, _swapaxes_calls()),
    OpCase("broadcast_to", lambda x, shape: mg.broadcast_to(x, shape), np.broadcast_to,
           _broadcast_to_calls()),
    OpCase("expand_dims", mg.expand_dims, np.expand_dims, _expand_dims_calls()),
    OpCase("squeeze", mg.squeeze, np.squeeze, _squeeze_calls()),
    OpCase("getitem_basic", mg.getitem, lambda x, index: x[index],
           _getitem_calls(_basic_index), domain="ints, slices, None, Ellipsis"),
    OpCase("getitem_integer_arrays", mg.getitem, lambda x, index: x[index],
           _getitem_calls(_repeated_integer_index), domain="entries picked more than once"),
    OpCase("getitem_boolean_mask", mg.getitem, lambda x, index: x[index],
           _getitem_calls(_mask_index)),
    OpCase("scatter_add", lambda values, index, shape: mg.scatter_add(values, index, shape),
           _scatter_add_reference, _scatter_add_calls()),
    OpCase("concatenate", lambda *xs, axis: mg.concatenate(xs, axis),
           lambda *xs, axis: np.concatenate(xs, axis), _concatenate_calls()),
    OpCase("stack", lambda *xs, axis: mg.stack(xs, axis),
           lambda *xs, axis: np.stack(xs, axis), _stack_calls()),
    OpCase("split", lambda x, **params: tuple(mg.split(x, **params)),
           lambda x, **params: tuple(np.split(x, **params)), _split_calls()),
    # matmul, NumPy's rules
    OpCase("matmul_vector_vector", mg.matmul, _matmul_reference, _matmul_calls("(n),(n)->()")),
    OpCase("matmul_vector_matrix", mg.matmul, _matmul_reference,
           _matmul_calls("(n),(n,p)->(p)")),
    OpCase("matmul_matrix_vector", mg.matmul, _matmul_reference,
           _matmul_calls("(m,n),(n)->(m)")),
    OpCase("matmul_matrix_matrix", mg.matmul, _matmul_reference,
           _matmul_calls("(m,n),(n,p)->(m,p)")),
    OpCase("matmul_batched", mg.matmul, _matmul_reference,
           _matmul_calls(np.matmul.signature, min_dims=1, max_dims=2),
           domain="batch axes that broadcast, 1-D operands included"),
    OpCase("affine", mg.affine, lambda x, W, b: np.einsum("mn,np->mp", x, W) + b,
           _affine_calls(term=False), domain="c a bias (p,), broadcast over the rows"),
    OpCase("affine_term", mg.affine, lambda x, W, c: np.einsum("mn,np->mp", x, W) + c,
           _affine_calls(term=True), domain="c a full (m, p) term"),
    # functional
    OpCase("softmax", F.softmax, _softmax_reference, _axis_calls(_reals)),
    OpCase("log_softmax", F.log_softmax, _log_softmax_reference, _axis_calls(_reals)),
    OpCase("cross_entropy_class_targets", F.cross_entropy, _cross_entropy_reference,
           _cross_entropy_calls(probabilities=False)),
    OpCase("cross_entropy_probability_targets", F.cross_entropy, _cross_entropy_reference,
           _cross_entropy_calls(probabilities=True)),
    OpCase("softmax_cross_entropy",
           lambda logits, targets, reduction: mg.softmax_cross_entropy(logits, targets),
           lambda logits, targets, reduction: _cross_entropy_reference(logits, targets, "none"),
           _cross_entropy_calls(probabilities=True),
           domain="the primitive itself, probability targets, one loss per row"),
    OpCase("mse", F.mse,
           lambda prediction, target, reduction: _REDUCE[reduction]((prediction - target) ** 2),
           _mse_calls()),
)
