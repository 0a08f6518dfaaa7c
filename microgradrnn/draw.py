"""Drawing recorded graphs: ``mg.draw(output)`` returns a ``graphviz.Digraph``.

The drawing reads what the engine recorded and changes nothing: each node's primitive and
ordered parents (``a + a`` is two edges), the scope tags (one cluster per time step ``t``, in
time order), leaf names (a Module names its parameters by attribute path, ``rnn.cell.W_hh``)
and, when given, the gradients a backward pass sent along each edge
(:func:`~microgradrnn.autodiff.record_edge_grads`).

The picture of backpropagation through time follows from the graph itself. A leaf has no
tags, so a shared weight is drawn once, outside the clusters, with one edge into every step
that uses it; with edge gradients each of those edges is labelled with that step's
contribution, whose sum is the weight's gradient. Edge colour and width follow the gradient's
norm on a log scale, so gradients fading back in time show as fading edges.

``mg.draw(model)`` draws the rolled view instead: the cell once, with its state fed back to
itself. Where a hidden state was cut with ``detach()`` (truncated BPTT), the drawing shows the
cut. How each node and edge looks, and the DOT text, is :mod:`microgradrnn.drawing_style`;
rendering to files is :mod:`microgradrnn.render`.
"""
from __future__ import annotations

import math
import warnings
from collections import defaultdict

import graphviz
import numpy as np

from . import drawing_style as style
from .autodiff import enable_grad, untagged
from .graph import ArrayInfo, forward_order, was_detached
from .nn import RNN, Module, RNNModel
from .ops._core import value_of
from .tensor import Tensor, tensor

__all__ = ["draw", "draw_rolled", "Drawing", "MAX_NODES"]

MAX_NODES = 2000  # the default guard: layouts of more nodes are slow and unreadable


class Drawing(graphviz.Digraph):
    """A ``graphviz.Digraph`` that displays in Jupyter without a system Graphviz: it renders
    through :func:`microgradrnn.render.to_svg` (``dot`` if present, else ``graphviz-pure``)."""

    def _repr_mimebundle_(self, include=None, exclude=None, **_):
        from .render import to_svg
        svg = to_svg(self.source)
        if svg is None:
            return {"text/plain": self.source}
        return {"image/svg+xml": svg}


def draw(*outputs, params=None, edge_grads=None, values=False, grads=False, collapse=None,
         max_nodes=MAX_NODES, constants=True, legend=True, title=None, rankdir="LR"):
    """The recorded graph of ``outputs`` (Tensors), as a :class:`Drawing`.

    * ``params``: a Module or Tensors: their leaves are drawn as parameters (by default every
      named leaf is), and their values are known for ``values=True``;
    * ``edge_grads``: what ``with mg.record_edge_grads() as rec: loss.backward()`` recorded
      (``rec``): edges are coloured and thickened by gradient norm on a log scale, and edges
      out of a shared parameter are labelled with the norm of what that consumer sent;
    * ``values`` / ``grads``: summaries in the labels (the numbers of tensors of up to 4
      entries, else norm, min and max) where the graph knows them: the outputs, ``params``,
      op results the rules keep; ``.grad`` of leaves and retained nodes;
    * ``collapse="step"``: each time step as one box, with the edges between steps and from
      each parameter into each step that uses it;
    * ``max_nodes``: above this many recorded nodes (the constants drawn beside them are
      not counted) a tagged graph is collapsed by step (with a warning), an untagged one
      refused (``None``: no limit);
    * ``constants``: draw the constant inputs of ops (the x_t, a target, a literal 1).

    ``mg.draw(model)`` with an RNN, RNNModel or cell draws the rolled view:
    :func:`draw_rolled`.
    """
    if len(outputs) == 1 and isinstance(outputs[0], Module):
        return draw_rolled(outputs[0], values=values, legend=legend, title=title,
                           rankdir=rankdir)
    tensors = _output_tensors(outputs)
    builder = _Builder(tensors, params, edge_grads, values, grads, constants)
    order = builder.order
    if collapse not in (None, "step"):
        raise ValueError(f"draw: collapse must be None or 'step', got {collapse!r}")
    if collapse is None and max_nodes is not None and len(order) > max_nodes:
        if not builder.has_steps:
            raise ValueError(
                f"draw: the graph has {len(order)} nodes, more than max_nodes={max_nodes}, "
                "and no time-step tags to collapse it by. Pass max_nodes=None to draw it all "
                "(the layout may take minutes), or draw a smaller part of it.")
        builder.collapse(max_nodes)  # raises if even the boxes are too many
        warnings.warn(f"draw: the graph has {len(order)} nodes, more than max_nodes="
                      f"{max_nodes}; each time step is drawn as one box. Pass max_nodes=None "
                      "(or a larger number) to draw every node.", stacklevel=2)
    elif collapse == "step":
        builder.collapse(max_nodes)
    return builder.build(title, rankdir, legend)


def draw_rolled(model, values=False, legend=True, title=None, rankdir="LR"):
    """The rolled view of an RNN, RNNModel or cell: one step of the cell, drawn once, with
    the new state fed back as the next step's state (dashed blue edges), the picture a
    textbook draws beside the unrolled one."""
    cell, head, embedding = model, None, None
    if isinstance(model, RNNModel):
        cell, head, embedding = model.rnn.cell, model.head, model.embedding
    elif isinstance(model, RNN):
        cell = model.cell
    if not hasattr(cell, "initial_state"):
        raise TypeError(f"draw: a {type(model).__name__} has no recurrent cell to draw rolled; "
                        "pass an RNN, RNNModel or cell, or draw an output Tensor instead")
    state = cell.initial_state(1)
    parts = state if isinstance(state, tuple) else (state,)
    names = ("h", "c")[:len(parts)] if len(parts) <= 2 else [f"s{i}" for i in range(len(parts))]
    parts = tuple(tensor(np.zeros(p.shape), requires_grad=True, name=f"{n}_(t-1)")
                  for p, n in zip(parts, names))
    previous = parts if isinstance(state, tuple) else parts[0]
    if embedding is not None:
        x = np.zeros(1, dtype=np.int64)
    else:
        x = tensor(np.zeros((1, cell.input_size)), requires_grad=True, name="x_t")
    with enable_grad(), untagged():  # one step of its own, whatever scope the caller is in
        if embedding is not None:
            x = embedding(x)
        new = cell(x, previous)
        new_parts = new if isinstance(new, tuple) else (new,)
        outputs = list(new_parts)
        if head is not None:
            outputs.append(head(cell.output(new)))
    builder = _Builder(outputs, model, None, values, False, True)
    for n, part in zip(names, new_parts):
        builder.output_names[part.node] = f"{n}_t"
    if head is not None:
        builder.output_names[outputs[-1].node] = "y_t"
    builder.recurrent = [(new_part.node, old.node, f"{n}_t is the next step's {n}_(t-1)")
                         for n, new_part, old in zip(names, new_parts, parts)]
    title = title or f"{type(cell).__name__}, rolled: one step, its state fed back"
    return builder.build(title, rankdir, legend)


# -- the builder ---------------------------------------------------------------------------------

class _Builder:
    """Collects the nodes, clusters and edges of one drawing, then writes the Digraph."""

    def __init__(self, outputs, params, edge_grads, values, grads, constants):
        self.outputs = outputs
        self.order = forward_order([t.node for t in outputs])  # inputs first: stable ids
        self.ids = {node: f"n{i}" for i, node in enumerate(self.order)}
        self.known = {t.node: t for t in outputs}
        self.params = set()
        for p in _param_tensors(params):
            if p.node is not None:
                self.params.add(p.node)
                self.known.setdefault(p.node, p)
        self.values, self.grads, self.constants = values, grads, constants
        self.output_names = {}
        self.recurrent = []
        self.edge_grad = _edge_gradients(edge_grads)
        self.steps = None  # collapse: {node: step box id}
        self.has_steps = any(n.tags and "t" in n.tags for n in self.order)

    # -- what each node is ---------------------------------------------------------------------

    def kind(self, node):
        if node.primitive is not None:
            return "output" if node in self.known and node not in self.params else "op"
        if node in self.params or (not self.params and node.name):
            return "parameter"
        return "leaf"

    def label(self, node):
        kind = self.kind(node)
        if node.primitive is None:
            lines = [node.name or "input"]
        else:
            lines = [node.primitive.name]
            if node.primitive.name == "getitem":  # which slice: an LSTM's gates differ by it
                lines[0] += " " + style.index_text(node.saved[1])
            if node in self.output_names:
                lines[0] += f" → {self.output_names[node]}"
            elif kind == "output" and self.known[node].name:
                lines[0] += f" → {self.known[node].name}"
        lines.append(style.shape_text(node.shape))
        if self.values:
            value = self.known[node].value if node in self.known else node.out
            if value is not None:
                lines.append("value " + style.summary(value))
        if self.grads and node.grad is not None:
            lines.append("grad " + style.summary(value_of(node.grad)))
        return lines

    # -- collapsing by step --------------------------------------------------------------------

    def collapse(self, max_nodes):
        """Map every tagged node to one box per time step."""
        if not self.has_steps:
            raise ValueError("draw: collapse='step' groups nodes by their time step, and no node "
                             "of this graph has one (record the steps under mg.scope(t=...), "
                             "as mg.nn.RNN does)")
        self.steps = {}
        for node in self.order:
            t = _time(node)
            if t is not None and node.primitive is not None:
                self.steps[node] = ("step", t)
        drawn = len(set(self.steps.values())) + len(self.order) - len(self.steps)
        if max_nodes is not None and drawn > max_nodes:
            raise ValueError(
                f"draw: even with one box per time step the drawing has {drawn} nodes, more "
                f"than max_nodes={max_nodes}. Draw a shorter window (e.g. one truncated-BPTT "
                "chunk, or the loss of the last steps), or pass a larger max_nodes.")

    # -- writing the Digraph -------------------------------------------------------------------

    def build(self, title, rankdir, legend):
        graph = Drawing(name="microgradrnn", graph_attr=dict(
            rankdir=rankdir, fontname="Helvetica", newrank="true", compound="true",
            **({"label": style.label([title]), "labelloc": "t", "fontsize": "16"}
               if title else {})),
            node_attr=dict(fontname="Helvetica", fontsize="11"),
            edge_attr=dict(fontname="Helvetica", fontsize="9", color="#555555"))
        clusters = defaultdict(list)  # t -> [(id, label lines, kind)]
        outside = []
        constant_ids = {}
        edges = []  # (tail id, head id, attrs)
        shown_kinds = set()
        boxes = {}

        def place(node_id, lines, kind, home):
            shown_kinds.add(kind)
            (clusters[home] if home is not None else outside).append((node_id, lines, kind))

        for node in self.order:
            if self.steps is not None and node in self.steps:
                box = self.steps[node]
                if box not in boxes:
                    boxes[box] = [f"t{len(boxes)}", 0]
                boxes[box][1] += 1
                continue
            home = _home(node)
            place(self.ids[node], self.label(node), self.kind(node), home)
        for box, (box_id, count) in boxes.items():
            place(box_id, [f"t = {box[1]}", f"{count} ops"], "step", None)

        def node_id(node):
            if self.steps is not None and node in self.steps:
                return boxes[self.steps[node]][0]
            return self.ids[node]

        sums = {}  # collapsed edges: (tail, head) -> [gradient total per input node, uses]
        steps_using = defaultdict(set)  # leaf -> the time steps of its consumers
        for node in self.order:
            if node.primitive is None:
                continue
            grads_in = self.edge_grad.get(node, {})
            for i, parent in enumerate(node.parents):
                head = node_id(node)
                if parent is None:
                    self._constant(node, i, head, place, constant_ids, edges)
                    continue
                if parent.primitive is None:
                    steps_using[parent].add(_time(node))
                tail = node_id(parent)
                g = grads_in.get(i)
                if self.steps is None:
                    edges.append((tail, head, {}, None if g is None else style.norm(g), parent))
                elif tail != head:
                    entry = sums.setdefault((tail, head), [{}, 0, parent])
                    if g is not None:  # per receiving node, the sum of what it was sent
                        entry[0][parent] = entry[0].get(parent, 0) + g
                    entry[1] += 1
        for (tail, head), (by_input, uses, parent) in sums.items():
            g = None  # the norm of everything sent from one box to the other
            if by_input:
                g = math.sqrt(sum(style.norm(v) ** 2 for v in by_input.values()))
            attrs = ({"label": f"×{uses}"} if uses > 1 and self.kind(parent) != "parameter"
                     else {})
            edges.append((tail, head, attrs, g, parent))
        scale = style.GradientScale([norm for *_, norm, _ in edges if norm is not None])
        shared = self._shared_parameters(edges)
        # a weight used at several steps: let the steps, not the weight, decide the layout
        # (its edges do not pull every step towards one place)
        weights = {leaf for leaf, times in steps_using.items()
                   if len(times) > 1 and self.kind(leaf) == "parameter"}

        for index, home in enumerate(_sorted_homes(clusters)):
            style.cluster(graph, f"cluster_t{index}", home, clusters[home])
        for node_id_, lines, kind in outside:
            graph.body.append(style.node_line(node_id_, lines, kind))
        for tail, head, attrs, norm, parent in edges:
            if parent in weights:
                attrs = {**attrs, "constraint": "false"}
            if norm is not None:
                attrs = {**attrs, **scale.style(norm)}
                if parent in shared:  # at the arrow's head: the step it went to
                    attrs["headlabel"] = style.number(norm)
                    attrs["labelfontcolor"] = attrs["color"]
            graph.body.append(style.edge_line(tail, head, attrs))
        for new, old, text in self.recurrent:
            graph.edge(self.ids[new], self.ids[old], label=style.label([text]),
                       **style.RECURRENT_EDGE)
        if legend:
            style.legend(graph, shown_kinds, scale)
        return graph

    def _constant(self, node, i, head, place, constant_ids, edges):
        """Draw input ``i`` of ``node``, a constant: once per array the node kept (so a
        constant used twice is one box), a cut where the array came from ``detach()``."""
        saved = node.saved[i] if i < len(node.saved) else None
        cut = type(saved) is np.ndarray and was_detached(saved)
        if not (cut or (self.constants and self.steps is None)):
            return  # a collapsed drawing shows only the cuts among the constants
        key = id(saved) if type(saved) is np.ndarray else (node, i)
        home = None if self.steps is not None else _home(node)
        if key not in constant_ids:
            constant_ids[key] = f"c{len(constant_ids)}"
            if cut:
                lines = ["detached state", style.shape_text(saved.shape), "(earlier steps cut off)"]
            elif np.ndim(saved) == 0 and not isinstance(saved, ArrayInfo) and saved is not None:
                lines = [style.number(float(np.real(saved)))]  # a literal: 1.0 in 1 - z
            elif type(saved) is np.ndarray and saved.size == 1:
                lines = [style.number(saved.item())]
            else:
                shape = getattr(saved, "shape", None)
                lines = ["constant"] + ([style.shape_text(shape)] if shape is not None else [])
            place(constant_ids[key], lines, "detached" if cut else "constant", home)
        edges.append((constant_ids[key], head, dict(style.CUT_EDGE) if cut else {}, None, None))

    def _shared_parameters(self, edges):
        uses = defaultdict(int)
        for *_, parent in edges:
            if parent is not None and parent.primitive is None:
                uses[parent] += 1
        return {node for node, count in uses.items() if count > 1}



# -- helpers -------------------------------------------------------------------------------------

def _time(node):
    return node.tags.get("t") if node.tags else None


_home = _time  # the cluster of a node: its time step, or None (drawn outside the clusters)


def _sorted_homes(clusters):
    try:
        return sorted(clusters)
    except TypeError:  # tags of mixed types: a stable order all the same
        return sorted(clusters, key=str)


def _output_tensors(outputs):
    flat = []
    for x in outputs:
        flat.extend(x if isinstance(x, (list, tuple)) else [x])
    if not flat:
        raise TypeError("draw: give the output Tensor(s) to draw, e.g. mg.draw(loss)")
    for x in flat:
        if not isinstance(x, Tensor):
            raise TypeError(f"draw: expected Tensors (or one Module), got {type(x).__name__}")
        if x.node is None:
            raise ValueError(
                "draw: this output does not require grad, so no graph was recorded for it. "
                "Make the weights Parameters (or tensor(..., requires_grad=True)) and compute "
                "it outside mg.no_grad()")
    return flat


def _param_tensors(params):
    if params is None:
        return []
    if hasattr(params, "parameters") and callable(params.parameters):
        return list(params.parameters())
    return list(params)


def _edge_gradients(recorded):
    """{consumer node: {input index: gradient}} from recorded EdgeGrads. A consumer sends its
    inputs their gradients in index order, so the k-th edge from a consumer to one input is
    that input's k-th occurrence among the consumer's parents (``a + a``: two edges)."""
    if recorded is None:
        return {}
    edges = recorded.edges if hasattr(recorded, "edges") else recorded
    by_pair = defaultdict(list)
    for consumer, receiver, g in edges:
        by_pair[consumer, receiver].append(value_of(g))
    result = {}
    for (consumer, receiver), sent in by_pair.items():
        slots = [i for i, parent in enumerate(consumer.parents) if parent is receiver]
        result.setdefault(consumer, {}).update(zip(slots, sent))
    return result


