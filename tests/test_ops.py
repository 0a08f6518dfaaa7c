"""Every operation, checked the same way, then the points the random checks avoid.

Part 1 runs the table ``OP_CASES`` (microgradrnn.testing.op_cases) through
``parametrize x @given``: the forward pass against an independent NumPy reference, reverse mode
(gradcheck) and forward mode (jvpcheck) against central differences, second derivatives
(gradgradcheck), and float32 in -> float32 out. The table's domains keep away from kinks and
ties, where finite differences are not valid.

Part 2 pins those kinks and ties, and the numerically delicate functions, with exact,
non-random expectations: closed forms, np.add.at, np.matmul and explicit loops.
"""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn import functional as F
from microgradrnn.testing.op_cases import OP_CASES
from microgradrnn.testing.strategies import float_arrays, small_shapes

ALL_CASES = pytest.mark.parametrize("case", OP_CASES, ids=lambda case: case.name)
TWICE_DIFFERENTIABLE = pytest.mark.parametrize(
    "case", [case for case in OP_CASES if case.twice_differentiable], ids=lambda case: case.name)


def _tuple(out):
    return out if isinstance(out, tuple) else (out,)


def _leaves(arrays, dtype=None):
    return [mg.tensor(a, requires_grad=True, dtype=dtype) for a in arrays]


# -- part 1: the op table ------------------------------------------------------------------------

@ALL_CASES
@given(data=st.data())
def test_forward_matches_numpy_reference(case, data):
    """The value (and shape) of every op equals an independent NumPy formula."""
    call = data.draw(case.inputs, label="call")
    outs = _tuple(case.op(*_leaves(call.arrays), **call.params))
    expected = _tuple(case.reference(*call.arrays, **call.params))
    assert len(outs) == len(expected)
    for out, reference in zip(outs, expected):
        assert isinstance(out, mg.Tensor)
        assert out.shape == np.shape(reference)
        np.testing.assert_allclose(out.value, reference, rtol=1e-12, atol=1e-12)


@ALL_CASES
@given(data=st.data())
def test_vjp_matches_finite_differences(case, data):
    """Reverse mode: <J^T v, u> equals <v, central difference along u>, every input."""
    call = data.draw(case.inputs, label="call")
    assert mg.gradcheck(case.bind(call.params), call.arrays)


@ALL_CASES
@given(data=st.data())
def test_jvp_matches_finite_differences_and_vjp(case, data):
    """Forward mode: J u equals the central difference, and <v, J u> = <J^T v, u>."""
    call = data.draw(case.inputs, label="call")
    assert mg.jvpcheck(case.bind(call.params), call.arrays)


@TWICE_DIFFERENTIABLE
@given(data=st.data())
def test_second_derivatives_match_finite_differences(case, data):
    """The derivative rules are themselves differentiated correctly (reverse over reverse and
    forward over reverse), because they are written with the library's own ops."""
    call = data.draw(case.inputs, label="call")
    assert mg.gradgradcheck(case.bind(call.params), call.arrays)


def _float32(param):
    if isinstance(param, np.ndarray) and param.dtype == np.float64:
        return param.astype(np.float32)
    return param


@ALL_CASES
@given(data=st.data())
def test_float32_inputs_give_float32_values_and_gradients(case, data):
    """No float64 leaks into a float32 computation, forward or backward (a Python float
    constant or a float64 helper array inside a rule would promote it)."""
    call = data.draw(case.inputs, label="call")
    xs = _leaves(call.arrays, dtype=np.float32)
    params = {name: _float32(value) for name, value in call.params.items()}
    outs = _tuple(case.op(*xs, **params))
    assert [out.dtype for out in outs] == [np.float32] * len(outs)
    total = mg.sum(outs[0])
    for out in outs[1:]:
        total = total + mg.sum(out)
    total.backward()
    assert [x.grad.dtype for x in xs] == [np.float32] * len(xs)


# -- part 2: ties and kinks, exactly -------------------------------------------------------------

@pytest.mark.parametrize("reduce, sign", [(mg.max, 1.0), (mg.min, -1.0)], ids=["max", "min"])
def test_tied_extrema_share_the_gradient_equally(reduce, sign):
    """Each of k entries tied for the max (min) receives 1/k of the gradient, in reverse and in
    forward mode; a single winner takes it all."""
    x = mg.tensor(sign * np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [5.0, 0.0, 1.0]]),
                  requires_grad=True)
    g = np.array([2.0, 3.0, 5.0])
    mg.sum(reduce(x, axis=1) * g).backward()
    share = np.array([[0, 1 / 2, 1 / 2], [1 / 3, 1 / 3, 1 / 3], [1, 0, 0]])
    np.testing.assert_allclose(x.grad, share * g[:, None], rtol=1e-15)

    u = np.arange(9.0).reshape(3, 3)
    _, tangent = mg.jvp(lambda x: reduce(x, axis=1), (x.value,), (u,))
    np.testing.assert_allclose(tangent.value, [(1 + 2) / 2, (3 + 4 + 5) / 3, 6], rtol=1e-15)

    y = mg.tensor(sign * np.array([[1.0, 4.0], [4.0, 4.0]]), requires_grad=True)
    reduce(y).backward()  # over all axes: three tied entries
    np.testing.assert_allclose(y.grad, [[0, 1 / 3], [1 / 3, 1 / 3]], rtol=1e-15)


def test_maximum_and_minimum_ties_give_half_to_each_side():
    """maximum/minimum: the winner gets the gradient, a tie gives 1/2 to each input; with
    broadcasting, a scalar tied with several entries collects the halves."""
    x0, y0 = np.array([1.0, 2.0, 3.0]), np.array([1.0, 5.0, 0.0])
    for op, x_share, y_share in [(mg.maximum, [0.5, 0, 1], [0.5, 1, 0]),
                                 (mg.minimum, [0.5, 1, 0], [0.5, 0, 1])]:
        x, y = _leaves([x0, y0])
        mg.sum(op(x, y)).backward()
        np.testing.assert_array_equal(x.grad, x_share)
        np.testing.assert_array_equal(y.grad, y_share)

    x, c = _leaves([np.array([2.0, 2.0, 1.0]), np.array(2.0)])
    mg.sum(mg.maximum(x, c)).backward()
    np.testing.assert_array_equal(x.grad, [0.5, 0.5, 0.0])
    assert c.grad == 0.5 + 0.5 + 1.0


def test_relu_and_abs_have_zero_gradient_at_zero():
    """The convention at the kink: relu'(0) = 0 and abs'(0) = sign(0) = 0, both modes."""
    x0 = np.array([-1.5, 0.0, 2.0])
    for op, expected in [(mg.relu, [0.0, 0.0, 1.0]), (mg.abs, [-1.0, 0.0, 1.0])]:
        (x,) = _leaves([x0])
        mg.sum(op(x)).backward()
        np.testing.assert_array_equal(x.grad, expected)
        _, tangent = mg.jvp(op, (x0,), (np.ones(3),))
        np.testing.assert_array_equal(tangent.value, expected)


def test_clip_gradient_is_one_inside_and_zero_outside():
    """Inside [low, high] the gradient passes; outside, x gets 0 and a Tensor bound gets it."""
    x0 = np.array([-3.0, -0.5, 0.25, 4.0, 7.0])
    (x,) = _leaves([x0])
    mg.sum(mg.clip(x, -1.0, 1.0)).backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 0, 0])

    (x,) = _leaves([x0])
    mg.sum(mg.clip(x, low=-1.0)).backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 1, 1])

    x, low, high = _leaves([x0, np.array(-1.0), np.array(1.0)])
    mg.sum(mg.clip(x, low, high)).backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1, 0, 0])
    assert low.grad == 1.0 and high.grad == 2.0


@pytest.mark.parametrize("index", [
    np.array([0, 2, 0, 0, 3]),                       # rows, row 0 three times
    (np.array([0, 0, 1, 0]), np.array([2, 2, 0, 2])),  # entry (0, 2) three times
    (slice(None), np.array([1, 1, 0, -2])),          # columns, column 1 three times (-2 is 1)
], ids=["rows", "entries", "columns"])
def test_getitem_repeated_integer_indices_add_their_gradients(index):
    """An entry picked n times receives the sum of the n cotangents: np.add.at, not
    assignment (which would keep only the last)."""
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((4, 3))
    (x,) = _leaves([x0])
    out = x[index]
    np.testing.assert_array_equal(out.value, x0[index])
    g = rng.standard_normal(out.shape)
    mg.sum(out * g).backward()
    expected = np.zeros_like(x0)
    np.add.at(expected, index, g)
    np.testing.assert_allclose(x.grad, expected, rtol=1e-15)


def test_getitem_repeated_index_by_hand():
    """x[[1, 1, 1, 3]].sum(): entry 1 is used three times, entry 3 once."""
    x = mg.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    mg.sum(x[np.array([1, 1, 1, 3])]).backward()
    np.testing.assert_array_equal(x.grad, [0.0, 3.0, 0.0, 1.0])


@pytest.mark.parametrize("mask", [
    np.array([[True, False, True], [False, False, False], [True, True, False],
              [False, True, True]]),
    np.array([False, True, False, True]),
    np.zeros((4, 3), dtype=bool),
], ids=["entries", "rows", "none"])
def test_getitem_boolean_mask_routes_gradient_to_selected_entries(mask):
    """x[mask] selects like NumPy; the gradient lands on the selected entries, 0 elsewhere."""
    rng = np.random.default_rng(1)
    x0 = rng.standard_normal((4, 3))
    (x,) = _leaves([x0])
    out = x[mask]
    np.testing.assert_array_equal(out.value, x0[mask])
    g = rng.standard_normal(out.shape)
    mg.sum(out * g).backward()
    expected = np.zeros_like(x0)
    expected[mask] = g
    np.testing.assert_array_equal(x.grad, expected)


def test_integer_powers_have_finite_derivatives_at_a_zero_base():
    """x^0, x^1, x^2 are polynomials: every derivative exists at x = 0. d/dx x^0 = 0,
    d^2/dx^2 x^1 = 0, d^3/dx^3 x^2 = 0; the rule y x^(y-1) must not turn 0 * 0^-1 into NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        x = mg.tensor(0.0, requires_grad=True)
        (d_constant,) = mg.grad(x ** 0.0, [x])
        assert d_constant.item() == 0.0
        (d_linear,) = mg.grad(x ** 1.0, [x], create_graph=True)
        assert d_linear.item() == 1.0
        assert mg.grad(d_linear, [x])[0].item() == 0.0
        (d_square,) = mg.grad(x ** 2.0, [x], create_graph=True)
        (dd_square,) = mg.grad(d_square, [x], create_graph=True)
        assert dd_square.item() == 2.0
        assert mg.grad(dd_square, [x])[0].item() == 0.0
        _, tangent = mg.jvp(lambda x: x ** 0.0, (np.array(0.0),), (np.array(1.0),))
        assert tangent.item() == 0.0


def _batch_index(b, shape):
    """The entry of a batch of shape ``shape`` that broadcasting reads at batch index ``b``."""
    lead = len(b) - len(shape)
    return tuple(0 if n == 1 else i for i, n in zip(b[lead:], shape))


def _matmul_by_definition(x, y, g):
    """``x @ y`` and the gradients of sum(g * (x @ y)), one product at a time from
    out[b, i, k] = sum_j x[b, i, j] y[b, j, k] (a 1-D x is a row, a 1-D y a column, and a
    batch axis of length 1 is read at index 0)."""
    xm = x[None, :] if x.ndim == 1 else x
    ym = y[:, None] if y.ndim == 1 else y
    batch = np.broadcast_shapes(xm.shape[:-2], ym.shape[:-2])
    (m, n), p = xm.shape[-2:], ym.shape[-1]
    gm = np.reshape(g, batch + (m, p))
    out, dx, dy = np.zeros(batch + (m, p)), np.zeros(xm.shape), np.zeros(ym.shape)
    for b in np.ndindex(*batch):
        bx, by = _batch_index(b, xm.shape[:-2]), _batch_index(b, ym.shape[:-2])
        for i, j, k in np.ndindex(m, n, p):
            out[b + (i, k)] += xm[bx + (i, j)] * ym[by + (j, k)]
            dx[bx + (i, j)] += gm[b + (i, k)] * ym[by + (j, k)]
            dy[by + (j, k)] += gm[b + (i, k)] * xm[bx + (i, j)]
    return out, dx.reshape(x.shape), dy.reshape(y.shape)


@pytest.mark.parametrize("x_shape, y_shape", [
    ((3,), (3,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
    ((2, 1, 2, 3), (4, 3, 5)), ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((1, 2, 3), (4, 1, 3, 2)),
])
def test_matmul_follows_numpy_rules_with_explicit_gradients(x_shape, y_shape):
    """Values and shapes as np.matmul for 1-D and 2-D operands and broadcast batch axes;
    gradients as the explicit sums (a broadcast batch axis sums its copies)."""
    rng = np.random.default_rng(2)
    x0, y0 = rng.standard_normal(x_shape), rng.standard_normal(y_shape)
    x, y = _leaves([x0, y0])
    out = mg.matmul(x, y)
    expected = np.matmul(x0, y0)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.value, expected, rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(expected.shape)
    mg.sum(out * g).backward()
    by_definition, dx, dy = _matmul_by_definition(x0, y0, g)
    np.testing.assert_allclose(by_definition.reshape(expected.shape), expected, rtol=1e-12)
    np.testing.assert_allclose(x.grad, dx, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(y.grad, dy, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("x_shape, W_shape, c_shape, fused", [
    ((2, 3), (3, 4), (4,), True),          # a layer's bias
    ((2, 3), (3, 4), (2, 4), True),        # a recurrent product plus the input's term
    ((2, 3), (3, 4), (1, 4), True),        # any c that broadcasts to the product
    ((2, 3), (3, 4), (), True),            # a scalar c (an array)
    ((2, 3), (3, 4), (5, 2, 4), False),    # a c that enlarges the result: matmul and add
    ((5, 2, 3), (3, 4), (4,), False),      # a batch of sequences
    ((3,), (3, 4), (4,), False),           # a vector
])
def test_affine_is_one_node_for_its_own_case_and_matmul_and_add_otherwise(
        x_shape, W_shape, c_shape, fused):
    """Where the fused primitive declines, the composite it stands for gives the same value
    and gradients; the graph shows which of the two was recorded."""
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal(s) for s in (x_shape, W_shape, c_shape)]
    x, W, c = _leaves(arrays)
    out = mg.affine(x, W, c)
    names = {n.primitive.name for n in mg.graph.backward_order([out.node]) if n.primitive}
    assert names == {"affine"} if fused else ("affine" not in names and {"matmul", "add"} <= names)
    np.testing.assert_allclose(out.value, np.matmul(arrays[0], arrays[1]) + arrays[2], rtol=1e-13)
    g = rng.standard_normal(out.shape)
    mg.sum(out * g).backward()
    x2, W2, c2 = _leaves(arrays)
    mg.sum((mg.matmul(x2, W2) + c2) * g).backward()
    for fused_grad, composite_grad in ((x.grad, x2.grad), (W.grad, W2.grad), (c.grad, c2.grad)):
        np.testing.assert_allclose(fused_grad, composite_grad, rtol=1e-12, atol=1e-14)
    # raw arrays and a list: the same value, no graph
    np.testing.assert_allclose(mg.affine(arrays[0].tolist(), arrays[1], arrays[2]),
                               np.matmul(arrays[0], arrays[1]) + arrays[2], rtol=1e-13)


def test_a_fused_primitive_that_declines_hands_its_arguments_to_the_composite():
    """defprimitive(..., otherwise=f): the forward takes only positive inputs here; for the
    rest, f computes the value from other primitives, and its gradient is theirs."""
    def forward(x):
        if np.any(x <= 0):
            raise mg.ops.Declined
        return np.log(x)
    log_positive = mg.defprimitive(forward, vjp=lambda g, out, x: g / x,
                                   jvp=lambda x_dot, out, x: x_dot / x, name="log_positive",
                                   saves="v", saves_out=False,
                                   otherwise=lambda x: mg.log(mg.abs(x)))
    x = mg.tensor([2.0, 4.0], requires_grad=True)
    assert log_positive(x).node.primitive.name == "log_positive"
    y = mg.tensor([-2.0, 4.0], requires_grad=True)
    out = log_positive(y)
    assert out.node.primitive.name == "log"
    out.sum().backward()
    np.testing.assert_allclose(y.grad, [-0.5, 0.25])


# -- part 2: numerically delicate functions ------------------------------------------------------

def test_logsumexp_is_exact_for_large_inputs():
    """Inputs of +-1000 (where exp overflows or underflows): closed forms, softmax gradient."""
    x = mg.tensor([[1000.0, 1000.0, 1000.0], [1000.0, 0.0, -1000.0],
                   [-1000.0, -1000.0, -1000.0]], requires_grad=True)
    with np.errstate(over="raise", invalid="raise"):
        out = mg.logsumexp(x, axis=1)
        mg.sum(out).backward()
    np.testing.assert_allclose(out.value, [1000 + math.log(3), 1000.0, -1000 + math.log(3)],
                               rtol=1e-15)
    # exp(x - out) with out ~ 1001 rounded to its ulp (1e-13): relative error ~ 1e-13
    np.testing.assert_allclose(x.grad, [[1 / 3] * 3, [1.0, 0.0, 0.0], [1 / 3] * 3], rtol=1e-12)


def test_logsumexp_of_an_all_minus_infinity_row_is_minus_infinity():
    """log(sum(exp(-inf))) = log(0) = -inf, without NaN, next to an ordinary row."""
    x = mg.tensor([[-np.inf, -np.inf], [0.0, 0.0]])
    with np.errstate(invalid="raise"):
        np.testing.assert_array_equal(mg.logsumexp(x, axis=1).value, [-np.inf, math.log(2)])
        np.testing.assert_array_equal(mg.logsumexp(x, axis=1, keepdims=True).value,
                                      [[-np.inf], [math.log(2)]])
        assert mg.logsumexp(x[0]).item() == -np.inf


def _stable_sigmoid(x):
    """1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) for x < 0: exp never overflows."""
    out = np.empty_like(x)
    positive = x >= 0
    out[positive] = 1 / (1 + np.exp(-x[positive]))
    e = np.exp(x[~positive])
    out[~positive] = e / (1 + e)
    return out


def test_sigmoid_is_accurate_in_both_tails():
    """Full relative precision far into both tails of the value (sigmoid(-700) ~ 1e-304,
    1 - sigmoid(40) below an ulp of 1), and no overflow at +-1000. The gradient
    s (1 - s) keeps relative precision in the left tail; in the right tail 1 - s rounds to 0
    once e^-x < 1e-16, so there it is checked to absolute precision."""
    x0 = np.array([-700.0, -100.0, -40.0, -10.0, -1e-3, 0.0, 1e-3, 10.0, 40.0, 100.0, 700.0])
    (x,) = _leaves([x0])
    with np.errstate(over="raise"):
        out = mg.sigmoid(x)
        mg.sum(out).backward()
        s = _stable_sigmoid(x0)
        np.testing.assert_allclose(out.value, s, rtol=1e-12)
        slope = s * _stable_sigmoid(-x0)
        left = x0 <= 0
        np.testing.assert_allclose(x.grad[left], slope[left], rtol=1e-12)
        np.testing.assert_allclose(x.grad[~left], slope[~left], rtol=1e-12, atol=1e-16)
        np.testing.assert_array_equal(mg.sigmoid(mg.tensor([-1000.0, 1000.0])).value, [0.0, 1.0])


@given(x=float_arrays(small_shapes(min_dims=1), low=-1000.0, high=1000.0), data=st.data())
def test_softmax_is_a_distribution_along_its_axis(x, data):
    """For logits up to +-1000 (where a naive exp overflows), softmax entries lie in [0, 1]
    and sum to 1 along the axis; log_softmax is <= 0 and its exp sums to 1 too."""
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1), label="axis")
    with np.errstate(over="raise", invalid="raise"):
        p = F.softmax(mg.tensor(x), axis).value
        log_p = F.log_softmax(mg.tensor(x), axis).value
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p.sum(axis=axis), 1.0, rtol=1e-12)
    assert np.all(log_p <= 0)
    np.testing.assert_allclose(np.exp(log_p).sum(axis=axis), 1.0, rtol=1e-12)


def test_cross_entropy_is_minus_log_softmax_at_the_targets():
    """Rows whose softmax is known exactly: logits log([1, 2, 7]) give [0.1, 0.2, 0.7]; equal
    logits give 1/3 each. The loss is -log p[target]; "mean" divides by the rows."""
    logits = np.log(np.array([[1.0, 2.0, 7.0], [1.0, 1.0, 1.0], [1.0, 2.0, 7.0]]))
    targets = np.array([2, 0, 1])
    expected = -np.log([0.7, 1 / 3, 0.2])
    none = F.cross_entropy(mg.tensor(logits), targets, reduction="none").value
    np.testing.assert_allclose(none, expected, rtol=1e-14)
    np.testing.assert_allclose(F.cross_entropy(mg.tensor(logits), targets, "sum").item(),
                               expected.sum(), rtol=1e-14)
    np.testing.assert_allclose(F.cross_entropy(mg.tensor(logits), targets).item(),
                               expected.mean(), rtol=1e-14)
    # the same targets as one-hot probabilities take the other path to the same losses
    one_hot = np.eye(3)[targets]
    np.testing.assert_allclose(F.cross_entropy(mg.tensor(logits), one_hot, "none").value,
                               expected, rtol=1e-14)


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    """d/dlogits of the mean loss = (softmax - one_hot) / rows, the classic closed form."""
    logits = np.log(np.array([[1.0, 2.0, 7.0], [1.0, 1.0, 1.0]]))
    targets = np.array([2, 0])
    (x,) = _leaves([logits])
    F.cross_entropy(x, targets).backward()
    p = np.array([[0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]])
    np.testing.assert_allclose(x.grad, (p - np.eye(3)[targets]) / 2, rtol=1e-13, atol=1e-16)


def test_cross_entropy_hessian_vector_product_is_the_closed_form():
    """The second derivative of -log softmax(x)[t] is the softmax's Jacobian diag(p) - p p^T,
    whatever the target: ``mg.hvp`` (the VJP recorded on the forward's kept softmax) gives
    (diag(p) - p p^T) v row by row."""
    rng = np.random.default_rng(0)
    x0, v = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    targets = rng.integers(0, 5, size=3)
    hv = mg.hvp(lambda x: F.cross_entropy(x, targets, reduction="sum"), (x0,), (v,))
    hv = hv[0] if isinstance(hv, tuple) else hv
    p = np.exp(x0) / np.exp(x0).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(hv.value, p * v - p * (p * v).sum(axis=1, keepdims=True),
                               rtol=1e-12, atol=1e-15)
