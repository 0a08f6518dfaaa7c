"""The pathological long-term-dependency problems: one or two pieces of information early in a
long sequence of noise decide the target at its end.

They come from Hochreiter & Schmidhuber (1997), "Long Short-Term Memory", Neural Computation
9(8), section 5 (experiments 4, 5 and 6a), and were made the standard test of RNN training
by Martens & Sutskever (2011), "Learning Recurrent Neural Networks with Hessian-Free
Optimization", ICML, section 5 ("pathological synthetic problems"), which added the XOR and
noiseless-memorization problems; Le, Jaitly & Hinton (2015), "A Simple Way to Initialize
Recurrent Networks of Rectified Linear Units", section 4.1, gave the two-halves adding problem.

Every generator has the signature ``f(T, batch, *, seed=None, rng=None, ...)`` and returns
``(inputs, targets)``, time-major:

* ``inputs``: float64, shape ``(T, batch, D)``;
* ``targets``: float64 of shape ``(batch, 1)`` for the regression problems (adding,
  multiplication), int64 class indices of shape ``(batch,)`` for the classification problems
  (xor, temporal order), both judged on the network's output at the last step ``T - 1``; for
  memorization, int64 of shape ``(T, batch)``, one class per step.

One deliberate difference from the papers: every sequence of a batch has exactly length ``T``
(H&S draw each length from [T, T + T/10]; a rectangular batch keeps the arrays plain).
"""
import numpy as np

from ._random import check_size, make_rng

# temporal order: the eight input symbols of H&S experiment 6a, one-hot in this order.
TEMPORAL_ORDER_SYMBOLS = ("a", "b", "c", "d", "X", "Y", "E", "B")
TEMPORAL_ORDER_CLASSES = ("XX", "XY", "YX", "YY")


def _one_hot(ids, width):
    return (ids[..., None] == np.arange(width)).astype(np.float64)


def _hs_positions(T, batch, rng):
    """The two marked steps of H&S experiments 4 and 5: ``first`` uniform over the first ten
    steps, ``second`` uniform over the first ``T // 2`` steps other than ``first``.

    (For ``T < 20`` the first window shrinks to the first ``T // 2`` steps.)"""
    half = T // 2
    first = rng.integers(0, min(10, half), size=batch)
    other = rng.integers(0, half - 1, size=batch)
    second = other + (other >= first)        # uniform over {0 .. half-1} without `first`
    return first, second


def _hs_marker_channel(T, first, second):
    """Marker channel of H&S experiments 4 and 5: +1 on the two marked steps, -1 on the first
    and the last step when they are not marked, 0 elsewhere."""
    batch = first.shape[0]
    marker = np.zeros((T, batch))
    marker[0] = marker[T - 1] = -1.0
    columns = np.arange(batch)
    marker[first, columns] = 1.0
    marker[second, columns] = 1.0
    return marker


def _marked_pair(T, batch, seed, rng, draw, step0_value):
    """Values ``draw(rng, (T, batch))``, the H&S marker channel, and the two marked values.

    A marked step 0 (which otherwise carries the start marker -1) has its value replaced by
    ``step0_value`` (unless None), as H&S do for the adding problem."""
    rng = make_rng(seed, rng)
    check_size("T", T, 4)
    check_size("batch", batch, 1)
    values = draw(rng, (T, batch))
    first, second = _hs_positions(T, batch, rng)
    if step0_value is not None:
        values[0, (first == 0) | (second == 0)] = step0_value
    marker = _hs_marker_channel(T, first, second)
    columns = np.arange(batch)
    inputs = np.stack([values, marker], axis=-1)
    return inputs, values[first, columns], values[second, columns]


def _uniform(low, high):
    return lambda rng, shape: rng.uniform(low, high, size=shape)


def _bits(rng, shape):
    return rng.integers(0, 2, size=shape).astype(np.float64)


def adding(T, batch, *, seed=None, rng=None):
    """The adding problem of Hochreiter & Schmidhuber (1997), experiment 4.

    Each step is a pair (value, marker): ``inputs[..., 0]`` is uniform in [-1, 1];
    ``inputs[..., 1]`` is +1 on exactly two steps, -1 on the first and the last step (unless
    marked), 0 elsewhere. The first marked step is uniform over the first 10 steps, the second
    uniform over the other steps among the first ``T // 2``. If step 0 is marked its value is
    set to 0 ("X1 is set to zero in the rare case where the first pair of the sequence got
    marked"). With X1, X2 the two marked values, the target is ``0.5 + (X1 + X2) / 4`` (their
    sum scaled to [0, 1]), shape ``(batch, 1)``, judged at step ``T - 1``.

    A sequence is processed correctly when the absolute error is below 0.04 (H&S). Needs
    ``T >= 4``; H&S use T = 100 to 1000.
    """
    inputs, x1, x2 = _marked_pair(T, batch, seed, rng, _uniform(-1.0, 1.0), 0.0)
    return inputs, (0.5 + (x1 + x2) / 4.0)[:, None]


def adding_halves(T, batch, *, seed=None, rng=None):
    """The adding problem as set by Le, Jaitly & Hinton (2015), section 4.1 (also Arjovsky,
    Shah & Bengio 2016): two channels, no start or end markers.

    ``inputs[..., 0]`` is uniform in [0, 1]; ``inputs[..., 1]`` is 1 on exactly two steps, one
    uniform in the first half ``[0, T // 2)`` and one uniform in the second half
    ``[T // 2, T)``, and 0 elsewhere. The target is the sum of the two marked values (in
    [0, 2]), shape ``(batch, 1)``, judged at step ``T - 1``. Always predicting the mean, 1,
    gives a mean squared error of Var(X1 + X2) = 1/6, the level a model must get below; a
    sequence is counted correct when the absolute error is below 0.04, as for the H&S
    problems. Needs ``T >= 2``.
    """
    rng = make_rng(seed, rng)
    check_size("T", T, 2)
    check_size("batch", batch, 1)
    half = T // 2
    values = rng.uniform(0.0, 1.0, size=(T, batch))
    first = rng.integers(0, half, size=batch)
    second = rng.integers(half, T, size=batch)
    columns = np.arange(batch)
    marker = np.zeros((T, batch))
    marker[first, columns] = marker[second, columns] = 1.0
    target = values[first, columns] + values[second, columns]
    return np.stack([values, marker], axis=-1), target[:, None]


def multiplication(T, batch, *, seed=None, rng=None):
    """The multiplication problem of Hochreiter & Schmidhuber (1997), experiment 5.

    As :func:`adding` (same two channels and the same marker scheme), except that the values
    are uniform in [0, 1] and the target is the product ``X1 * X2`` of the two marked values,
    shape ``(batch, 1)``, judged at step ``T - 1``. A marked step 0 has its value set to 1, the
    neutral element of the product, as the adding problem sets it to 0, the neutral element of
    the sum. Correct when the absolute error is below 0.04. Needs ``T >= 4``.
    """
    inputs, x1, x2 = _marked_pair(T, batch, seed, rng, _uniform(0.0, 1.0), 1.0)
    return inputs, (x1 * x2)[:, None]


def xor(T, batch, *, seed=None, rng=None):
    """The XOR problem of Martens & Sutskever (2011), section 5: the adding problem's layout
    with random bits for values.

    ``inputs[..., 0]`` is 0 or 1 with probability 1/2 each; ``inputs[..., 1]`` is the marker
    channel of :func:`adding` (two +1 steps: one among the first 10, one among the first
    ``T // 2``; -1 on the first and last step when unmarked). The target is the class
    ``X1 XOR X2`` in {0, 1}, shape ``(batch,)``, judged at step ``T - 1`` (a 2-way output;
    correct when its argmax is the target). Harder than the other problems: the second bit
    alone says nothing about the target, so there is no partial credit to climb (M&S).
    Needs ``T >= 4``.
    """
    inputs, x1, x2 = _marked_pair(T, batch, seed, rng, _bits, None)
    return inputs, (x1 != x2).astype(np.int64)


def temporal_order(T, batch, *, seed=None, rng=None):
    """The temporal order problem of Hochreiter & Schmidhuber (1997), experiment 6a, with its
    windows scaled to length ``T``.

    Eight symbols, one-hot in the order ``a b c d X Y E B`` (``D = 8``): the sequence starts
    with ``E``, ends with the trigger symbol ``B``, and is otherwise uniform over the
    distractors ``a b c d``, except for two steps ``t1`` and ``t2`` that hold ``X`` or ``Y``
    (probability 1/2 each, independently). ``t1`` is uniform in ``[T // 10, 2T // 10]`` and
    ``t2`` uniform in ``[T // 2, 6T // 10]`` (H&S: 10..20 and 50..60 for length 100..110). The
    target is the class of the ordered pair, ``XX -> 0, XY -> 1, YX -> 2, YY -> 3``, shape
    ``(batch,)``, judged at step ``T - 1``; correct when the argmax of the 4 outputs is the
    target. Needs ``T >= 10``.
    """
    rng = make_rng(seed, rng)
    check_size("T", T, 10)
    check_size("batch", batch, 1)
    symbols = rng.integers(0, 4, size=(T, batch))      # distractors a b c d
    symbols[0] = TEMPORAL_ORDER_SYMBOLS.index("E")
    symbols[T - 1] = TEMPORAL_ORDER_SYMBOLS.index("B")
    t1 = rng.integers(T // 10, 2 * T // 10 + 1, size=batch)
    t2 = rng.integers(T // 2, 6 * T // 10 + 1, size=batch)
    is_y1 = rng.integers(0, 2, size=batch)
    is_y2 = rng.integers(0, 2, size=batch)
    columns = np.arange(batch)
    x = TEMPORAL_ORDER_SYMBOLS.index("X")
    symbols[t1, columns] = x + is_y1                   # X or Y
    symbols[t2, columns] = x + is_y2
    return _one_hot(symbols, len(TEMPORAL_ORDER_SYMBOLS)), (2 * is_y1 + is_y2).astype(np.int64)


def memorization(T, batch, *, length=5, n_symbols=2, seed=None, rng=None):
    """The noiseless memorization problem of Martens & Sutskever (2011), section 5: remember a
    pattern, then reproduce it after a long delay.

    Input symbols, one-hot (``D = n_symbols + 2``): the pattern symbols ``0 .. n_symbols-1``,
    then ``blank = n_symbols`` and ``go = n_symbols + 1``. Steps ``0 .. length-1`` show the
    pattern (each symbol uniform over ``n_symbols``); step ``T - length - 1`` shows ``go``;
    every other step is ``blank``. Targets, int64 of shape ``(T, batch)``: the class
    ``blank = n_symbols`` at every step except the last ``length``, which must reproduce the
    pattern (``n_symbols + 1`` output classes). M&S judge the last ``length`` steps: a sequence
    is correct when the argmax at each of them is the target; pass ``outputs[-length:]`` and
    ``targets[-length:]`` to :func:`is_correct` for that rule, the full arrays for the stricter
    every-step rule.

    Defaults: the 5-bit problem (``length=5, n_symbols=2``); ``length=10, n_symbols=5``
    carries 10 log2(5) = 23 bits, a pattern of the size of M&S's "over 20 bits" variant.
    Needs ``T >= 2 * length + 1``.
    """
    rng = make_rng(seed, rng)
    check_size("length", length, 1)
    check_size("n_symbols", n_symbols, 1)
    check_size("T", T, 2 * length + 1)
    check_size("batch", batch, 1)
    blank, go = n_symbols, n_symbols + 1
    pattern = rng.integers(0, n_symbols, size=(length, batch))
    symbols = np.full((T, batch), blank, dtype=np.int64)
    symbols[:length] = pattern
    symbols[T - length - 1] = go
    targets = np.full((T, batch), blank, dtype=np.int64)
    targets[T - length:] = pattern
    return _one_hot(symbols, n_symbols + 2), targets
