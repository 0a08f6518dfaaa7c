"""The engine: fan-out sums, accumulation, the backward walk's reach, memory, scopes,
recording of per-edge gradients, grad mode and anomaly detection."""
import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn.graph import backward_order
from microgradrnn.testing.strategies import expression_dags


def test_a_plus_a_is_two_edges_and_gives_two_per_unit():
    a = mg.tensor([1.0, -2.0, 3.0], requires_grad=True)
    b = a + a
    assert b.node.parents == (a.node, a.node)  # an ordered tuple: two edges, not one
    b.sum().backward()
    np.testing.assert_array_equal(a.grad, [2.0, 2.0, 2.0])


def test_diamond_gradient_matches_the_product_rule():
    # d = (2a) * (3a) = 6 a^2, so dd/da = 12 a: both paths through the diamond are summed.
    a = mg.tensor([0.5, -1.5], requires_grad=True)
    b, c = a * 2.0, a * 3.0
    (b * c).sum().backward()
    np.testing.assert_allclose(a.grad, 12 * a.value, rtol=1e-15)


@given(uses=st.integers(1, 6), seed=st.integers(0, 2**32 - 1))
def test_a_shared_leaf_receives_the_sum_over_its_uses(uses, seed):
    # Tied: one weight w used at every step. Untied: a separate copy w_k per step. The tied
    # gradient must equal the sum of the untied copies' gradients (the BPTT identity).
    rng = np.random.default_rng(seed)
    w0, x0 = rng.uniform(-1, 1, (2, 2)), rng.uniform(-1, 1, (3, 2))

    def unroll(weights):
        h = mg.tensor(x0)
        for w in weights:
            h = (h @ w).tanh()
        return h.sum()

    w = mg.Parameter(w0)
    unroll([w] * uses).backward()
    copies = [mg.Parameter(w0) for _ in range(uses)]
    unroll(copies).backward()
    np.testing.assert_allclose(w.grad, sum(c.grad for c in copies), rtol=1e-12, atol=1e-15)


def test_backward_twice_accumulates_exactly_twice_on_leaves():
    x = mg.tensor([0.3, -0.7], requires_grad=True)
    y = (x * x).tanh().sum()
    y.backward()
    once = x.grad.copy()
    y.backward()
    np.testing.assert_array_equal(x.grad, 2 * once)
    x.zero_grad()
    assert x.grad is None


def test_intermediates_get_grad_only_when_retained():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3.0
    k = (x * 2.0).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None
    np.testing.assert_allclose(k.grad, h.value)  # d(h.k)/dk = h


def test_leaf_grad_is_a_fresh_array_in_the_leaf_dtype():
    x = mg.tensor(np.ones(3), requires_grad=True)
    seed = np.array([1.0, 2.0, 3.0])
    (x + 0.0).backward(seed)
    x.grad[0] = 100.0  # the caller's cotangent must not change
    assert seed[0] == 1.0
    y = mg.tensor(np.ones(2), dtype=np.float32, requires_grad=True)
    (y * 2.0).sum().backward()
    assert y.grad.dtype == np.float32


def test_gradient_of_a_broadcast_input_is_summed_back_to_its_shape():
    b = mg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x = mg.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    (x * b).sum().backward()
    np.testing.assert_allclose(b.grad, x.value.sum(axis=0))
    np.testing.assert_allclose(x.grad, np.broadcast_to(b.value, (2, 3)))


def test_a_broadcast_input_costs_no_node_of_its_own_in_either_mode():
    """The engine, not a broadcast_to node, undoes broadcasting: the add of a bias records one
    node, which notes the bias's own shape; reverse mode sums the bias's cotangent back to it,
    forward mode stretches its tangent, and a second derivative goes through it too."""
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.normal(size=(4, 3)), requires_grad=True)
    b = mg.tensor(rng.normal(size=(3,)), requires_grad=True)
    c = mg.tensor(rng.normal(size=(4, 1)), requires_grad=True)
    y = x * b + c
    order = mg.graph.backward_order([y.node])
    assert [n.primitive.name for n in order if n.primitive] == ["add", "mul"]
    assert y.node.spread == (None, (4, 1)) and y.node.parents[0].spread == (None, (3,))
    g = rng.normal(size=(4, 3))
    y.backward(g)
    np.testing.assert_allclose(b.grad, (g * x.value).sum(axis=0))
    np.testing.assert_allclose(c.grad, g.sum(axis=1, keepdims=True))
    db, dc = rng.normal(size=3), rng.normal(size=(4, 1))
    _, tangent = mg.jvp(lambda b, c: x.detach() * b + c, (b.value, c.value), (db, dc))
    np.testing.assert_allclose(tangent.value, x.value * db + dc)
    # only the small input moves: the tangent still has the result's shape
    _, tangent = mg.jvp(lambda b: x.detach() + b, (b.value,), (db,))
    np.testing.assert_array_equal(tangent.value, np.broadcast_to(db, (4, 3)))
    # d/db of sum((x * b)^2) is 2 x^2 b summed over rows; its derivative in b is diag(2 sum x^2)
    (hb,) = mg.hvp(lambda b: ((x.detach() * b) ** 2).sum(), (b.value,), (np.ones(3),))
    np.testing.assert_allclose(hb.value, 2 * (x.value ** 2).sum(axis=0))
    # the same for a 0-d scale, stretched to every entry: d^2/ds^2 sum((x s)^2) = 2 sum x^2
    (hs,) = mg.hvp(lambda s: ((x.detach() * s) ** 2).sum(), (np.array(0.7),), (np.array(1.0),))
    assert hs.shape == () and np.isclose(hs.item(), 2 * (x.value ** 2).sum(), rtol=1e-12)


@given(dag=expression_dags())
def test_random_dags_with_broadcast_leaves_in_forward_mode_and_at_second_order(dag):
    """Random programs over leaves whose shapes broadcast, with shared leaves and shared
    results: the engine's tangent stretching (forward mode) and its recorded re-broadcast
    (create_graph, for second derivatives) against central differences."""
    assert mg.jvpcheck(dag.evaluate, dag.leaves)
    assert mg.gradgradcheck(dag.evaluate, dag.leaves)


def test_no_reference_cycles_an_intermediate_dies_with_its_output():
    gc.disable()
    try:
        x = mg.tensor(np.ones(4), requires_grad=True)
        hidden = (x * 2.0).tanh()
        probe = weakref.ref(hidden.node)
        out = (hidden * hidden).sum()
        del hidden
        assert probe() is not None  # kept alive by the output's graph
        out.backward()
        del out
        assert probe() is None  # freed by reference counting alone: no cycle
    finally:
        gc.enable()


@pytest.mark.parametrize("make", [
    lambda x, W, b: mg.tanh(x),                        # one input
    lambda x, W, b: x * x,                             # two
    lambda x, W, b: mg.affine(x, W, b),                # three, a stretched bias
    lambda x, W, b: mg.affine(np.ones((2, 3)), W, b),  # a constant input
    lambda x, W, b: mg.stack([x, x]),                  # any number
])
def test_a_recorded_node_has_every_field_a_leaf_has(make):
    """apply fills an op's node field by field rather than through Node.__init__ (a call per
    op saved): every field that __init__ sets must be set there too, and hold the values
    __init__ would give."""
    x = mg.tensor(np.ones((2, 3)), requires_grad=True)
    W, b = mg.tensor(np.ones((3, 3)), requires_grad=True), mg.tensor(np.ones(3), requires_grad=True)
    out = make(x, W, b)
    fields = [f for f in mg.graph.Node.__slots__ if not f.startswith("__")]
    for field in fields:
        getattr(out.node, field)  # AttributeError: a slot apply forgot to fill
        getattr(x.node, field)
    node = out.node
    assert node.shape == out.shape and node.dtype == out.dtype and node.retains_grad is False
    assert node.serial > x.node.serial and node.primitive is not None
    assert len(node.parents) <= len(node.saved)


def _same_node(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a.primitive is b.primitive
    # the same inputs (a composite's inner nodes are made anew by each call: alike, not one)
    assert [p if p is None or p.is_leaf else (p.primitive, p.shape) for p in a.parents] == \
        [p if p is None or p.is_leaf else (p.primitive, p.shape) for p in b.parents]
    assert a.shape == b.shape and a.dtype == b.dtype and a.tags == b.tags
    assert (a.out is None) == (b.out is None) and a.retains_grad == b.retains_grad
    assert len(a.saved) == len(b.saved)
    for kept_a, kept_b in zip(a.saved, b.saved):
        assert type(kept_a) is type(kept_b)
        if isinstance(kept_a, np.ndarray):
            np.testing.assert_array_equal(kept_a, kept_b)
            assert kept_a.flags.writeable == kept_b.flags.writeable
        else:
            assert kept_a == kept_b


@pytest.mark.parametrize("mode", ["plain", "no_grad", "anomaly", "scope"])
@pytest.mark.parametrize("call", [
    lambda x, W, b, h: (mg.ops.tanh, (x,)),                       # one input, output kept
    lambda x, W, b, h: (mg.ops.log, (x * x + 1.0,)),               # one input, value kept
    lambda x, W, b, h: (mg.ops.elementwise.exp, (h,)),             # a Tensor with no grad
    lambda x, W, b, h: (mg.ops.elementwise.exp, (np.ones(3),)),    # a raw array: NumPy's
    lambda x, W, b, h: (mg.ops.reduce._lse, (x, (1,), False)),     # static parameters after it
    lambda x, W, b, h: (mg.affine, (x, W, b)),                     # affine: a bias stretched
    lambda x, W, b, h: (mg.affine, (np.ones((2, 3)), W, b)),       # a writable constant input
    lambda x, W, b, h: (mg.affine, (h, W, b)),                     # a constant Tensor
    lambda x, W, b, h: (mg.affine, (x, W, np.ones(3))),            # a raw bias: apply's loop
    lambda x, W, b, h: (mg.affine, (x[None], W, b)),               # declined: matmul and add
    lambda x, W, b, h: (mg.ops.elementwise.mul, (x, b)),           # two inputs, one stretched
    lambda x, W, b, h: (mg.ops.elementwise.mul, (x, x)),           # the same input twice
    lambda x, W, b, h: (mg.ops.elementwise.mul, (2.0, x)),         # a number
    lambda x, W, b, h: (mg.ops.elementwise.mul, (np.ones((2, 3)), x)),  # a writable constant
    lambda x, W, b, h: (mg.ops.elementwise.add, (x, b)),           # nothing kept
    lambda x, W, b, h: (mg.ops.elementwise.add, (h, h)),           # no grad on either side
    lambda x, W, b, h: (mg.ops.elementwise.sub, (np.ones(3), np.ones(3))),  # raw: NumPy's
    lambda x, W, b, h: (mg.ops.linalg._matmul, (x, W)),            # matmul's two matrices
])
def test_a_spelled_out_call_records_what_apply_records(call, mode):
    """The classes that spell out a common plan (one input; affine's three) must make the
    same result and node as the general apply, in every mode and for every kind of input."""
    from contextlib import nullcontext
    from microgradrnn.ops import _core
    rng = np.random.default_rng(0)
    x = mg.tensor(rng.normal(size=(2, 3)), requires_grad=True)
    W = mg.tensor(rng.normal(size=(3, 3)), requires_grad=True)
    b = mg.tensor(rng.normal(size=3), requires_grad=True)
    h = mg.tensor(rng.normal(size=(2, 3)))
    primitive, args = call(x, W, b, h)
    assert type(primitive) in (_core._OneInput, _core._TwoInputs, _core._Affine)
    context = {"plain": nullcontext(), "no_grad": mg.no_grad(), "anomaly": mg.detect_anomaly(),
               "scope": mg.scope(t=3)}[mode]
    with context:
        spelled_out = primitive(*args)
        general = _core.apply(primitive, *args)
    assert type(spelled_out) is type(general)
    np.testing.assert_array_equal(mg.ops.value_of(spelled_out), mg.ops.value_of(general))
    if isinstance(general, mg.Tensor):
        _same_node(spelled_out.node, general.node)


def test_primitives_get_the_call_of_their_plan():
    from microgradrnn.ops import _core
    assert type(mg.ops.tanh) is _core._OneInput and type(mg.affine) is _core._Affine
    assert type(mg.ops.elementwise.mul) is _core._TwoInputs
    assert type(mg.ops.elementwise.div) is _core.Primitive  # keeps y's value, not x's
    assert type(mg.ops.broadcasting.broadcast_to) is _core.Primitive  # keeps a shape
    shape_kept = mg.defprimitive(np.sum, name="total", saves="s",
                                 vjp=lambda g, out, x: g, jvp=lambda t, out, x: t)
    assert type(shape_kept) is _core.Primitive  # no fixed plan: apply decides per call


def test_the_graph_keeps_only_the_values_its_rules_read():
    # add's rules read nothing, so the sum's array lives only as long as its Tensor; tanh's
    # rule reads its output, so that array lives as long as the graph.
    x = mg.tensor(np.ones(4), requires_grad=True)
    total = x + 1.0
    activation = total.tanh()
    loss = (activation * 3.0).sum()
    total_array, activation_array = weakref.ref(total.value), weakref.ref(activation.value)
    del total, activation
    assert total_array() is None
    assert activation_array() is not None
    loss.backward()
    np.testing.assert_allclose(x.grad, 3 * (1 - np.tanh(2.0) ** 2))


def _cube_keeping_its_slope(calls):
    """x^3 as a primitive whose forward also returns 3 x^2 (its by-product), which the VJP
    reuses on raw arrays and recomputes on Tensors; ``calls`` counts the reuses."""
    def forward(x):
        return x ** 3, 3.0 * x * x

    def vjp(g, out, x, slope):
        if type(x) is np.ndarray:
            calls.append(slope)
            return g * slope
        return g * (3.0 * x * x)  # recorded: its derivative 6x is then there too

    return mg.defprimitive(forward, name="cube", saves="v", saves_out=False, byproduct=True,
                           vjp=vjp, jvp=lambda x_dot, out, x, slope: x_dot * slope)


def test_a_byproduct_is_kept_for_the_rules_and_never_seen_outside_them():
    calls = []
    cube = _cube_keeping_its_slope(calls)
    a = np.array([0.5, -2.0])
    bare = cube(a)  # raw in, raw out: the result alone, not (result, by-product)
    assert type(bare) is np.ndarray
    np.testing.assert_array_equal(bare, a ** 3)
    x = mg.tensor(a, requires_grad=True)
    y = cube(x)
    np.testing.assert_array_equal(y.value, a ** 3)
    np.testing.assert_array_equal(y.node.saved[-1], 3 * a * a)  # kept last, after the inputs
    with mg.no_grad():
        assert cube(x).node is None
    y.sum().backward()
    y.sum().backward()  # the by-product is read, not consumed: the same again
    np.testing.assert_array_equal(x.grad, 2 * (3 * a * a))
    assert len(calls) == 2
    (slope,) = mg.grad(cube(x).sum(), [x], create_graph=True)  # the rule on Tensors
    (curvature,) = mg.grad(slope.sum(), [x])
    np.testing.assert_allclose(curvature.value, 6 * a)
    _, tangent = mg.jvp(cube, (a,), (np.ones(2),))  # forward mode reads it too
    np.testing.assert_array_equal(tangent.value, 3 * a * a)


def test_cross_entropy_reuses_its_forward_softmax_and_leaves_it_unchanged():
    """The forward's exponentials are the by-product: the gradient from them equals the
    closed form, and a second backward over the same graph gives the same gradient (the
    rule does not write into them)."""
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 5))
    targets = rng.integers(0, 5, size=4)
    x = mg.tensor(logits, requires_grad=True)
    loss = mg.functional.cross_entropy(x, targets, reduction="sum")
    exponentials, sums = _softmax_node(loss).saved[-1]
    before = exponentials.copy(), sums.copy()
    loss.backward()
    once = x.grad.copy()
    loss.backward()
    np.testing.assert_array_equal(x.grad, 2 * once)
    np.testing.assert_array_equal(exponentials, before[0])
    np.testing.assert_array_equal(sums, before[1])
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(once, softmax - np.eye(5)[targets], rtol=1e-13, atol=1e-16)


def _softmax_node(loss):
    """The softmax_cross_entropy node under a reduced loss."""
    node = loss.node
    while node.primitive.name != "softmax_cross_entropy":
        node = node.parents[0]
    return node


def test_a_million_node_chain_backpropagates_without_recursion():
    x = mg.tensor(1.0, requires_grad=True)
    y = x
    factor = 1.0 + 1e-7
    for _ in range(1_000_000):
        y = y * factor
    y.backward()
    np.testing.assert_allclose(x.grad, factor ** 1_000_000, rtol=1e-9)


def test_grad_walks_only_branches_that_lead_to_the_inputs():
    calls = []

    def exploding_vjp(g, out, x):
        calls.append(1)
        raise AssertionError("this branch does not lead to the requested input")

    spy = mg.defprimitive(lambda x: x * 1.0, vjp=exploding_vjp,
                          jvp=lambda x_dot, out, x: x_dot, name="spy")
    a = mg.tensor(2.0, requires_grad=True)
    b = mg.tensor(3.0, requires_grad=True)
    out = a * b + spy(b)
    (ga,) = mg.grad(out, [a])
    assert ga.item() == 3.0 and not calls
    assert a.grad is None and b.grad is None  # grad() never writes .grad


def test_grad_with_respect_to_an_intermediate():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    h = x * x
    y = (h * 3.0).sum()
    (gh,) = mg.grad(y, [h])
    np.testing.assert_array_equal(gh.value, [3.0, 3.0])


def test_record_edge_grads_lists_each_consumer_once_and_sums_to_the_gradient():
    w = mg.Parameter(np.array([[0.5, -0.3], [0.2, 0.8]]), name="w")
    h = mg.tensor(np.ones((1, 2)))
    for t in range(4):
        with mg.scope(t=t):
            h = (h @ w).tanh()
    with mg.record_edge_grads(only=[w]) as record:
        h.sum().backward()
    edges = record.into(w)
    assert sorted(e.consumer.tags["t"] for e in edges) == [0, 1, 2, 3]
    assert all(e.consumer.primitive.name == "matmul" for e in edges)
    np.testing.assert_allclose(sum(e.grad for e in edges), w.grad, rtol=1e-14)


def test_recording_is_off_outside_the_context():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.record_edge_grads() as record:
        pass
    (x * 2.0).sum().backward()
    assert record.edges == []


def test_scopes_nest_and_the_inner_key_wins():
    x = mg.tensor([1.0], requires_grad=True)
    with mg.scope(module="rnn", t=0):
        a = x * 2.0
        with mg.scope(t=1, part="gate"):
            b = a + 1.0
        c = b * b
    d = c - 1.0
    assert dict(a.node.tags) == {"module": "rnn", "t": 0}
    assert dict(b.node.tags) == {"module": "rnn", "t": 1, "part": "gate"}
    assert dict(c.node.tags) == {"module": "rnn", "t": 0}
    assert d.node.tags is None


def test_time_steps_tags_each_step_as_entering_a_scope_there_would():
    x = mg.tensor([1.0], requires_grad=True)
    by_time_steps, by_scopes = [], []
    with mg.scope(part="outer", t=-1):
        with mg.autodiff.time_steps("rnn") as time:
            for t in range(3):
                time.at(t)
                by_time_steps.append(x * float(t))
        after = x * 1.0
        for t in range(3):
            with mg.scope(t=t, module="rnn"):
                by_scopes.append(x * float(t))
    assert [dict(y.node.tags) for y in by_time_steps] == [dict(y.node.tags) for y in by_scopes]
    assert dict(by_time_steps[2].node.tags) == {"part": "outer", "t": 2, "module": "rnn"}
    assert dict(after.node.tags) == {"part": "outer", "t": -1}  # the outer tags are back
    with mg.autodiff.time_steps("rnn") as time:
        time.at(5)
        y = x * 2.0
    assert dict(y.node.tags) == {"t": 5, "module": "rnn"} and (x * 2.0).node.tags is None


def test_a_leaf_given_a_value_of_a_new_shape_gets_a_new_node():
    """Graphs recorded before keep the node of the old shape (the engine compares an input's
    node shape with the result's to undo broadcasting); the same shape keeps the node, so
    gradients accumulate."""
    w = mg.Parameter(np.ones(3), name="w")
    y = (mg.tensor(np.ones((2, 3))) * w).sum()
    node = w.node
    w.value = np.full(3, 2.0)
    assert w.node is node
    w.value = np.ones((2, 3))
    assert w.node is not node and w.node.shape == (2, 3) and w.node.name == "w"
    y.backward()  # the old graph: its gradient has the old shape, on the old node
    np.testing.assert_array_equal(node.grad, np.full(3, 2.0))
    assert w.grad is None


def test_no_grad_builds_constants_and_enable_grad_turns_recording_back_on():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    with mg.no_grad():
        y = x * 2.0
        with mg.enable_grad():
            z = x * 2.0
    assert not y.requires_grad and y.node is None
    assert z.requires_grad
    with pytest.raises(RuntimeError, match="no_grad"):
        y.sum().backward()


def test_the_modes_nest_in_any_order_and_each_exit_restores_them():
    """Ops read one derived flag (grad mode on, no anomaly checks); every combination of the
    two contexts, nested either way, records, checks and restores as if each were read."""
    x = mg.tensor([1.0, 4.0], requires_grad=True)
    bad = mg.tensor([-1.0], requires_grad=True)
    for outer, inner in [(mg.no_grad, mg.detect_anomaly), (mg.detect_anomaly, mg.no_grad)]:
        with outer():
            with inner():
                assert (x * 2.0).node is None  # grad mode is off inside both
                with pytest.raises(mg.AnomalyError), np.errstate(invalid="ignore"):
                    bad.log()                  # and the forward is still checked
            recorded = (x * 2.0).node is not None
            assert recorded == (outer is mg.detect_anomaly)
            with mg.enable_grad():
                y = x.sqrt()
                assert y.node is not None and (y.node.origin is not None) == (
                    outer is mg.detect_anomaly)
    y = x * 2.0
    assert y.node is not None and y.node.origin is None  # back to the plain mode


def test_detach_cuts_the_graph():
    x = mg.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3.0).detach() * x
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 6.0])  # only the non-detached factor


def test_detect_anomaly_names_the_forward_op_shapes_tags_and_user_line():
    x = mg.tensor([1.0, -1.0], requires_grad=True)
    with mg.detect_anomaly(), mg.scope(t=7), np.errstate(invalid="ignore"):
        with pytest.raises(mg.AnomalyError) as info:
            x.log()
    message = str(info.value)
    assert "log" in message and "(2,)" in message and "'t': 7" in message
    assert "test_autodiff.py" in message


def test_detect_anomaly_in_backward_names_the_op_and_where_it_was_made():
    x = mg.tensor([0.0, 4.0], requires_grad=True)
    with mg.detect_anomaly(), np.errstate(divide="ignore"):
        y = x.sqrt().sum()  # finite forward, infinite derivative at 0
        with pytest.raises(mg.AnomalyError) as info:
            y.backward()
    message = str(info.value)
    assert "pow" in message and "test_autodiff.py" in message
    # Outside anomaly mode the same computation gives inf, as NumPy would.
    with np.errstate(divide="ignore"):
        x.sqrt().sum().backward()
    assert np.isinf(x.grad[0])


def test_backward_order_puts_every_consumer_first():
    x = mg.tensor([1.0], requires_grad=True)
    a = x * 2.0
    b = a + x
    c = b * a
    order = backward_order([c.node])
    position = {node: i for i, node in enumerate(order)}
    for node in order:
        for parent in node.parents:
            if parent is not None:
                assert position[node] < position[parent]
