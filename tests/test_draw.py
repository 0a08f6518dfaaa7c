"""Drawing recorded graphs (``mg.draw``): the DOT text is read back through the renderer's own
parser (``graphviz-pure -Tjson``, :class:`test_render.Layout`), and what it shows is checked
against the graph records (``forward_order``, ``node.parents``, scope tags) and against
independent references (the per-step BPTT contributions, checked against untied copies in
test_bptt). Labels and rendering to files: test_render."""
import functools
import operator
import re
import warnings
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, strategies as st

import microgradrnn as mg
from microgradrnn.bptt import contributions
from microgradrnn.graph import forward_order
from microgradrnn.nn import GRUCell, LSTMCell, Embedding, Linear, RNN, RNNCell, RNNModel
from microgradrnn.testing.strategies import expression_dags
from test_render import Layout, unescape

CELLS = {"rnn": RNNCell, "lstm": LSTMCell, "gru": GRUCell}
STATES = {"rnn": ["h"], "lstm": ["h", "c"], "gru": ["h"]}  # the parts of each cell's state


def _unrolled(kind, T, head=True, seed=0):
    """(model, loss): a cell unrolled T steps (in an RNNModel with a Linear head, or a plain
    RNN), the loss summing every step's output (so each weight is used at every step)."""
    cell = CELLS[kind](2, 2, seed=seed)
    model = RNNModel(cell, Linear(2, 1, seed=seed + 1)) if head else RNN(cell)
    outputs, _ = model(np.random.default_rng(seed).normal(size=(T, 1, 2)))
    return model, functools.reduce(operator.add, [o.sum() for o in outputs])


# -- structure: clusters, shared weights, one edge per use --------------------------------------

@given(st.sampled_from(sorted(CELLS)), st.integers(1, 6), st.booleans())
def test_one_cluster_per_step_and_each_weight_once_outside_them(kind, T, head):
    """T clusters cluster_t0.. labelled t = 0..T-1, each holding exactly the ops tagged with
    its step (and the constants only they read); each parameter drawn once, outside every
    cluster, with one edge per use counted from node.parents (one use per step)."""
    model, loss = _unrolled(kind, T, head)
    order = forward_order([loss.node])
    ids = {node: f"n{k}" for k, node in enumerate(order)}  # the documented ids: forward order
    lay = Layout(mg.draw(loss))
    assert lay.time_clusters() == {f"cluster_t{t}": t for t in range(T)}
    for node in order:
        t = node.tags.get("t") if node.tags else None
        expected = f"cluster_t{t}" if t is not None and node.primitive is not None else None
        assert lay.home(ids[node]) == expected
    for cluster, t in lay.time_clusters().items():
        for member in lay.members[cluster]:
            if member.startswith("c"):  # a constant: drawn in the step that reads it
                assert {lay.home(head) for _, head, _ in lay.out_edges(member)} == {cluster}
            else:
                assert order[int(member[1:])].tags["t"] == t
    for p in model.parameters():
        consumers = [node for node in order for parent in node.parents if parent is p.node]
        assert sorted(node.tags["t"] for node in consumers) == list(range(T))
        name = lay.named(p.name)
        assert name == ids[p.node] and lay.home(name) is None
        assert (Counter(head for _, head, _ in lay.out_edges(name))
                == Counter(ids[node] for node in consumers))
        if T > 1:  # a weight used by several steps does not pull them around the layout
            assert all(attrs["constraint"] == "false" for *_, attrs in lay.out_edges(name))


def test_a_plus_a_is_two_edges_between_the_same_pair():
    """``a + a``: the add reads a twice, so two edges run from a to it."""
    a = mg.Parameter(np.array([1.0, 2.0]), name="a")
    lay = Layout(mg.draw(a + a, legend=False))
    assert Counter((tail, head) for tail, head, _ in lay.edges) == {("n0", "n1"): 2}
    assert (lay.first_line("n0"), lay.first_line("n1")) == ("a", "add")


@pytest.mark.parametrize("expression, uses", [
    (lambda a, b: a * b + a, {"a": 2, "b": 1}),
    (lambda a, b: (a * a) * a, {"a": 3}),
    (lambda a, b: a - b * b + b, {"a": 1, "b": 3}),
])
def test_one_edge_per_use(expression, uses):
    """A leaf has as many outgoing edges as the expression uses it; a leaf the output does
    not use is not drawn."""
    a = mg.Parameter(np.array([1.0, 2.0]), name="a")
    b = mg.Parameter(np.array([3.0, 4.0]), name="b")
    lay = Layout(mg.draw(expression(a, b), legend=False))
    for leaf in ("a", "b"):
        drawn = [n for n in lay.nodes if lay.first_line(n) == leaf]
        assert len(drawn) == (leaf in uses)
        if drawn:
            assert len(lay.out_edges(drawn[0])) == uses[leaf]


def test_the_legend_lists_the_kinds_drawn_and_the_layout_options_pass_through():
    """The legend holds one entry per kind of node drawn (and the gradient scale when edges
    carry gradients); legend=False leaves it out; rankdir reaches the graph."""
    a = mg.Parameter(np.array([1.0, 2.0]), name="a")
    out = (a * 2.0).sum()
    with mg.record_edge_grads() as rec:
        out.backward()
    lay = Layout(mg.draw(out, edge_grads=rec, rankdir="TB"))
    assert lay.members["cluster_legend"] == {"legend_parameter", "legend_constant", "legend_op",
                                             "legend_output", "legend_gradient"}
    bare = Layout(mg.draw(out, legend=False))
    assert "cluster_legend" not in bare.clusters and not any(n.startswith("legend") for n in
                                                             bare.nodes)
    assert lay.rankdir == "TB" and bare.rankdir == "LR"


@given(expression_dags())
def test_drawn_edges_are_the_recorded_parents(dag):
    """Random DAGs with fan-out: the drawn edges between graph nodes are, with multiplicity,
    the recorded (parent, node) pairs; each leaf's out-degree is its number of uses in the
    program (plus one when it is a sink, summed into the output)."""
    out, leaves = dag.evaluate_tied()
    order = forward_order([out.node])
    ids = {node: f"n{k}" for k, node in enumerate(order)}
    expected = Counter((ids[p], ids[node]) for node in order for p in node.parents
                       if p is not None)
    lay = Layout(mg.draw(out, constants=False, legend=False))
    assert Counter((tail, head) for tail, head, _ in lay.edges) == expected
    uses, sinks = dag.use_counts(), dag.sinks()
    for i, leaf in enumerate(leaves):
        assert len(lay.out_edges(ids[leaf.node])) == uses[i] + (i in sinks)


def test_the_same_graph_draws_the_same_dot():
    """Drawn twice (with any options), or rebuilt from scratch (new nodes at new addresses):
    the same DOT text, ids and line order included."""
    model, loss = _unrolled("lstm", 3)
    with mg.record_edge_grads() as rec:
        loss.backward()
    for options in ({}, {"edge_grads": rec, "values": True, "grads": True},
                    {"collapse": "step", "edge_grads": rec}, {"constants": False}):
        assert mg.draw(loss, **options).source == mg.draw(loss, **options).source
    _, again = _unrolled("lstm", 3)
    assert mg.draw(again).source == mg.draw(loss).source
    assert mg.draw(model).source == mg.draw(model).source


# -- gradients along the edges ------------------------------------------------------------------

@given(st.sampled_from(sorted(CELLS)), st.integers(2, 5), st.booleans(),
       st.integers(0, 2**16))
def test_edge_gradients_are_the_per_step_contributions(kind, T, collapse, seed):
    """Loss at the last step only: the headlabel of each edge out of a cell weight is the norm
    of that step's contribution (bptt.contributions), unrolled or collapsed by step; widths
    grow with the norm; W_hh's zero contribution at step 0 (h_0 = 0) is a dotted edge."""
    rng = np.random.default_rng(seed)
    cell = CELLS[kind](2, 3, seed=seed % 997)
    hs, _ = RNN(cell)(rng.normal(size=(T, 2, 2)))
    loss = (rng.normal(size=(2, 3)) * hs[-1]).sum()
    norms = {p.name: np.linalg.norm(contributions(loss, p).steps.reshape(T, -1), axis=1)
             for p in cell.parameters()}
    assert norms[cell.W_hh.name][0] == 0
    with mg.record_edge_grads() as rec:
        loss.backward()
    lay = Layout(mg.draw(loss, edge_grads=rec, collapse="step" if collapse else None))
    widths = []
    for p in cell.parameters():
        edges = lay.out_edges(lay.named(p.name))
        assert sorted(lay.step_of(head) for _, head, _ in edges) == list(range(T))
        for _, head, attrs in edges:
            norm = norms[p.name][lay.step_of(head)]
            assert float(attrs["headlabel"]) == pytest.approx(norm, rel=6e-3)
            assert (attrs.get("style") == "dotted") == (norm == 0)
            if norm > 0:
                widths.append((norm, float(attrs["penwidth"])))
    widths.sort()
    assert [w for _, w in widths] == sorted(w for _, w in widths)


def test_headlabels_only_on_edges_out_of_a_shared_leaf_and_zero_is_dotted():
    """a is used twice (headlabels 0 and 3: what each use sent), c once (no headlabel, but
    coloured by its gradient); the edge that carried a zero gradient is dotted."""
    a = mg.Parameter(np.array([1.0]), name="a")
    c = mg.Parameter(np.array([2.0]), name="c")
    out = (a * 0.0).sum() + (a * 3.0).sum() + (c * 1.0).sum()
    with mg.record_edge_grads() as rec:
        out.backward()
    lay = Layout(mg.draw(out, edge_grads=rec, legend=False))
    sent = sorted((attrs["headlabel"], attrs.get("style")) for *_, attrs in
                  lay.out_edges(lay.named("a")))
    assert sent == [("0", "dotted"), ("3", None)]
    (c_edge,) = lay.out_edges(lay.named("c"))
    assert "headlabel" not in c_edge[2] and "penwidth" in c_edge[2]


def test_each_of_two_edges_between_the_same_pair_gets_its_own_gradient():
    """A @ A: the two edges from A into the matmul are labelled with what each slot was sent
    (G A^T and A^T G for the output's gradient G, computed by hand)."""
    A = mg.Parameter(np.array([[1.0, 2.0], [3.0, 5.0]]), name="A")
    G = np.array([[1.0, -2.0], [0.5, 4.0]])
    out = ((A @ A) * G).sum()
    with mg.record_edge_grads() as rec:
        out.backward()
    lay = Layout(mg.draw(out, edge_grads=rec, legend=False))
    labels = sorted(float(attrs["headlabel"]) for *_, attrs in lay.out_edges(lay.named("A")))
    expected = sorted(np.linalg.norm(g) for g in (G @ A.value.T, A.value.T @ G))
    assert labels == pytest.approx(expected, rel=6e-3)


def test_a_zero_gradient_edge_is_no_wider_than_a_nonzero_one():
    """Width is non-decreasing in the norm, zero included: the dotted zero edge is not drawn
    wider than the thinnest edge that carried a gradient."""
    a = mg.Parameter(np.array([1.0]), name="a")
    out = (a * 0.0).sum() + (a * 3.0).sum()
    with mg.record_edge_grads() as rec:
        out.backward()
    lay = Layout(mg.draw(out, edge_grads=rec, legend=False))
    (zero,) = [float(attrs["penwidth"]) for *_, attrs in lay.edges
               if attrs.get("style") == "dotted"]
    assert zero <= min(float(attrs["penwidth"]) for *_, attrs in lay.edges
                       if "penwidth" in attrs and attrs.get("style") != "dotted")


# -- the rolled view ------------------------------------------------------------------------------

def _rolled_model(kind, wrap):
    cell = CELLS[kind](2, 3, seed=0)
    return {"cell": lambda: cell, "rnn": lambda: RNN(cell),
            "model": lambda: RNNModel(cell, Linear(3, 2, seed=1)),
            "embedded": lambda: RNNModel(cell, Linear(3, 2, seed=1), Embedding(5, 2, seed=2)),
            }[wrap]()


def _reaches(lay, start, goal):
    """Whether a path of solid (non-dashed) edges leads from ``start`` to ``goal``."""
    seen, stack = {start}, [start]
    while stack:
        for tail, head, attrs in lay.edges:
            if tail == stack[-1] and attrs.get("style") != "dashed" and head not in seen:
                seen.add(head)
                stack.append(head)
                break
        else:
            stack.pop()
    return goal in seen


@pytest.mark.parametrize("wrap", ["cell", "rnn", "model", "embedded"])
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_rolled_view_feeds_the_new_state_back(kind, wrap):
    """mg.draw(cell / RNN / RNNModel): no time clusters; h_(t-1) (and c_(t-1) for an LSTM)
    leaves, each with one dashed edge (constraint=false) from the new state computed from it;
    each weight once with a single use; the head's output is y_t."""
    model = _rolled_model(kind, wrap)
    lay = Layout(mg.draw(model))
    assert not lay.time_clusters()
    dashed = [e for e in lay.edges if e[2].get("style") == "dashed"]
    assert len(dashed) == len(STATES[kind])
    for s in STATES[kind]:
        old = lay.named(f"{s}_(t-1)")
        (new, _, attrs), = [e for e in dashed if e[1] == old]
        assert attrs["constraint"] == "false"
        assert lay.first_line(new).endswith(f"→ {s}_t")
        assert _reaches(lay, old, new)
    for p in model.parameters():
        assert len(lay.out_edges(lay.named(p.name))) == 1
    ys = [n for n in lay.nodes if lay.first_line(n).endswith("→ y_t")]
    assert len(ys) == (wrap in ("model", "embedded"))
    assert sum(lay.first_line(n) == "x_t" for n in lay.nodes) == (wrap != "embedded")


def test_rolled_view_does_not_depend_on_the_grad_mode():
    """Drawn inside no_grad, the rolled view is the same picture."""
    cell = LSTMCell(2, 3, seed=0)
    with mg.no_grad():
        inside = mg.draw(cell).source
    assert inside == mg.draw(cell).source


def test_rolled_view_does_not_depend_on_the_callers_scope():
    """Drawn inside a scope(t=...) block, the rolled view has no time cluster either."""
    cell = RNNCell(2, 3, seed=0)
    with mg.scope(t=4):
        inside = mg.draw(cell).source
    assert inside == mg.draw(cell).source


# -- truncated BPTT: the cut; drawing changes nothing ------------------------------------------

def _two_chunks(kind, detach):
    """An RNN run 3 steps, then 3 more (t0=3) from its state, detached or not."""
    rnn = RNN(CELLS[kind](2, 3, seed=0))
    xs = np.random.default_rng(0).normal(size=(6, 1, 2))
    _, state = rnn(xs[:3])
    if detach:
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
    hs, _ = rnn(xs[3:], h0=state, t0=3)
    return hs[-1].sum()


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_detached_state_is_drawn_as_a_cut(kind):
    """After detach(): one "detached state" node per part of the state (h; h and c), in the
    first step of the chunk (t = 3), with red dashed "cut (detach)" edges into that step's
    ops; only the clusters t = 3, 4, 5. Also without constants and collapsed."""
    loss = _two_chunks(kind, detach=True)
    lay = Layout(mg.draw(loss))
    assert sorted(lay.time_clusters().values()) == [3, 4, 5]
    cuts = [n for n in lay.nodes if lay.first_line(n) == "detached state"]
    assert len(cuts) == len(STATES[kind])
    for cut in cuts:
        edges = lay.out_edges(cut)
        assert edges and lay.step_of(cut) == 3
        for _, head, attrs in edges:
            assert (unescape(attrs["label"]), attrs["style"]) == ("cut (detach)", "dashed")
            assert attrs["color"].lower() == "#cc0000" and lay.step_of(head) == 3
    for options in ({"constants": False}, {"collapse": "step"}):
        shown = Layout(mg.draw(loss, **options))
        assert sum(shown.first_line(n) == "detached state" for n in shown.nodes) == len(cuts)


@pytest.mark.parametrize("kind", sorted(CELLS))
def test_without_detach_there_is_no_cut(kind):
    """The same two chunks without detach(): one graph over t = 0..5, no cut anywhere."""
    lay = Layout(mg.draw(_two_chunks(kind, detach=False)))
    assert sorted(lay.time_clusters().values()) == list(range(6))
    assert not [n for n in lay.nodes if "detached" in lay.text(n)]
    assert not [e for e in lay.edges if "cut" in e[2].get("label", "")]


def test_drawing_changes_nothing():
    """Drawing (every option) keeps the graph as it was: the same nodes, parents, saved
    arrays and tags; no .grad written; the same gradients afterwards; detach marks kept."""
    model, loss = _unrolled("gru", 3)
    params = model.parameters()
    cut = _two_chunks("lstm", detach=True)

    def snapshot(out):
        return [(node, node.primitive, node.parents, tuple(map(id, node.saved)),
                 dict(node.tags or {}), node.grad, node.out is None)
                for node in forward_order([out.node])]

    before, cut_before = snapshot(loss), snapshot(cut)
    grads_before = mg.grad(loss, params)
    with mg.record_edge_grads() as rec:
        mg.grad(loss, params)
    for options in ({}, {"values": True, "grads": True, "edge_grads": rec},
                    {"collapse": "step", "edge_grads": rec}, {"max_nodes": 40},
                    {"constants": False, "legend": False, "title": "x"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mg.draw(loss, params=model, **options)
            mg.draw(cut, **options)
    mg.draw(model)
    assert snapshot(loss) == before and snapshot(cut) == cut_before
    assert all(p.grad is None for p in params)
    for g, again in zip(grads_before, mg.grad(loss, params)):
        np.testing.assert_array_equal(g.value, again.value)
    assert "detached state" in mg.draw(cut).source


# -- collapsing by step, max_nodes ----------------------------------------------------------------

@given(st.sampled_from(sorted(CELLS)), st.integers(1, 6))
def test_collapse_by_step_draws_one_box_per_step(kind, T):
    """collapse="step": T boxes "t = k" counting the ops tagged k, no clusters and no tagged
    op drawn on its own; each weight with exactly one edge into each step's box."""
    model, loss = _unrolled(kind, T)
    order = forward_order([loss.node])
    ops = Counter(n.tags["t"] for n in order
                  if n.primitive is not None and n.tags and "t" in n.tags)
    lay = Layout(mg.draw(loss, collapse="step"))
    boxes = {name: lay.step_of(name) for name in lay.nodes if re.fullmatch(r"t\d+", name)}
    assert sorted(boxes.values()) == list(range(T))
    for box, t in boxes.items():
        assert lay.text(box) == f"t = {t}\n{ops[t]} ops"
    assert not lay.time_clusters()
    untagged = {f"n{k}" for k, n in enumerate(order) if not (n.tags and "t" in n.tags)}
    assert {n for n in lay.nodes if n.startswith("n")} == untagged
    for p in model.parameters():
        assert sorted(head for _, head, _ in lay.out_edges(lay.named(p.name))) == sorted(boxes)


def test_above_max_nodes_a_tagged_graph_is_collapsed_with_a_warning():
    """More nodes than max_nodes: a UserWarning naming max_nodes, and the drawing collapsed
    by step; max_nodes=None draws every node."""
    _, loss = _unrolled("rnn", 4)
    size = len(forward_order([loss.node]))
    with pytest.warns(UserWarning, match=f"more than max_nodes={size - 1}"):
        collapsed = mg.draw(loss, max_nodes=size - 1)
    assert collapsed.source == mg.draw(loss, collapse="step").source
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert mg.draw(loss, max_nodes=size).source == mg.draw(loss, max_nodes=None).source


def test_above_max_nodes_an_untagged_graph_or_too_many_steps_is_refused():
    """An untagged graph above max_nodes: ValueError naming max_nodes. A tagged one whose
    boxes are still too many: ValueError. A collapse other than None / "step": ValueError."""
    x = mg.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(30):
        y = y * 1.5
    with pytest.raises(ValueError, match="max_nodes=10, and no time-step tags"):
        mg.draw(y, max_nodes=10)
    _, loss = _unrolled("rnn", 6)
    with pytest.raises(ValueError, match="even with one box per time step.*max_nodes=5"):
        mg.draw(loss, max_nodes=5)
    with pytest.raises(ValueError, match="collapse"):
        mg.draw(loss, collapse="time")


def test_a_graph_of_100_000_nodes_is_collapsed_or_refused():
    """A chain of 100,000 multiplications, 100 per step: collapsed into 1000 boxes in a row,
    with a warning; refused when even the boxes are more than max_nodes; no recursion."""
    x = mg.tensor(np.ones(1), requires_grad=True, name="x")
    y = x
    for t in range(1000):
        with mg.scope(t=t):
            for _ in range(100):
                y = y * 1.0001
    with pytest.warns(UserWarning, match="100001 nodes, more than max_nodes=2000"):
        source = mg.draw(y).source
    edges = re.findall(r"^\t(\w+) -> (\w+)", source, re.MULTILINE)
    assert edges == [("n0", "t0")] + [(f"t{t}", f"t{t + 1}") for t in range(999)]
    assert len(re.findall(r"^\tt\d+ \[label=", source, re.MULTILINE)) == 1000
    with pytest.raises(ValueError, match="even with one box per time step.*max_nodes=500"):
        mg.draw(y, max_nodes=500)


def test_collapsed_edges_out_of_a_weight_are_the_same_with_or_without_params():
    """A weight used twice per step, collapsed: the drawing does not depend on passing
    params=[W] when W is the only named leaf (a parameter either way): no ×2 label."""
    W = mg.Parameter(np.eye(2) * 0.5, name="W")
    h = mg.tensor(np.ones((1, 2)))
    for t in range(3):
        with mg.scope(t=t):
            h = (h @ W + h @ W).tanh()
    loss = h.sum()
    lay = Layout(mg.draw(loss, collapse="step"))
    assert mg.draw(loss, collapse="step").source == \
        mg.draw(loss, collapse="step", params=[W]).source
    # (the JSON lists every declared edge attribute, so an unlabelled edge has label "")
    assert all(attrs.get("label", "") == "" for *_, attrs in lay.out_edges(lay.named("W")))


# -- errors ---------------------------------------------------------------------------------------

def test_drawing_what_has_no_graph_is_refused_with_a_reason():
    """A Tensor without a graph: ValueError saying requires_grad; anything else than Tensors
    or one recurrent Module: TypeError."""
    with pytest.raises(ValueError, match="requires_grad"):
        mg.draw(mg.tensor([1.0, 2.0]))
    x = mg.tensor([1.0], requires_grad=True)
    with mg.no_grad():
        with pytest.raises(ValueError, match="requires_grad"):
            mg.draw(x * 2.0)
    for bad in (np.ones(2), 3.0, "loss", [x * 2.0, np.ones(2)]):
        with pytest.raises(TypeError, match="expected Tensors"):
            mg.draw(bad)
    with pytest.raises(TypeError):
        mg.draw()
    with pytest.raises(TypeError, match="no recurrent cell"):
        mg.draw(Linear(2, 3))


def test_collapsing_an_untagged_graph_says_what_is_missing():
    a = mg.Parameter(np.ones(3), name="a")
    with pytest.raises(ValueError, match=r"collapse='step'.*scope\(t="):
        mg.draw((a * 2).sum(), collapse="step")
