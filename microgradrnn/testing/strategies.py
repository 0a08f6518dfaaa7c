"""Hypothesis strategies for microgradrnn: arrays in safe ranges, shapes, tensors, random
expression DAGs with shared nodes, and RNN configurations.

* arrays (float64, finite, bounded): :func:`float_arrays`, :func:`positive_arrays`,
  :func:`nonzero_arrays`, :func:`lattice_arrays` (two lattices never tie), :func:`distinct_arrays`
  (no two entries close: max and min have one winner);
* shapes: :func:`small_shapes`, :func:`broadcastable_shapes`, :func:`reduction_axes`;
* :func:`tensors`: leaves that require grad;
* :func:`expression_dags`: small random programs whose values are used several times (fan-out),
  evaluated tied (one leaf per input) or untied (one copy of a leaf per use);
* :func:`rnn_configs`: small ``(T, batch, input_size, hidden_size)``;
* the table of op cases that drives the per-op tests is :data:`microgradrnn.testing.op_cases.OP_CASES`,
  built from these strategies.

Shapes come from ``hypothesis.extra.numpy`` (``array_shapes``, ``mutually_broadcastable_shapes``,
``basic_indices``...), not from home-made generators.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import microgradrnn as mg

__all__ = ["small_shapes", "broadcastable_shapes", "reduction_axes", "float_arrays",
           "positive_arrays", "nonzero_arrays", "lattice_arrays", "distinct_arrays", "tensors",
           "ExpressionDAG", "expression_dags", "RNNConfig", "rnn_configs"]


# -- shapes ---------------------------------------------------------------------------------------

def small_shapes(*, min_dims=0, max_dims=3, min_side=1, max_side=4):
    """Shapes with few, short axes (``hnp.array_shapes``): cheap to check, still varied."""
    return hnp.array_shapes(min_dims=min_dims, max_dims=max_dims, min_side=min_side,
                            max_side=max_side)


def broadcastable_shapes(num_shapes=2, *, min_dims=0, max_dims=3, max_side=4):
    """``num_shapes`` shapes that broadcast together, as ``BroadcastableShapes(input_shapes,
    result_shape)`` (``hnp.mutually_broadcastable_shapes``)."""
    return hnp.mutually_broadcastable_shapes(num_shapes=num_shapes, min_dims=min_dims,
                                             max_dims=max_dims, min_side=1, max_side=max_side)


def reduction_axes(ndim):
    """An ``axis`` argument as NumPy reductions take it for an ``ndim``-dimensional array: None,
    an int (possibly negative) or a tuple of distinct axes (possibly empty or negative)."""
    options = [st.none(), hnp.valid_tuple_axes(ndim)]
    if ndim:
        options.append(st.integers(-ndim, ndim - 1))
    return st.one_of(options)


# -- arrays ---------------------------------------------------------------------------------------

def _floats(low, high, min_magnitude=0.0):
    if min_magnitude <= 0:
        return st.floats(low, high)
    sides = []
    if low <= -min_magnitude:
        sides.append(st.floats(low, -min_magnitude))
    if high >= min_magnitude:
        sides.append(st.floats(min_magnitude, high))
    if not sides:
        raise ValueError(f"no float in [{low}, {high}] has magnitude >= {min_magnitude}")
    return st.one_of(sides)


def float_arrays(shape=None, *, low=-2.0, high=2.0, min_magnitude=0.0):
    """float64 arrays with entries in [low, high] (so never NaN or inf); with
    ``min_magnitude > 0`` every entry also has ``|x| >= min_magnitude`` (away from zero).
    ``shape``: a tuple or a strategy for one (default :func:`small_shapes`)."""
    return hnp.arrays(np.float64, small_shapes() if shape is None else shape,
                      elements=_floats(low, high, min_magnitude))


def positive_arrays(shape=None, *, low=0.5, high=3.0):
    """float64 arrays with entries in [low, high], low > 0: the domain of log, sqrt, x ** y."""
    if low <= 0:
        raise ValueError(f"positive_arrays: low must be > 0, got {low}")
    return float_arrays(shape, low=low, high=high)


def nonzero_arrays(shape=None, *, min_magnitude=0.5, max_magnitude=3.0):
    """float64 arrays with ``min_magnitude <= |x| <= max_magnitude``, either sign: denominators."""
    return float_arrays(shape, low=-max_magnitude, high=max_magnitude,
                        min_magnitude=min_magnitude)


def lattice_arrays(shape=None, *, offset=0.0, low=-2, high=2, width=0.2):
    """float64 arrays with entries within ``width`` of the points ``k + offset``, k an integer in
    [low, high]. Entries of an array with offset 0 and of one with offset 0.5 differ by at
    least ``0.5 - 2 width`` (no ties in maximum, minimum), and offset-0.5 entries stay
    ``0.5 - width`` away from every integer (clip bounds, kinks)."""
    elements = st.builds(lambda k, e: k + offset + e, st.integers(low, high),
                         st.floats(-width, width))
    return hnp.arrays(np.float64, small_shapes() if shape is None else shape, elements=elements)


def _draw_shape(draw, shape):
    return draw(shape) if isinstance(shape, st.SearchStrategy) else tuple(shape)


@st.composite
def distinct_arrays(draw, shape=None, *, gap=0.5):
    """float64 arrays whose entries differ pairwise by at least ``gap``: a max or min over any
    axes has a single winner, far enough from a tie for finite differences."""
    shape = _draw_shape(draw, small_shapes() if shape is None else shape)
    n = math.prod(shape)
    order = np.array(draw(st.permutations(range(n))), dtype=np.float64)
    jitter = draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 0.5)))
    # consecutive ranks are 2 gap apart, moved by at most gap: gaps of at least gap remain
    return ((order + jitter - n / 2) * 2 * gap).reshape(shape)


def tensors(arrays=None, *, requires_grad=True):
    """Tensors holding drawn arrays (default :func:`float_arrays`), leaves that require grad."""
    arrays = float_arrays() if arrays is None else arrays
    return arrays.map(lambda a: mg.tensor(a, requires_grad=requires_grad))


# -- random expression DAGs with shared nodes -----------------------------------------------------

# Smooth everywhere, and no op that can overflow on bounded inputs (no exp, no division).
_DAG_OPS = {"add": (2, mg.add), "sub": (2, mg.sub), "mul": (2, mg.mul),
            "tanh": (1, mg.tanh), "sigmoid": (1, mg.sigmoid)}


@dataclass(frozen=True)
class ExpressionDAG:
    """A small program over ``leaves``: instruction k is ``(op name, argument indices)`` and
    computes value ``len(leaves) + k`` from earlier values (leaves have indices
    ``0 .. len(leaves) - 1``). A value may be used any number of times: that reuse (fan-out)
    makes the graph a DAG rather than a tree. The output is the sum of the entries of every
    value no instruction uses (the sinks), so every leaf reaches the output."""

    leaves: tuple          # float64 arrays whose shapes broadcast together
    instructions: tuple    # ((op name, (argument index, ...)), ...)

    def use_counts(self):
        """How many times each value (leaves first) is an argument of an instruction."""
        counts = [0] * (len(self.leaves) + len(self.instructions))
        for _, args in self.instructions:
            for i in args:
                counts[i] += 1
        return counts

    def sinks(self):
        """The indices of the values that no instruction uses: they make up the output."""
        return [i for i, n in enumerate(self.use_counts()) if n == 0]

    def evaluate(self, *leaves):
        """The output on ``leaves`` (Tensors or arrays, one per leaf), each leaf shared by all
        its uses. This is the function to give to ``mg.gradcheck``."""
        return self._run(lambda i: leaves[i])

    def evaluate_tied(self):
        """``(out, leaves)``: the output on fresh leaf Tensors that require grad, one per leaf."""
        leaves = [mg.tensor(x, requires_grad=True) for x in self.leaves]
        return self.evaluate(*leaves), leaves

    def evaluate_untied(self):
        """``(out, copies)``: the output where every use of a leaf reads its own fresh copy of
        the leaf (a Tensor that requires grad); ``copies[i]`` lists leaf i's copies, one per use.
        By the chain rule the tied gradient of leaf i is the sum of its copies' gradients."""
        copies = [[] for _ in self.leaves]

        def leaf(i):
            copy = mg.tensor(self.leaves[i], requires_grad=True)
            copies[i].append(copy)
            return copy
        return self._run(leaf), copies

    def _run(self, leaf):
        n = len(self.leaves)
        values = [None] * n

        def use(i):
            return leaf(i) if i < n else values[i]
        for name, args in self.instructions:
            values.append(_DAG_OPS[name][1](*(use(i) for i in args)))
        out = None
        for i in self.sinks():
            term = mg.sum(use(i))
            out = term if out is None else out + term
        return out


@st.composite
def expression_dags(draw, *, max_leaves=3, max_instructions=6, low=-1.0, high=1.0):
    """:class:`ExpressionDAG` s of add, sub, mul, tanh and sigmoid over 1 to ``max_leaves``
    leaves (broadcastable shapes, entries in [low, high]). Arguments are drawn among all
    earlier values, so leaves and intermediate results are reused; every drawn DAG has at
    least one value used twice (when the draw has none, ``mul(v, v)`` of the last value is
    appended: the ``a * a`` case of one node feeding both inputs of the next)."""
    n_leaves = draw(st.integers(1, max_leaves))
    shapes = draw(broadcastable_shapes(n_leaves, max_dims=2, max_side=3)).input_shapes
    leaves = tuple(draw(float_arrays(shape, low=low, high=high)) for shape in shapes)
    instructions = []
    for k in range(draw(st.integers(1, max_instructions))):
        name = draw(st.sampled_from(sorted(_DAG_OPS)))
        args = tuple(draw(st.integers(0, n_leaves + k - 1)) for _ in range(_DAG_OPS[name][0]))
        instructions.append((name, args))
    dag = ExpressionDAG(leaves, tuple(instructions))
    if max(dag.use_counts()) < 2:
        last = n_leaves + len(instructions) - 1
        dag = ExpressionDAG(leaves, dag.instructions + (("mul", (last, last)),))
    return dag


# -- RNN configurations ---------------------------------------------------------------------------

class RNNConfig(NamedTuple):
    """The sizes of a small recurrent problem: T steps of (batch, input_size) inputs and a
    (batch, hidden_size) state."""
    T: int
    batch: int
    input_size: int
    hidden_size: int


def rnn_configs(*, max_T=5, max_batch=3, max_input_size=4, max_hidden_size=4):
    """Small :class:`RNNConfig` s (every size at least 1), cheap enough for finite differences."""
    return st.builds(RNNConfig, st.integers(1, max_T), st.integers(1, max_batch),
                     st.integers(1, max_input_size), st.integers(1, max_hidden_size))
